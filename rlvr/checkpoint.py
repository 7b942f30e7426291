"""Checkpoints: everything needed to continue a run exactly, written atomically.

Layout of ``<run_dir>/checkpoints/step_<N>/``::

    policy/             HF directory (LoRA merged) - loadable by ``rlvr eval`` and transformers
    trainer_state.pt    trainable policy params, critic, optimizers, schedulers, KL controller,
                        counters, RNG states: tensors and plain containers only, read back with
                        ``torch.load(weights_only=True)`` (a run directory from elsewhere cannot run
                        code on ``--resume``)

With FSDP2 (``trainer.distributed=fsdp2``) the sharded models are gathered first and process 0
writes exactly this layout (a consolidated checkpoint; :mod:`rlvr.fsdp`), so any number of processes
can resume from it and ``rlvr eval`` reads ``policy/`` as usual.

A checkpoint directory appears only once complete (written to a temp dir, then renamed), so a
crash while saving never leaves a checkpoint that ``--resume`` would pick up half-written. A
directory is never deleted in place either: it is first renamed out of the way (``.old_step_<N>``
when a save replaces its own step, ``.gone_step_<N>`` when pruned), so a crash part-way through a
deletion leaves no ``step_<N>`` with half its files; a displaced ``.old_step_<N>`` whose
replacement never arrived is still a whole checkpoint and is resumed from.
"""
from __future__ import annotations

import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlvr.errors import RlvrError


class CheckpointError(RlvrError):
    """A checkpoint that cannot be resumed from (unsafe or unreadable ``trainer_state.pt``)."""


_STEP_DIR = re.compile(r"^step_(\d+)$")
_DISPLACED_DIR = re.compile(r"^\.old_step_(\d+)$")  # a whole checkpoint moved aside by a save of its step


def rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain containers (numpy's key array as a tensor)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    numpy = {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
             "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    state = {"python": random.getstate(), "numpy": numpy, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    if isinstance(n, dict):
        n = (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    np.random.set_state(n)  # a tuple: a checkpoint of an earlier version
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters that training changes (frozen ones are rebuilt from the base model)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], policy: torch.nn.Module,
                    tokenizer: Any, weights: dict[str, torch.Tensor] | None = None, keep: int = 0) -> Path:
    """Write ``step_<step>`` atomically. ``weights``: the policy's full state dict when the module
    itself holds only a shard (FSDP2; gathered by the caller); the HF export is written from it.
    ``keep`` > 0: once it is in place, remove all but the newest ``keep`` complete checkpoints."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step}"
    tmp = ckpt_root / f".tmp_step_{step}"
    _tidy(ckpt_root)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    export = policy
    if hasattr(policy, "merge_and_unload"):  # peft: export merged weights, keep adapters in state
        import copy

        export = copy.deepcopy(policy).merge_and_unload()
    if weights is not None:
        export.save_pretrained(tmp / "policy", state_dict=weights, safe_serialization=True)
    else:
        export.save_pretrained(tmp / "policy", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "policy")
    torch.save(state, tmp / "trainer_state.pt")
    old = ckpt_root / f".old_step_{step}"
    if final.exists():  # the same step saved again (a resumed run that stops where it resumed)
        # whole until the new one is in place (resumable in between); no earlier .old_step_<N> is
        # beside it: _tidy removed it above
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    if keep > 0:
        prune_checkpoints(run_dir, keep)
    return final


def _remove(path: Path) -> None:
    """Delete a checkpoint directory without ever leaving it half-deleted under its own name."""
    gone = path.with_name(f".gone_{path.name.lstrip('.')}")
    shutil.rmtree(gone, ignore_errors=True)
    path.rename(gone)
    shutil.rmtree(gone)


def _tidy(ckpt_root: Path) -> None:
    """Remove what a crash left: directories being deleted, and displaced copies whose replacement
    is in place (a displaced copy without one is the step's checkpoint, and stays)."""
    for p in ckpt_root.iterdir():
        m = _DISPLACED_DIR.match(p.name)
        if p.name.startswith(".gone_") or (m and (ckpt_root / f"step_{m.group(1)}").is_dir()):
            shutil.rmtree(p, ignore_errors=True)


def prune_checkpoints(run_dir: Path, keep: int) -> list[Path]:
    """Remove every complete ``step_<N>`` checkpoint but the ``keep`` newest; the removed paths.
    A new checkpoint is complete before an old one goes, so a crash here loses nothing resumable."""
    steps = complete_checkpoints(run_dir)
    gone = [p for _, p in steps[:-keep]] if len(steps) > keep else []
    for p in gone:
        _remove(p)
        shutil.rmtree(p.with_name(f".old_{p.name}"), ignore_errors=True)  # a crash's leftover of that step
    return gone


def complete_checkpoints(run_dir: Path, marker: str = "trainer_state.pt") -> list[tuple[int, Path]]:
    """(step, path) of every complete ``checkpoints/step_<N>`` (``marker`` in it: its trainer state,
    written last; ``rlvr eval`` asks for ``policy/config.json``), by step; for a step whose
    ``step_<N>`` a crash left missing, its displaced ``.old_step_<N>``."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found: dict[int, Path] = {}
    for p in root.iterdir():
        if (m := _STEP_DIR.match(p.name) or _DISPLACED_DIR.match(p.name)) and (p / marker).is_file():
            step = int(m.group(1))
            if step not in found or p.name.startswith("step_"):
                found[step] = p
    return sorted(found.items())


def latest_checkpoint(run_dir: Path) -> Path | None:
    steps = complete_checkpoints(run_dir)
    return steps[-1][1] if steps else None


def _numpy_array_globals() -> list[Any]:
    """What a plain numpy array needs to be unpickled (nothing that runs code): earlier versions
    stored numpy's RNG key array as one, so their checkpoints still resume."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    dtypes = [type(np.dtype(t)) for t in ("uint32", "int64", "float64")]  # numpy >= 1.25: dtype classes
    return [np.ndarray, np.dtype, *dtypes, _reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"),
            (_reconstruct, "numpy._core.multiarray._reconstruct")]


def load_state(ckpt: Path) -> dict[str, Any]:
    """The trainer state of ``ckpt``, loaded with ``weights_only=True``: tensors and plain containers
    only, so a crafted file cannot run code; anything else is refused with one line."""
    path = Path(ckpt) / "trainer_state.pt"
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", str(e), re.IGNORECASE)
        what = f"it names {found.group(1)}" if found else ""
        raise CheckpointError(f"{path}: refusing to load: it holds more than tensors and plain containers"
                              f"{f' ({what[:120]})' if what else ''}; it was not written by this version of "
                              "rlvr or was altered") from None
