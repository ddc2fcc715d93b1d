"""``python -m slactl.cli ARGS``: the `slactl` command (what `slactl run` starts on every rank)."""

from slactl.cli.main import entry

if __name__ == "__main__":
    entry()
