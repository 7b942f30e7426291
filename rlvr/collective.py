"""Every decision the training processes must take together, in one place.

With W processes (``accelerate launch``) each one holds a slice of the step's groups. Any branch
that changes how many collective calls a process makes (update or skip, how many rows and so
mini-batches, stop) is taken on values that all processes share, and every statistic that defines
the update (advantage baselines, loss normalisers, a critic's initial shift) is that of the global
batch, so W processes compute exactly what one process computes on the union. One process (W = 1)
makes no collective call at all.
"""
from __future__ import annotations

import atexit
import math
from typing import Any, Callable

import torch

_TEARDOWN_REGISTERED = False


# seconds the main thread sleeps (the GIL released) after tearing the group down; see end_process_group
RELEASE_S = 0.25


def end_process_group(wait_for_peers: bool = False) -> None:
    """Tear the process group down so that the process can exit without aborting.

    Two hazards at exit:

    * A group left to static destruction destroys gloo's threads unjoined.
    * ``destroy_process_group`` only shuts the group down; while anything still references it (a
      DDP or FSDP model, a trainer that a script keeps), gloo's worker threads live on, and each
      drops its last finished work *after* the collective returned, which decrefs the work's
      tensors and so takes the GIL. If the interpreter has begun to finalize by then, the thread is
      unwound inside a noexcept destructor and the whole process aborts ("terminate called without
      an active exception", SIGABRT, after all of its work was written). Measured on 2-process gloo
      launches of a script that builds a DDP model, runs a few collectives and exits while rank 0
      lingers a random 0-0.5 s: 5 launches in 79 aborted with a plain destroy, 1 in 44 with a
      barrier first. Sleeping :data:`RELEASE_S` with the GIL released lets those threads finish
      while the interpreter is whole: 0 in 59.

    ``wait_for_peers`` adds a barrier first when there are several processes (``rlvr train``: every
    peer has finished its work). No barrier at exit of a script: a peer may be gone or failing, and
    waiting for it would turn an error into a hang.
    """
    import time

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait_for_peers and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
        time.sleep(RELEASE_S)


def register_teardown() -> None:
    """Register :func:`end_process_group` to run at interpreter exit, once per process, for any group
    rlvr uses (several processes, or the one-process group that FSDP2 runs on). ``rlvr train`` ends
    the group itself, with a barrier first; this covers every other user of
    :class:`~rlvr.trainer.Trainer` (scripts, notebooks, tests), and does nothing where the group is
    already gone."""
    global _TEARDOWN_REGISTERED
    if not _TEARDOWN_REGISTERED:
        atexit.register(end_process_group)
        _TEARDOWN_REGISTERED = True


class Collective:
    """The process group seen by the training loop: ``world`` processes, this one ``rank``."""

    def __init__(self, world: int, rank: int, device: torch.device):
        self.world, self.rank, self.device = world, rank, device
        if world > 1:
            register_teardown()

    # ------------------------------------------------------------------ gathering
    def gather_floats(self, values: list[float]) -> torch.Tensor:
        """[world, len(values)] float64: every process's ``values`` (one all-gather)."""
        x = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world == 1:
            return x[None]
        out = [torch.empty_like(x) for _ in range(self.world)]
        torch.distributed.all_gather(out, x)
        return torch.stack(out).cpu()

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def agreed(self, ok: bool) -> bool:
        """``ok`` on every process (a MIN all-reduce): all of them skip a step, or none does."""
        if self.world > 1:
            flag = torch.tensor([1.0 if ok else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            ok = bool(flag.item() > 0)
        return ok

    def main_failed(self, failed: bool) -> bool:
        """Process 0's ``failed`` flag, on every process (a broadcast)."""
        if self.world == 1:
            return failed
        flag = torch.tensor([1.0 if failed else 0.0], device=self.device)
        torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())

    def broadcast_parameters(self, models: list[torch.nn.Module | None]) -> None:
        """Every model starts from process 0's parameters (randomly initialised parts such as LoRA
        adapters are drawn with a per-process seed)."""
        if self.world == 1:
            return
        for model in models:
            if model is None:
                continue
            with torch.no_grad():
                for q in model.parameters():
                    torch.distributed.broadcast(q.data, src=0)

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """All-reduce and average the gradients of unsharded ``params`` (a missing one counts as 0)."""
        if self.world == 1:
            return
        for q in params:
            if q.grad is None:
                q.grad = torch.zeros_like(q)
            torch.distributed.all_reduce(q.grad)
            q.grad /= self.world

    def mean_(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` averaged over processes, in place (an all-reduce); returned for chaining."""
        if self.world > 1:
            torch.distributed.all_reduce(x)
            x /= self.world
        return x

    # ------------------------------------------------------------------ batch statistics
    def global_mean(self, x: torch.Tensor, weight: torch.Tensor) -> float:
        """sum(w x) / sum(w) over the rows of every process (NaN when the weights sum to 0)."""
        w = weight.to(x.device)
        s, n = self.gather_floats([float((x * w).sum()), float(w.sum())]).sum(0).tolist()
        return s / n if n > 0 else float("nan")

    def process_mean(self, value: float) -> float:
        """Mean of one number over processes, ignoring NaN (a process that has no value)."""
        col = self.gather_floats([value])[:, 0]
        return float(col.nanmean())

    @staticmethod
    def learn_rows(keep: torch.Tensor, rows_per_process: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows to train on ([n] indices) and which are real ([n] 1.0/0.0), n = ``rows_per_process``.

        Every process trains on the same number of rows, the largest kept count, so all run the
        same mini-batches and optimizer steps. A process that kept fewer pads with rows it filtered
        out (repeated if it has too few); padding has no loss tokens and no part in the batch
        statistics (:meth:`advantages`)."""
        kept = keep.nonzero().squeeze(1)
        src = torch.cat([(~keep).nonzero().squeeze(1), kept])
        need = max(0, rows_per_process - len(kept))
        pad = src[torch.arange(need) % len(src)] if need else src[:0]
        rows = torch.cat([kept, pad]).to(device)
        active = torch.cat([torch.ones(len(kept)), torch.zeros(len(pad))]).to(device)
        return rows, active

    def minibatch_totals(self, mb_mask: torch.Tensor, norm_len: int) -> dict[str, Any]:
        """Loss normalisers of one mini-batch [n, R]: tokens and sequences with a loss token.

        With W processes these are the global counts divided by W: each process's loss is then W x
        its share of the global mini-batch loss, and the averaged all-reduce of the gradients gives
        the gradient of the global token mean (not a mean of per-process means), exactly as one
        process would on the union."""
        n_tok, n_seq = mb_mask.sum(), (mb_mask.sum(1) > 0).sum()
        if self.world == 1:
            return {"num_tokens": n_tok.clamp(min=1), "num_seqs": n_seq.clamp(min=1), "norm_len": norm_len}
        tok, seq = self.gather_floats([float(n_tok), float(n_seq)]).sum(0).tolist()
        return {"num_tokens": max(tok, 1.0) / self.world, "num_seqs": max(seq, 1.0) / self.world,
                "norm_len": norm_len}

    def advantages(self, estimate: Callable[..., tuple[torch.Tensor, torch.Tensor]], rewards: torch.Tensor,
                   resp: torch.Tensor, values: torch.Tensor | None, group_ids: torch.Tensor,
                   active: torch.Tensor | None, splits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``estimate(rewards, resp, values=, group_ids=, splits=)`` -> (advantages, returns) [N, R] for
        this process's rows, computed on the global batch: with several processes the real rows
        (``active``) of all are gathered in rank order (group ids made distinct, responses padded to
        the longest), so batch-level statistics (batch means, whitening) are exactly those one process
        computes on the same data."""
        if self.world == 1:
            return estimate(rewards, resp, values=values, group_ids=group_ids, splits=splits)
        act = active.bool()
        parts = self.gather_objects([x.detach().cpu() if x is not None else None
                                     for x in (rewards, resp, values, group_ids, act, splits)])
        R = max(q[0].shape[1] for q in parts)
        padR = lambda x: torch.nn.functional.pad(x, (0, R - x.shape[1]))  # noqa: E731
        offset = 1 + max(int(q[3].max()) for q in parts)
        cat = lambda i: torch.cat([padR(q[i]) if q[i].dim() == 2 else q[i] for q in parts])  # noqa: E731
        rew, msk, ids = cat(0), cat(1), torch.cat([q[3] + r * offset for r, q in enumerate(parts)])
        vals = cat(2) if values is not None else None
        spl = cat(5) if splits is not None else None
        real = cat(4)
        adv, ret = estimate(rew[real], msk[real], values=None if vals is None else vals[real],
                            group_ids=ids[real], splits=None if spl is None else spl[real])
        full_adv, full_ret = torch.zeros_like(rew), torch.zeros_like(rew)
        full_adv[real], full_ret[real] = adv.to(rew.dtype), ret.to(rew.dtype)
        start = sum(len(q[4]) for q in parts[:self.rank])
        N, Rl = rewards.shape
        return (full_adv[start:start + N, :Rl].to(rewards.device),
                full_ret[start:start + N, :Rl].to(rewards.device))

    # ------------------------------------------------------------------ metrics and stopping
    def reduce_metrics(self, m: dict[str, Any]) -> dict[str, Any]:
        """Average metrics over processes (max for *_max, */max and memory, min for */min), over the
        union of the processes' keys: a key a process lacks counts as missing there (NaN-mean)."""
        if self.world == 1:
            return m
        mine = {k: float(v) for k, v in m.items() if isinstance(v, (int, float))}
        parts = self.gather_objects(mine)
        for k in sorted(set().union(*parts)):
            vals = [q[k] for q in parts if k in q and not math.isnan(q[k])]
            if not vals:
                m[k] = float("nan")
            elif k.endswith(("_max", "/max")) or k.startswith("memory"):
                m[k] = max(vals)
            elif k.endswith("/min"):
                m[k] = min(vals)
            else:
                m[k] = sum(vals) / len(vals)
        return m

    def stop_inputs(self, signal_number: int, elapsed: float) -> tuple[int, float]:
        """(a signal any process received (the largest number), the slowest process's clock)."""
        if self.world == 1:
            return signal_number, elapsed
        g = self.gather_floats([float(signal_number), float(elapsed)])
        return int(g[:, 0].max()), float(g[:, 1].max())
