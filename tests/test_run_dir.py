"""The run directory: safe checkpoint loading, attempts that keep their own files, resumes that
keep the run's settings, one trainer per directory, and exit codes of an interrupted run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlvr.errors import RlvrError
from rlvr.trainer import Trainer
from tiny import tiny_cfg

ROOT = Path(__file__).resolve().parents[1]


def rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


class _Payload:
    """Pickles as a call that writes a marker file: what a crafted trainer_state.pt would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "ran"))


def test_crafted_trainer_state_is_refused_and_does_not_run(tmp_path):
    cfg = tiny_cfg(tmp_path)
    ckpt = Path(cfg.trainer.output_dir) / "checkpoints" / "step_5"
    (ckpt / "policy").mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"step": 5, "payload": _Payload(marker)}, ckpt / "trainer_state.pt")
    with pytest.raises(RlvrError, match=r"trainer_state.pt: refusing to load") as e:
        Trainer(cfg, resume=True)
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_checkpoint_state_loads_with_weights_only(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"algorithm.preset": "ppo", "trainer.total_steps": 1,
                                "algorithm.value_warmup_steps": 0})
    Trainer(cfg).train()
    st = torch.load(Path(cfg.trainer.output_dir) / "checkpoints" / "step_1" / "trainer_state.pt",
                    weights_only=True)
    assert st["step"] == 1 and st["critic"] is not None
