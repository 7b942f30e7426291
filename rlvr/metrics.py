"""Per-step metrics: JSONL (always), TensorBoard (optional), W&B (when configured), rich progress.

Every line of ``metrics.jsonl`` is written and flushed as soon as the step ends, so a run killed
at any point keeps every finished step.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

# Shown in the progress bar, in this order, when present.
PROGRESS_KEYS = ("reward/mean", "accuracy", "kl/ref", "entropy", "clip/frac", "response_length/mean")


def _clean(v: Any) -> Any:
    """JSON-safe scalar: tensors -> float, NaN/Inf -> None."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def plain_line(row: dict[str, Any], stream: str, total: int) -> str:
    """One line for a log that is not a terminal: ``step 3/20  reward=0.12 accuracy=0.11 ... 9.8s``."""
    if stream != "metrics":
        vals = "  ".join(f"{k}={v:.4g}" for k, v in row.items()
                         if k.startswith("eval/") and isinstance(v, (int, float)))
        return f"eval at step {row.get('step', 0)}: {vals}"
    vals = "  ".join(f"{k.split('/')[0] if k.endswith('/mean') else k}={row[k]:.3g}"
                     for k in PROGRESS_KEYS if isinstance(row.get(k), (int, float)))
    t = row.get("time/step")
    return f"step {row.get('step', 0)}/{total}  {vals}" + (f"  {t:.1f}s" if isinstance(t, (int, float)) else "")


class MetricsLogger:
    """Writes one JSON object per step to ``<run_dir>/<name>.jsonl`` and mirrors it elsewhere."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, wandb_project: str | None = None,
                 wandb_config: dict | None = None, progress_total: int | None = None, progress: bool = True,
                 enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._files: dict[str, Any] = {}
        self._tb = None
        self._wandb = None
        self._progress = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:  # tensorboard is a dependency, but stay usable without it
                self._tb = None
        if wandb_project:
            import wandb  # explicit opt-in: fail loudly when missing

            self._wandb = wandb.init(project=wandb_project, config=wandb_config, dir=str(self.run_dir))
        self._plain_total = None
        if progress and progress_total and not sys.stdout.isatty():
            self._plain_total = progress_total  # piped to a file: one plain line per step instead
        elif progress and progress_total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), TextColumn("{task.description}"))
            self._task = self._progress.add_task("", total=progress_total)
            self._progress.start()

    def log(self, metrics: dict[str, Any], *, stream: str = "metrics") -> dict[str, Any]:
        row = {k: _clean(v) for k, v in metrics.items()}
        if not self.enabled:
            return row
        f = self._files.get(stream)
        if f is None:
            f = self._files[stream] = open(self.run_dir / f"{stream}.jsonl", "a", buffering=1)
        f.write(json.dumps(row) + "\n")
        f.flush()
        step = int(row.get("step", 0))
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(row, step=step)
        if self._plain_total is not None:
            print(plain_line(row, stream, self._plain_total), flush=True)
        if self._progress is not None and stream == "metrics":
            desc = "  ".join(f"{k.split('/')[0] if k.endswith('/mean') else k}={row[k]:.3g}"
                             for k in PROGRESS_KEYS if isinstance(row.get(k), (int, float)))
            self._progress.update(self._task, completed=step, description=desc)
        return row

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class PhaseTimer:
    """Accumulates wall-clock per phase: ``with timer("generate"): ...`` -> {"time/generate": s}."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.totals[f"time/{name}"] = timer.totals.get(f"time/{name}", 0.0) + time.perf_counter() - self.t0

        return _Ctx()

    def pop(self) -> dict[str, float]:
        out, self.totals = self.totals, {}
        return out
