"""Every notebook in notebooks/ runs top to bottom without error (at its default small size).

The notebooks assert their own numerical claims against independent references, so a clean run is
the test. They run with the working directory set to notebooks/ (they read ../datasets/...), in the
``python3`` kernel: the ipykernel installed alongside this interpreter (jupyter_client launches it
with ``sys.executable``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_notebooks_exist() -> None:
    assert len(PATHS) >= 8, PATHS


def test_readme_lists_every_notebook() -> None:
    readme = (NOTEBOOKS.parent / "README.md").read_text()
    section = readme.split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    for path in PATHS:
        assert f"`{path.name}`" in section, f"README's Notebooks section does not list {path.name}"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_committed_clean(path: Path) -> None:
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    assert "parameters" in cells[[c["cell_type"] for c in cells].index("code")]["metadata"].get("tags", [])
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: outputs committed"
            source = "".join(cell["source"])
            assert "slactl._" not in source and "slactl.engine" not in source, f"{path.name}: private API"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError (with the traceback) on the first failing cell
