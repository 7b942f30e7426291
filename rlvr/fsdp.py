"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for the trainer's models.

Layout: every decoder block is one FSDP unit, and a :class:`FSDPRoot` around the whole model is
the root unit (embeddings, final norm, LM head, a critic's value head: the parameters outside the
blocks). Each process keeps 1/W of every parameter, gradient and optimizer state; a block's full
parameters exist only while it runs (all-gathered before, freed after), its gradients are
reduce-scattered (averaged over processes) in the backward pass.

Every pass goes through the root. The trainer's log-prob pass calls the trunk and the LM head
separately (:func:`rlvr.models.sequence_logprobs`), so ``root(*args, fn=f)`` runs ``f(model,
*args)`` inside the root's forward, where the root's parameters are gathered and its backward
hooks registered; ``root(**kwargs)`` is ``model(**kwargs)`` (generation, the sync fingerprint).

Full weights for a rollout engine (:func:`full_tensors`) are gathered one tensor at a time (a
collective: every process iterates in the same order), so a process never holds a second full copy
of the model. Sampling with the trainer's own module (the embedded ``hf`` engine, evaluation) runs
inside :func:`gathered`: all units are unsharded once, then decoding makes no collective at all
(processes decode different numbers of steps), at the cost of one full copy of the policy's
parameters per process while sampling.

Checkpoints are consolidated (:func:`full_model_state`, :func:`full_optimizer_state`): process 0
writes the same files as a single-process run, so ``rlvr eval``, a single-process resume and an
FSDP2 resume (:func:`load_model_state`, :func:`load_optimizer_state`, exact) all read them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn


class FSDPRoot(nn.Module):
    """The root FSDP unit around ``module``: ``root(*a, **kw)`` is ``module(*a, **kw)`` and
    ``root(*a, fn=f, **kw)`` is ``f(module, *a, **kw)``, both with FSDP's root hooks around them.
    Attributes it does not have (``config``, ``generation_config``...) are the module's."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args, fn=None, **kwargs):
        if fn is None:
            return self.module(*args, **kwargs)
        return fn(self.module, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_modules"]["module"], name)


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` holds FSDP-sharded (DTensor) parameters."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside an :class:`FSDPRoot` (anything else is returned as it is)."""
    return model.module if isinstance(model, FSDPRoot) else model


def shard(model: nn.Module, device: torch.device, *, reshard_after_forward: bool = True) -> FSDPRoot:
    """Shard ``model`` over all processes: each decoder block, then an :class:`FSDPRoot` around it
    (returned; the trainer keeps ``model`` for names and state and calls passes through the root).

    Every process must hold the same parameters first (the trainer broadcasts process 0's).
    ``reshard_after_forward`` (accelerate's ``fsdp_reshard_after_forward``) applies to the root as
    well: between passes no process keeps a full copy of anything."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from rlvr.models import block_list

    import warnings

    # the root's outputs (log-probs, hidden states) are only used out of place by the trainer
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDPFSDPRoot\) returned a view tensor")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for block in block_list(model)[2]:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward)
    root = FSDPRoot(model)
    fully_shard(root, mesh=mesh, reshard_after_forward=reshard_after_forward)
    root._get_fsdp_state()._lazy_init()  # the root is decided now, not by whichever unit runs first
    root.rlvr_reshard_after_forward = reshard_after_forward
    return root


@contextlib.contextmanager
def gathered(root: FSDPRoot):
    """Every unit of ``root`` unsharded for the duration (one all-gather per unit, in the same
    order on every process), and no resharding after a forward: passes inside make no collective,
    so processes may run different numbers of them (decoding) or only one process may (evaluation).
    Memory: one full copy of the model's parameters per process while inside."""
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in root.modules() if isinstance(m, FSDPModule)]
    for u in units:
        u.unshard()
    for u in units:
        u.set_reshard_after_forward(False, recurse=False)
    try:
        yield root
    finally:
        for u in units:
            u.set_reshard_after_forward(getattr(root, "rlvr_reshard_after_forward", True), recurse=False)
            u.reshard()


@torch.no_grad()
def full_tensors(items: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, full tensor)`` for ``(name, tensor)`` pairs: a sharded tensor is all-gathered when
    its turn comes (a collective: every process must iterate the same names in the same order), so
    at most one gathered tensor is alive at a time unless the consumer keeps them."""
    from torch.distributed.tensor import DTensor

    for name, t in items:
        yield name, (t.full_tensor() if isinstance(t, DTensor) else t)


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's full state dict on CPU on process 0 (empty elsewhere); a collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(cpu_offload=True))


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], *, strict: bool = True) -> None:
    """Load a full state dict (every process holds it) into a sharded ``model``: each process keeps
    its own slice, bit for bit."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, state, options=_options(strict=strict))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's full state on CPU on process 0 (empty elsewhere; a collective), in
    ``torch.optim``'s own layout (parameters numbered in param-group order), the layout a
    single-process run saves."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    osd = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    if not osd:
        return {}
    order = _optimizer_names(model, optimizer)
    index = {name: i for i, name in enumerate(order)}
    return {"state": {index[k]: v for k, v in osd["state"].items()},
            "param_groups": [{**g, "params": [index[k] for k in g["params"]]} for g in osd["param_groups"]]}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a full optimizer state in ``torch.optim``'s layout (:func:`full_optimizer_state`, or a
    single-process checkpoint) into the optimizer of a sharded ``model``."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    names = _optimizer_names(model, optimizer)
    osd = {"state": {names[i]: v for i, v in state["state"].items()},
           "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, osd, options=_options())


def _optimizer_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimizer's numbering (param groups in order)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
