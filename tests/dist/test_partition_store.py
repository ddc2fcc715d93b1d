"""Partition stores: blocks reassemble the matrix, plans match, writes are atomic, and a rank reads
only its own group."""

import json
import shutil

import numpy as np
import pytest
import scipy.sparse as sp

import slactl.io.zarr_store as zs
from slactl.dist.partition import partition
from slactl.errors import FormatError, PartitionError, StoreExistsError
from slactl.io import MatrixData
from slactl.io.gallery import generate
from slactl.io.partition_store import (is_partition_store, read_manifest, read_rank, source_checksum,
                                       write_partition_store)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    p = generate("convdiff2d", 10)
    part = partition(p.matrix, 3, "metis")
    path = tmp_path_factory.mktemp("ps") / "a.parts.zarr"
    write_partition_store(MatrixData(p.matrix, source="convdiff2d"), part, path, method="metis")
    return path, p.matrix, part


def test_blocks_reassemble_the_matrix_and_plans_match(store):
    path, A, part = store
    blocks = [read_rank(path, r) for r in range(3)]
    x = np.random.default_rng(1).random(A.shape[0])
    y = np.zeros_like(x)
    for b in blocks:
        assert np.array_equal(np.sort(b.owned), np.flatnonzero(part == b.rank))
        assert (part[b.halo] != b.rank).all()
        y[b.owned] = b.csr @ np.concatenate([x[b.owned], x[b.halo]])
        for i, q in enumerate(b.recv_ranks):  # what q sends is what this rank expects, in order
            src = blocks[q]
            j = src.send_ranks.tolist().index(b.rank)
            sent = x[src.owned[src.send_index[src.send_offsets[j]:src.send_offsets[j + 1]]]]
            assert np.array_equal(sent, x[b.halo[b.recv_offsets[i]:b.recv_offsets[i + 1]]])
    np.testing.assert_allclose(y, A @ x, rtol=1e-14, atol=1e-14)
    m = read_manifest(path)
    assert m["parts"] == 3 and m["method"] == "metis" and m["source_checksum"] == source_checksum(sp.csr_array(A))
    assert m["shape"] == [100, 100] and m["writer"].startswith("slactl ")


def test_local_group_is_a_binsparse_matrix(store):
    path, _, _ = store
    data = zs.read_zarr(path / "rank_00001" / "matrix")
    b = read_rank(path, 1)
    assert data.shape == (b.n_owned, b.n_owned + b.n_halo)


def test_read_rank_opens_only_its_own_group(store, tmp_path, monkeypatch):
    path, _, _ = store
    for rank in range(3):
        copy = tmp_path / f"only{rank}.zarr"
        shutil.copytree(path, copy)
        for other in range(3):  # the other ranks' groups are gone: reading them would fail
            if other != rank:
                shutil.rmtree(copy / f"rank_{other:05d}")
        opened = []
        import zarr

        orig = zarr.open_group
        monkeypatch.setattr(zarr, "open_group", lambda store, *a, **k: (opened.append(str(store)), orig(store, *a, **k))[1])
        b = read_rank(copy, rank)
        monkeypatch.setattr(zarr, "open_group", orig)
        assert b.rank == rank
        assert opened and all(f"rank_{rank:05d}" in o for o in opened), opened
        assert np.array_equal(b.csr.toarray(), read_rank(path, rank).csr.toarray())


def test_incomplete_or_foreign_store_is_refused(store, tmp_path):
    path, A, part = store
    broken = tmp_path / "broken.zarr"
    shutil.copytree(path, broken)
    meta = json.loads((broken / "zarr.json").read_text())
    del meta["attributes"]["slactl_partition"]  # what an interrupted write leaves: no manifest
    (broken / "zarr.json").write_text(json.dumps(meta))
    assert not is_partition_store(broken) and is_partition_store(path)
    with pytest.raises(FormatError, match="never finished"):
        read_rank(broken, 0)
    with pytest.raises(PartitionError, match="--procs 3"):
        read_rank(path, 0, world_size=2)
    with pytest.raises(StoreExistsError):
        write_partition_store(MatrixData(A), part, path)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import slactl.io.partition_store as ps

    p = generate("poisson2d", 6)
    calls = []

    def boom(root, block, field):
        calls.append(block.rank)
        if block.rank == 1:
            raise KeyboardInterrupt
        return orig(root, block, field)

    orig = ps._write_rank
    monkeypatch.setattr(ps, "_write_rank", boom)
    with pytest.raises(KeyboardInterrupt):
        write_partition_store(MatrixData(p.matrix), partition(p.matrix, 2, "contiguous"), tmp_path / "s.zarr")
    assert calls == [0, 1] and list(tmp_path.iterdir()) == []


def test_damaged_plan_array_fails_its_checksum(store, tmp_path):
    path, _, _ = store
    bad = tmp_path / "bad.zarr"
    shutil.copytree(path, bad)
    meta_path = bad / "rank_00002" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["slactl_rank"]["checksums"]["send_index"] += 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="checksum"):
        read_rank(bad, 2)
    read_rank(bad, 0)
