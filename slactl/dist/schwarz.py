"""Overlapping additive Schwarz: restricted (RAS) and symmetric (ASM), any local solver.

Set-up (once, point to point): every rank extends its owned rows by ``overlap`` layers of
neighbouring rows. Layer 1 is the halo (the ghost columns of the owned rows: their owners are the
halo plan's receive lists); layer ``l + 1`` is every column of layer ``l``'s rows that is not yet in
the extended set. A rank asks each owner for the rows it needs (``_fetch_rows``); the owner answers
with each row's global columns, the owner of every column (it knows them from its own halo plan) and
the values, so the next layer knows whom to ask. The extended local matrix ``A_i`` keeps the entries
whose column lies in the extended set (the rest are dropped: a homogeneous Dirichlet boundary
around the subdomain) and a local solver is set up on it: any local preconditioner name of
:func:`~slactl.engine.preconditioners.make_preconditioner` or ``"lu"`` (exact, SuperLU through
:func:`slactl.factorize`).

Apply: one exchange of a :class:`~slactl.dist.halo.HaloPlan` built for the overlap nodes (for
``overlap=1`` it moves exactly what the matrix's halo plan moves). With ``R_i`` the restriction to
the extended subdomain and ``D_i`` the restriction to the owned rows (zero on the overlap):

* RAS (``restricted=True``, the default): ``M = sum_i D_i^T A_i^{-1} R_i``: read ``r`` on the
  extended subdomain, solve locally, keep the owned entries. No communication after the solve.
  Nonsymmetric: use it with GMRES or BiCGStab.
* its transpose, ``M^T = sum_i R_i^T A_i^{-T} D_i`` (what the adjoint solve uses, exactly): the
  owned entries of ``r`` only, the transposed local solver, and the overlap part of the result
  summed into its owners (the halo reduce).
* ASM (``restricted=False``): ``M = sum_i R_i^T A_i^{-1} R_i``, symmetric positive definite when
  every local solver is (``ic0``, ``amg``, ``lu`` of an SPD matrix): the choice for CG.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist

from slactl.dist.halo import HaloPlan
from slactl.engine.matrix import SparseMatrix
from slactl.engine.preconditioners import make_preconditioner
from slactl.errors import UsageError


class LocalLU:
    """Exact local solve with a sparse LU (:func:`slactl.factorize`), as a preconditioner."""

    name = "lu"
    symmetric = False  # the factors of a symmetric matrix give a symmetric operator, but we do not rely on it

    def __init__(self, A: SparseMatrix | None, _prepared: Any = None):
        from slactl.engine.linear.api import factorize

        self.prepared = _prepared if _prepared is not None else factorize(A.detach()).prepared
        self._rtol = torch.finfo(self.prepared.A.dtype).eps * 10

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        return self.prepared.solve(r, rtol=self._rtol).x

    def transpose(self) -> "LocalLU":
        return LocalLU(None, _prepared=self.prepared.transpose())


def local_solver(local: Any, A: SparseMatrix, **options: Any) -> Any:
    """A set-up local preconditioner of ``A``: ``"lu"`` (exact) or anything
    :func:`~slactl.engine.preconditioners.make_preconditioner` takes."""
    if isinstance(local, str) and local.lower() == "lu":
        if options:
            raise UsageError(f"the local solver 'lu' takes no options, got {sorted(options)}")
        return LocalLU(A)
    return make_preconditioner(local, A, **options)


class AdditiveSchwarz:
    """Overlapping additive Schwarz preconditioner of a :class:`~slactl.dist.matrix.DistSparseMatrix`.

    Parameters
    ----------
    A : DistSparseMatrix
    local : str or preconditioner
        The solver on each extended subdomain: ``"lu"`` or a local preconditioner name.
    overlap : int
        Layers of neighbouring rows added to each subdomain, ``>= 1``.
    restricted : bool
        RAS (True: owned entries of the local solution only; nonsymmetric) or ASM (False:
        overlapping contributions summed; symmetric when the local solver is).
    **options
        Keywords of the local preconditioner.

    Examples
    --------
    >>> M = AdditiveSchwarz(A, "ilu0", overlap=2)                  # doctest: +SKIP
    >>> x = slactl.dist.solve(A, b, method="gmres", preconditioner=M)   # doctest: +SKIP
    """

    def __init__(self, A: Any, local: Any = "ilu0", *, overlap: int = 1, restricted: bool = True,
                 _parts: tuple | None = None, **options: Any):
        if _parts is not None:  # a transpose: the same subdomains and plan
            self.plan, self.inner, self.gather_overlap, self.add_overlap, self.overlap = _parts
        else:
            if int(overlap) < 1:
                raise UsageError(f"overlap must be at least 1 for additive Schwarz, got {overlap} (0 is block Jacobi)")
            self.overlap = int(overlap)
            A_ext, self.plan = extend(A, self.overlap)
            self.inner = local_solver(local, A_ext, **options)
            # RAS reads the overlap and keeps the owned part; ASM also adds the overlap's part back
            self.gather_overlap, self.add_overlap = True, not restricted
        kind = "asm" if self.gather_overlap and self.add_overlap else "ras" if self.gather_overlap else "ras^T"
        self.name = f"{kind}({self.overlap})-{getattr(self.inner, 'name', type(self.inner).__name__)}"

    @property
    def n_overlap(self) -> int:
        return self.plan.n_halo

    @property
    def symmetric(self) -> bool:
        return self.gather_overlap and self.add_overlap and bool(getattr(self.inner, "symmetric", False))

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        """``M r`` on this rank's owned entries (one exchange before the local solve, and for ASM
        and the transpose of RAS one reduction after it)."""
        n = self.plan.n_owned
        if self.gather_overlap:
            ghosts = self.plan.start(r).wait()
        else:
            ghosts = r.new_zeros((self.n_overlap,) + tuple(r.shape[1:]))
        z = self.inner.apply(torch.cat([r, ghosts]))
        if not self.add_overlap:
            return z[:n]
        return z[:n] + self.plan.start_reduce(z[n:]).wait()

    def transpose(self) -> "AdditiveSchwarz":
        """``M^T``: the transposed local solver, with reading and adding of the overlap swapped."""
        inner = self.inner.transpose() if hasattr(self.inner, "transpose") else self.inner
        return AdditiveSchwarz(None, _parts=(self.plan, inner, self.add_overlap, self.gather_overlap, self.overlap))


# ------------------------------------------------------------------------------- set-up
def extend(A: Any, overlap: int) -> tuple[SparseMatrix, HaloPlan]:
    """The extended local matrix (owned rows first, then the overlap nodes grouped by owner) and
    the plan that brings a vector's values to the overlap nodes. Collective: every rank calls it."""
    rank = dist.get_rank()
    n = A.n_owned
    csr = A.local.detach().to_scipy().tocsr()
    owned = A.owned.cpu().numpy()
    halo = A.halo.cpu().numpy()
    # the owner of every local column: this rank for owned ones, the halo plan's senders for ghosts
    col_owner = np.full(n + A.n_halo, rank, dtype=np.int64)
    for peer, lo, hi in A.plan.recvs:
        col_owner[n + lo:n + hi] = peer
    local_gid = np.concatenate([owned, halo])
    server = _RowServer(csr, owned, local_gid, col_owner)

    known = set(owned.tolist())  # small subdomains: a set of ids is the clearest bookkeeping
    layer_ids, layer_owner = halo, col_owner[n:]
    ids, owners, rows = [], [], []
    sent_to: dict[int, list[np.ndarray]] = {}
    for _ in range(overlap):
        known.update(layer_ids.tolist())
        got, served = _fetch_rows(server, layer_ids, layer_owner)
        for peer, local_rows in served.items():
            sent_to.setdefault(peer, []).append(local_rows)
        ids.append(layer_ids)
        owners.append(layer_owner)
        rows.append(got)
        # the next layer: columns of these rows not yet in the extended set (first appearance order)
        cols, col_owners = got[1], got[2]
        fresh = np.array([c not in known for c in cols.tolist()], dtype=bool)
        nxt, first = np.unique(cols[fresh], return_index=True)
        layer_ids, layer_owner = nxt, col_owners[fresh][first]
    overlap_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    overlap_owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    # group the overlap nodes by owner (stable: within an owner, in the order they were asked for,
    # which is the order the owner sends them in)
    order = np.argsort(overlap_owner, kind="stable")
    ext_matrix = _assemble(csr, local_gid, owned, overlap_ids, rows, order, A)
    plan = _plan(n, overlap_owner[order], sent_to, A.device)
    return ext_matrix, plan


class _RowServer:
    """Answers requests for owned rows: global columns, their owners and the values."""

    def __init__(self, csr: sp.csr_matrix, owned: np.ndarray, local_gid: np.ndarray, col_owner: np.ndarray):
        self.csr, self.local_gid, self.col_owner = csr, local_gid, col_owner
        self._sorted = np.argsort(owned)
        self._owned_sorted = owned[self._sorted]

    def local_rows(self, gids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._owned_sorted, gids)
        if gids.size and (pos.max() >= self._owned_sorted.size or not np.array_equal(self._owned_sorted[pos], gids)):
            raise UsageError("a rank asked for rows this rank does not own: the halo plans of the ranks disagree")
        return self._sorted[pos]

    def rows(self, local_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        sub = self.csr[local_rows]
        return np.diff(sub.indptr), self.local_gid[sub.indices], self.col_owner[sub.indices], sub.data


def _wire_device() -> torch.device:
    """Where set-up messages travel: NCCL moves only CUDA tensors, Gloo host tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _exchange(send: dict[int, torch.Tensor], recv: dict[int, torch.Tensor]) -> None:
    """Post every send and receive of one round in one batch and wait for them. The host tensors
    of ``recv`` are filled; under NCCL the messages go through device buffers."""
    wire = _wire_device()
    inbox = {peer: t.to(wire) for peer, t in recv.items()}
    ops = [dist.P2POp(dist.isend, t.to(wire), peer) for peer, t in sorted(send.items())]
    ops += [dist.P2POp(dist.irecv, t, peer) for peer, t in sorted(inbox.items())]
    if ops:
        for req in dist.batch_isend_irecv(ops):
            req.wait()
    if wire.type != "cpu":
        for peer, t in recv.items():
            t.copy_(inbox[peer])


def _fetch_rows(server: _RowServer, gids: np.ndarray, owner: np.ndarray):
    """Rows ``gids`` (owned by ``owner``) from their owners: ``(lengths, cols, col_owners, values)``
    in the order of ``gids``, and the local rows this rank served to each peer. Collective."""
    world, rank = dist.get_world_size(), dist.get_rank()
    peers = sorted(set(owner.tolist()))
    asked = {p: np.flatnonzero(owner == p) for p in peers}
    # who asks me how much: one all-gather of a P-vector of counts
    counts = torch.zeros(world, dtype=torch.int64)
    for p, where in asked.items():
        counts[p] = where.size
    wire = _wire_device()
    table = [torch.zeros_like(counts, device=wire) for _ in range(world)]
    dist.all_gather(table, counts.to(wire))
    table = [t.cpu() for t in table]
    askers = {q: int(table[q][rank]) for q in range(world) if int(table[q][rank]) > 0}
    # round 1: the requested ids
    requests = {q: torch.zeros(c, dtype=torch.int64) for q, c in askers.items()}
    _exchange({p: torch.from_numpy(np.ascontiguousarray(gids[w])) for p, w in asked.items()}, requests)
    served = {q: server.local_rows(req.numpy()) for q, req in requests.items()}
    answers = {q: server.rows(rows) for q, rows in served.items()}
    # round 2: row lengths; round 3: (column, owner) pairs and values
    lengths = {p: torch.zeros(w.size, dtype=torch.int64) for p, w in asked.items()}
    _exchange({q: torch.from_numpy(a[0].astype(np.int64)) for q, a in answers.items()}, lengths)
    dtype = torch.from_numpy(server.csr.data[:0]).dtype
    idx_in = {p: torch.zeros((int(l.sum()), 2), dtype=torch.int64) for p, l in lengths.items()}
    val_in = {p: torch.zeros(int(l.sum()), dtype=dtype) for p, l in lengths.items()}
    _exchange({q: torch.from_numpy(np.stack([a[1], a[2]], 1).astype(np.int64)) for q, a in answers.items()}, idx_in)
    _exchange({q: torch.from_numpy(np.ascontiguousarray(a[3])) for q, a in answers.items()}, val_in)
    # back into the order of gids
    lens = np.zeros(gids.size, dtype=np.int64)
    pieces: list = [None] * gids.size
    for p, where in asked.items():
        l = lengths[p].numpy()
        lens[where] = l
        starts = np.concatenate([[0], np.cumsum(l)])
        ij, v = idx_in[p].numpy(), val_in[p].numpy()
        for k, i in enumerate(where):
            pieces[i] = (ij[starts[k]:starts[k + 1]], v[starts[k]:starts[k + 1]])
    cols = np.concatenate([pc[0][:, 0] for pc in pieces]) if pieces else np.zeros(0, np.int64)
    cown = np.concatenate([pc[0][:, 1] for pc in pieces]) if pieces else np.zeros(0, np.int64)
    vals = np.concatenate([pc[1] for pc in pieces]) if pieces else np.zeros(0, server.csr.data.dtype)
    return (lens, cols, cown, vals), served


def _assemble(csr, local_gid, owned, overlap_ids, rows, order, A) -> SparseMatrix:
    """The extended matrix in extended numbering (owned, then overlap nodes in ``order``)."""
    n, m = owned.size, overlap_ids.size
    ext_gid = np.concatenate([owned, overlap_ids[order]])
    sort = np.argsort(ext_gid)
    coo = csr.tocoo()
    r = [coo.row.astype(np.int64)]
    c = [local_gid[coo.col]]
    v = [coo.data]
    position = np.empty(m, dtype=np.int64)
    position[order] = np.arange(n, n + m)  # extended row of each overlap node (in fetch order)
    start = 0
    for lens, cols, _, vals in rows:
        r.append(np.repeat(position[start:start + lens.size], lens))
        c.append(cols)
        v.append(vals)
        start += lens.size
    r, c, v = np.concatenate(r), np.concatenate(c), np.concatenate(v)
    pos = np.searchsorted(ext_gid[sort], c)
    pos = np.minimum(pos, ext_gid.size - 1)
    inside = ext_gid[sort][pos] == c  # columns outside the extended set are dropped (Dirichlet)
    ext = sp.csr_matrix((v[inside], (r[inside], sort[pos[inside]])), shape=(n + m, n + m))
    ext.sum_duplicates()
    return SparseMatrix.from_scipy(ext, dtype=A.dtype, device=A.device)


def _plan(n_owned: int, recv_owner: np.ndarray, sent_to: dict[int, list[np.ndarray]], device: Any) -> HaloPlan:
    """The plan that fills the overlap nodes (grouped by owner) from their owners."""
    recv_ranks, recv_offsets = np.unique(recv_owner, return_index=True)
    recv_offsets = np.append(recv_offsets, recv_owner.size)
    send_ranks = sorted(sent_to)
    send_lists = [np.concatenate(sent_to[q]) for q in send_ranks]
    send_offsets = np.concatenate([[0], np.cumsum([s.size for s in send_lists])]).astype(np.int64)
    send_index = np.concatenate(send_lists) if send_lists else np.zeros(0, np.int64)
    return HaloPlan(n_owned, recv_owner.size, np.asarray(send_ranks, dtype=np.int64), send_offsets, send_index,
                    recv_ranks, recv_offsets, device=device)
