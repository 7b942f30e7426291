"""Checkpoints: everything needed to continue a run exactly, written atomically.

Layout of ``<run_dir>/checkpoints/step_<N>/``::

    policy/             HF directory (LoRA merged) - loadable by ``rlvr eval`` and transformers
    trainer_state.pt    trainable policy params, critic, optimizers, schedulers, KL controller,
                        counters, RNG states

With FSDP2 (``trainer.distributed=fsdp2``) the sharded models are gathered first and process 0
writes exactly this layout (a consolidated checkpoint; :mod:`rlvr.fsdp`), so any number of processes
can resume from it and ``rlvr eval`` reads ``policy/`` as usual.

A checkpoint directory appears only once complete (written to a temp dir, then renamed), so a
crash while saving never leaves a checkpoint that ``--resume`` would pick up half-written.
"""
from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

_STEP_DIR = re.compile(r"^step_(\d+)$")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters that training changes (frozen ones are rebuilt from the base model)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], policy: torch.nn.Module,
                    tokenizer: Any, weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``step_<step>`` atomically. ``weights``: the policy's full state dict when the module
    itself holds only a shard (FSDP2; gathered by the caller); the HF export is written from it."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step}"
    tmp = ckpt_root / f".tmp_step_{step}"
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
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and
             (p / "trainer_state.pt").is_file()]
    return max(steps)[1] if steps else None


def load_state(ckpt: Path) -> dict[str, Any]:
    return torch.load(Path(ckpt) / "trainer_state.pt", map_location="cpu", weights_only=False)
