"""Halo exchange over torch.distributed: a precomputed plan, split-phase, with an adjoint.

A :class:`HaloPlan` (PETSc's ``PetscSF``) holds, per neighbour rank, which owned entries this rank
sends and which slice of its halo (ghost) vector it receives. Two operations use it:

``broadcast`` (owner -> ghosts)
    every ghost gets a copy of its owner's value: the halo vector that a distributed SpMV needs.
``reduce`` (ghosts -> owner, summed)
    every owner receives and adds the values its ghosts hold: the transpose of ``broadcast``.

They are each other's adjoint, which is exactly the autograd rule: the backward of
:func:`ghost_broadcast` is :func:`ghost_reduce` of the incoming gradient, and vice versa. Both are
split-phase (:meth:`HaloPlan.start` / :meth:`HaloExchange.wait`, posted together with
``torch.distributed.batch_isend_irecv``) so that the owned columns of an SpMV, which need no ghost,
are multiplied while the messages travel. A broadcast packs every message with one gather and
receives into slices of one halo buffer (no host synchronization, no concatenation). The sends
and receives of one exchange stay in one batch even with a single neighbour: under NCCL a batch is
one ``ncclGroupStart/End``, so both directions travel at once, whereas separate ``isend``/``irecv``
on one peer's stream would serialize (or deadlock, if both ranks sent first).

Messages between two ranks are matched in the order they are posted, so every rank must run the
same sequence of exchanges (as SPMD code does).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist


class HaloExchange:
    """A posted exchange; :meth:`wait` completes it and returns the received (and combined) data."""

    def __init__(self, requests: list, finish: Any):
        self._requests = requests
        self._finish = finish
        self._done = False

    def wait(self) -> torch.Tensor:
        """Block until every message of this exchange has arrived; return its result."""
        if self._done:
            raise RuntimeError("wait() was already called on this halo exchange")
        for req in self._requests:
            req.wait()
        self._done = True
        return self._finish()


class HaloPlan:
    """Send and receive lists of one rank, per neighbour (see :mod:`slactl.io.partition_store`).

    Parameters
    ----------
    n_owned, n_halo : int
        Length of the owned and of the ghost part of a local vector.
    send_ranks, send_offsets, send_index : int arrays
        ``send_index[send_offsets[i]:send_offsets[i+1]]`` are the owned entries sent to
        ``send_ranks[i]``, in the order that rank stores them.
    recv_ranks, recv_offsets : int arrays
        ``halo[recv_offsets[i]:recv_offsets[i+1]]`` comes from ``recv_ranks[i]``.
    device : torch device
        Where the index tensors live (that of the vectors).
    group : ProcessGroup, optional
        The process group (default: the world); peers are global ranks.
    """

    def __init__(self, n_owned: int, n_halo: int, send_ranks: Any, send_offsets: Any, send_index: Any,
                 recv_ranks: Any, recv_offsets: Any, *, device: Any = "cpu", group: Any = None):
        self.n_owned, self.n_halo = int(n_owned), int(n_halo)
        self.device = torch.device(device)
        self.group = group
        so, ro = np.asarray(send_offsets, dtype=np.int64), np.asarray(recv_offsets, dtype=np.int64)
        index = torch.as_tensor(np.asarray(send_index, dtype=np.int64), device=self.device)
        self.sends = [(int(r), index[so[i]:so[i + 1]]) for i, r in enumerate(np.asarray(send_ranks))]
        self.recvs = [(int(r), int(ro[i]), int(ro[i + 1])) for i, r in enumerate(np.asarray(recv_ranks))]
        # All sends packed by one index_select into one buffer: neighbour i's message is the slice
        # [lo, hi) of it (the send lists are consecutive in send_index).
        base = int(so[0]) if so.size else 0
        self._send_index = index[base:int(so[-1])] if so.size else index[:0]
        self._send_slices = [(r, int(so[i]) - base, int(so[i + 1]) - base) for i, (r, _) in enumerate(self.sends)]
        if ro.size and int(ro[-1]) != self.n_halo:
            raise ValueError(f"receive lists cover {int(ro[-1])} ghosts but the halo has {self.n_halo}")

    @classmethod
    def from_block(cls, block: Any, *, device: Any = "cpu", group: Any = None) -> "HaloPlan":
        """The plan of a :class:`~slactl.io.partition_store.RankBlock`."""
        return cls(block.n_owned, block.n_halo, block.send_ranks, block.send_offsets, block.send_index,
                   block.recv_ranks, block.recv_offsets, device=device, group=group)

    @property
    def isolated(self) -> bool:
        """True when this rank neither sends nor receives: an exchange would post nothing."""
        return not self.sends and not self.recvs

    @property
    def neighbours(self) -> list[int]:
        return sorted({r for r, _ in self.sends} | {r for r, _, _ in self.recvs})

    def _post(self, ops: list) -> list:
        return dist.batch_isend_irecv(ops) if ops else []

    def start(self, x: torch.Tensor) -> HaloExchange:
        """Post the broadcast of owned ``x`` (``[n_owned]`` or ``[n_owned, k]``) to the ghosts;
        ``wait()`` returns the halo ``[n_halo(, k)]``."""
        x = x.detach()
        tail = tuple(x.shape[1:])
        ops = []
        if self._send_slices:
            packed = x.index_select(0, self._send_index)  # one gather kernel for every neighbour
            for peer, lo, hi in self._send_slices:
                ops.append(dist.P2POp(dist.isend, packed[lo:hi], peer, self.group))
        # one receive buffer, each neighbour's message lands in its (contiguous) slice: no concatenation
        halo = x.new_empty((self.n_halo,) + tail)
        for peer, lo, hi in self.recvs:
            ops.append(dist.P2POp(dist.irecv, halo[lo:hi], peer, self.group))
        reqs = self._post(ops)
        return HaloExchange(reqs, lambda: halo)

    def start_reduce(self, ghost: torch.Tensor) -> HaloExchange:
        """Post the reduction of ``ghost`` (``[n_halo(, k)]``) to the owners; ``wait()`` returns the
        summed contributions to this rank's owned entries, ``[n_owned(, k)]``."""
        ghost = ghost.detach().contiguous()
        tail = tuple(ghost.shape[1:])
        ops, received = [], []
        for peer, lo, hi in self.recvs:
            ops.append(dist.P2POp(dist.isend, ghost[lo:hi], peer, self.group))
        buf = ghost.new_empty((self._send_index.numel(),) + tail)
        for (peer, idx), (_, lo, hi) in zip(self.sends, self._send_slices):
            received.append((idx, buf[lo:hi]))
            ops.append(dist.P2POp(dist.irecv, buf[lo:hi], peer, self.group))
        reqs = self._post(ops)

        def finish() -> torch.Tensor:
            # one index_add_ per neighbour: an owned entry sent to several neighbours appears once
            # in each list, so the sums stay deterministic (no colliding atomics on a GPU)
            out = ghost.new_zeros((self.n_owned,) + tail)
            for idx, part in received:
                out.index_add_(0, idx, part)
            return out

        return HaloExchange(reqs, finish)

    def broadcast_rows(self, crow: torch.Tensor, *columns: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Variable-length records of the owned rows, sent to their ghosts (a set-up step: e.g.
        the prolongator rows of the halo nodes).

        Row ``i`` owns the entries ``crow[i]:crow[i + 1]`` of every array of ``columns`` (a CSR
        layout). Returns ``(ghost_crow, *ghost_columns)``: the same layout for the ghosts, in halo
        order. Two rounds of messages (lengths, then every array in one batch) and one host
        synchronization (the message sizes)."""
        rows = self._send_index
        return self._ragged(crow, columns, rows, self._send_slices, self.n_halo, self.recvs)

    def reduce_rows(self, ghost_crow: torch.Tensor, *ghost_columns: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Variable-length records of the ghosts, sent to their owners (the transpose of
        :meth:`broadcast_rows`; e.g. the coarse-matrix rows a rank computed for other ranks'
        aggregates). Returns ``(owner_rows, crow, *columns)``: one record per (ghost, neighbour)
        in the order of the send lists, ``owner_rows`` the owned row each record belongs to (a row
        sent to several neighbours gets several records: sum them)."""
        rows = torch.arange(self.n_halo, device=ghost_crow.device)
        out = self._ragged(ghost_crow, ghost_columns, rows, self.recvs, int(self._send_index.numel()), self._send_slices)
        return (self._send_index, *out)

    def _ragged(self, crow: torch.Tensor, columns: tuple, rows: torch.Tensor, src_slices: list, n_out: int,
                dst_slices: list) -> tuple[torch.Tensor, ...]:
        """Send the records of ``rows`` (``src_slices``: (peer, lo, hi) over ``rows``) and receive
        ``n_out`` records (``dst_slices`` over them)."""
        device = crow.device
        lengths = (crow[1:] - crow[:-1]).to(torch.int64).index_select(0, rows)
        out_lengths = self._move(lengths, src_slices, n_out, dst_slices)
        out_crow = torch.zeros(n_out + 1, dtype=torch.int64, device=device)
        torch.cumsum(out_lengths, 0, out=out_crow[1:])
        src_crow = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=device)
        torch.cumsum(lengths, 0, out=src_crow[1:])
        # position in ``columns`` of every entry of the sent records
        within = torch.arange(int(src_crow[-1]), device=device) - torch.repeat_interleave(src_crow[:-1], lengths)
        positions = torch.repeat_interleave(crow[:-1].to(torch.int64).index_select(0, rows), lengths) + within
        src_bounds, dst_bounds = src_crow.cpu(), out_crow.cpu()  # the message sizes
        to_entries = lambda slices, bounds: [(p, int(bounds[lo]), int(bounds[hi])) for p, lo, hi in slices]  # noqa: E731
        outs = []
        for column in columns:
            outs.append(self._move(column.index_select(0, positions), to_entries(src_slices, src_bounds),
                                   int(dst_bounds[-1]), to_entries(dst_slices, dst_bounds)))
        return (out_crow, *outs)

    def _move(self, src: torch.Tensor, src_slices: list, n_out: int, dst_slices: list) -> torch.Tensor:
        """One batch: ``src[lo:hi]`` to each peer of ``src_slices``, received into ``out[lo:hi]`` from
        each peer of ``dst_slices``. Both ends know every message's size; empty ones are not posted."""
        src = src.contiguous()
        out = src.new_empty((n_out,) + tuple(src.shape[1:]))
        ops = [dist.P2POp(dist.isend, src[lo:hi], peer, self.group) for peer, lo, hi in src_slices if hi > lo]
        ops += [dist.P2POp(dist.irecv, out[lo:hi], peer, self.group) for peer, lo, hi in dst_slices if hi > lo]
        for req in self._post(ops):
            req.wait()
        return out

    @classmethod
    def from_needs(cls, owned: torch.Tensor, halo: torch.Tensor, halo_owner: torch.Tensor, *, group: Any = None) -> "HaloPlan":
        """The plan that brings the ghosts ``halo`` (global ids, grouped by ``halo_owner`` in rank
        order) to this rank from their owners, whoever they are: every rank tells every owner
        which of its ids it needs (one all-gather of the request counts, then one batch of
        requests). ``owned``: this rank's global ids. Collective."""
        device, world = owned.device, dist.get_world_size(group)
        if halo.numel() > 1 and not bool((halo_owner[1:] >= halo_owner[:-1]).all()):
            raise ValueError("the ghosts must be grouped by owner, in rank order")
        asked = torch.bincount(halo_owner, minlength=world).to(torch.int64) if halo.numel() else \
            torch.zeros(world, dtype=torch.int64, device=device)
        table = [torch.empty_like(asked) for _ in range(world)]
        dist.all_gather(table, asked, group=group)
        me = dist.get_rank(group)
        asks_me = torch.stack(table)[:, me].cpu()  # how many ids each rank asks this one for
        asked_host = asked.cpu()
        recv_ranks = [q for q in range(world) if int(asked_host[q])]
        recv_offsets = np.concatenate([[0], np.cumsum([int(asked_host[q]) for q in recv_ranks])]).astype(np.int64)
        send_ranks = [q for q in range(world) if int(asks_me[q])]
        send_offsets = np.concatenate([[0], np.cumsum([int(asks_me[q]) for q in send_ranks])]).astype(np.int64)
        plan = cls(owned.numel(), halo.numel(), [], [0], [], recv_ranks, recv_offsets, device=device, group=group)
        requests = plan._move(halo, [(q, int(recv_offsets[i]), int(recv_offsets[i + 1])) for i, q in enumerate(recv_ranks)],
                              int(send_offsets[-1]),
                              [(q, int(send_offsets[i]), int(send_offsets[i + 1])) for i, q in enumerate(send_ranks)])
        order = torch.argsort(owned)
        pos = torch.searchsorted(owned[order], requests)
        if requests.numel() and not bool((owned[order][pos.clamp_max(max(owned.numel() - 1, 0))] == requests).all()):
            raise ValueError("a rank asked for ids this rank does not own")
        return cls(owned.numel(), halo.numel(), send_ranks, send_offsets, order[pos].cpu(), recv_ranks, recv_offsets,
                   device=device, group=group)

    def __repr__(self) -> str:
        return (f"HaloPlan(n_owned={self.n_owned}, n_halo={self.n_halo}, "
                f"send_to={[r for r, _ in self.sends]}, recv_from={[r for r, _, _ in self.recvs]})")


class _GhostBroadcast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, plan):  # type: ignore[override]
        ctx.plan = plan
        return plan.start(x).wait()

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        # The adjoint of copying owner -> ghosts is summing ghosts -> owner.
        return ghost_reduce(g.contiguous(), ctx.plan), None


class _GhostReduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ghost, plan):  # type: ignore[override]
        ctx.plan = plan
        return plan.start_reduce(ghost).wait()

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return ghost_broadcast(g.contiguous(), ctx.plan), None


def ghost_broadcast(x: torch.Tensor, plan: HaloPlan) -> torch.Tensor:
    """Halo values of owned ``x`` (owner -> ghosts); differentiable (backward: :func:`ghost_reduce`)."""
    return _GhostBroadcast.apply(x, plan)


def ghost_reduce(ghost: torch.Tensor, plan: HaloPlan) -> torch.Tensor:
    """Sum of the ghosts' values at their owners; differentiable (backward: :func:`ghost_broadcast`)."""
    return _GhostReduce.apply(ghost, plan)
