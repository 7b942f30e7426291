"""The run directory: its lock, its attempts, its logs on a resume, its start records.

One process trains in a run directory at a time: ``<run_dir>/.lock``, held with ``fcntl.flock``.
The lock is taken when a :class:`~rlvr.trainer.Trainer` is built (process 0 of a distributed run)
and held until it is closed or its process ends (the kernel drops a dead process's lock, so a
crashed run never leaves a stale one). The file holds the pid of the holder, which a refused start
names. A second trainer in the same process (a test, a notebook) shares the lock.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from rlvr.errors import RlvrError

LOCK_NAME = ".lock"
_HELD: dict[str, list[int]] = {}  # resolved run dir -> [fd, holders in this process]


def write_atomic(path: str | Path, text: str) -> None:
    """Replace ``path``'s contents with ``text`` so that a write cut off half-way (a full disk, a
    kill, a power cut) leaves the file whole as before, or absent if it was: the text goes to a
    temporary file beside it, is flushed to disk, then renamed over it (``os.replace`` is atomic
    within a filesystem). For the files that are read back: ``summary.json`` (a finished run),
    ``config.yaml`` (a resume), the logs rewritten at a resume, ``compare.json``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RunDirInUse(RlvrError):
    """The run directory is locked by another live process."""


def lock_run_dir(run_dir: str | Path, what: str = "trainer.output_dir") -> Callable[[], None]:
    """Lock ``run_dir`` (created if missing) for this process; returns the function that releases
    it. Raises :class:`RunDirInUse` naming the holder's pid when another process holds it."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: nothing to hold
        return lambda: None
    path = Path(run_dir).resolve()
    key = str(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return _releaser(key)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirInUse(f"{what}: {path} is in use by another process (pid {holder}, holding "
                          f"{path / LOCK_NAME}); wait for it to finish or stop it") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1]
    return _releaser(key)


def _releaser(key: str) -> Callable[[], None]:
    done = []

    def release() -> None:
        if done or key not in _HELD:
            return
        done.append(True)
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            fd, _ = _HELD.pop(key)
            os.close(fd)  # closing the only descriptor drops the flock

    return release


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for a child process that should get SIGTERM when its parent dies however it
    dies (SIGKILL, SIGHUP, ...): Linux's ``prctl(PR_SET_PDEATHSIG)``. None elsewhere."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


# settings a resume may change: budgets, eval/checkpoint cadence and logging, none of which changes
# the run's path (trainer.total_steps only with a constant learning rate: else it sets the schedule)
RESUMABLE_SETTINGS = frozenset({
    "name", "trainer.total_steps", "trainer.max_samples", "trainer.max_tokens", "trainer.max_time_s",
    "trainer.eval_every", "trainer.eval_every_limit", "trainer.eval_at_start", "trainer.checkpoint_every",
    "trainer.keep_checkpoints", "trainer.progress",
    "trainer.tensorboard", "trainer.wandb_project", "trainer.dist_timeout_s",
    "trainer.output_dir"})  # the same directory, spelled another way (it holds the checkpoint)

# the files of one attempt at a run: a fresh start moves them all to attempts/<k>/ together
ATTEMPT_FILES = ("metrics.jsonl", "eval.jsonl", "summary.json", "metrics.jsonl.after_checkpoint",
                 "eval.jsonl.after_checkpoint", "tb", "checkpoints", "eval_items.jsonl", "provenance.json",
                 "config.yaml", "resume_forced.jsonl")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class RunDir:
    """``trainer.output_dir`` as the trainer uses it; ``is_main``: this process writes (process 0)."""

    def __init__(self, path: str | Path, is_main: bool):
        self.path, self.is_main = Path(path), is_main
        self._release: Callable[[], None] = lambda: None

    def lock(self, main_failed: Callable[[bool], bool]) -> None:
        """Process 0 holds the lock for the trainer's life: a second trainer on the same directory
        is refused (on every process, ``main_failed`` sharing process 0's outcome) naming the holder."""
        error = None
        if self.is_main:
            try:
                self._release = lock_run_dir(self.path)
            except RlvrError as e:
                error = e
        if main_failed(error is not None) and error is None:
            raise RlvrError(f"trainer.output_dir: {self.path} is in use by another process (see process 0)")
        if error is not None:
            raise error

    def release(self) -> None:
        self._release()

    def check_resume_settings(self, cfg, force: bool) -> dict[str, list[Any]]:
        """The settings that differ between the run's ``config.yaml`` and ``cfg``, as
        ``{key: [run's value, this value]}``; a resume may change only those that cannot change the
        run's path (:data:`RESUMABLE_SETTINGS`); any other difference is refused with the keys listed,
        unless ``force`` (then they are returned, to be recorded by :meth:`record_forced_resume`)."""
        import yaml

        from rlvr.config import settings_changed
        from rlvr.errors import ConfigError

        path = self.path / "config.yaml"
        if not path.is_file():
            if self.is_main:
                print(f"rlvr train: {path} is missing; cannot check that the resumed run keeps its settings")
            return {}
        try:
            before = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({getattr(e, 'problem', e)}); cannot check the resume") from None
        changed = settings_changed(before, cfg)
        t = cfg.trainer
        allowed = set(RESUMABLE_SETTINGS)
        if t.lr_schedule != "constant" or t.warmup_steps:
            allowed.discard("trainer.total_steps")  # it sets the learning rate of every later step
        refused = {k: v for k, v in changed.items() if k not in allowed}
        if refused and not force:
            listed = ", ".join(f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in refused.items())
            raise ConfigError(f"--resume: {self.path} was trained with other settings ({listed}); only "
                              "budgets, eval/checkpoint cadence and logging may change on a resume (use another "
                              "trainer.output_dir, or --force-resume to continue anyway)")
        return refused

    def record_forced_resume(self, step: int, ckpt: Path, changes: dict[str, list[Any]]) -> None:
        """Append what a forced resume changed to ``resume_forced.jsonl`` (the run is not one config)."""
        from datetime import datetime, timezone

        if not self.is_main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        row = {"step": step, "checkpoint": str(ckpt), "time": datetime.now(timezone.utc).isoformat(),
               "changed": changes}
        with open(self.path / "resume_forced.jsonl", "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        print(f"rlvr train: resume forced with changed settings {', '.join(changes)} "
              f"(recorded in {self.path / 'resume_forced.jsonl'})")

    def set_aside_earlier_attempt(self) -> None:
        """A fresh start in a directory that already has an attempt (a run stopped before its first
        checkpoint, a finished one being redone, a start without ``--resume``): move its files, its
        checkpoints among them, to ``attempts/<k>/``, so that the new ``metrics.jsonl`` never
        continues an older attempt's steps and neither ``--resume`` nor ``rlvr eval RUN_DIR`` picks
        up the older attempt's checkpoints."""
        if not self.is_main:
            return
        found = [self.path / n for n in ATTEMPT_FILES if (self.path / n).exists()]
        if not found:
            return
        k = 1
        while (self.path / "attempts" / str(k)).exists():
            k += 1
        dest = self.path / "attempts" / str(k)
        dest.mkdir(parents=True)
        for f in found:
            f.rename(dest / f.name)
        print(f"rlvr train: starting fresh; the earlier attempt's files ({', '.join(f.name for f in found)}) "
              f"moved to {dest}")

    def trim_logs_after(self, step: int) -> None:
        """Steps logged after the checkpoint will be redone: move their lines aside (not deleted)."""
        if not self.is_main:
            return
        for name in ("metrics.jsonl", "eval.jsonl"):
            path = self.path / name
            if not path.is_file():
                continue
            keep, moved = [], []
            for line in path.read_text().splitlines():
                try:
                    row_step = json.loads(line).get("step", 0)
                except json.JSONDecodeError:
                    moved.append(line)
                    continue
                (keep if row_step <= step else moved).append(line)
            if moved:
                with open(path.with_suffix(".jsonl.after_checkpoint"), "a") as f:
                    f.write("\n".join(moved) + "\n")
                write_atomic(path, "".join(line + "\n" for line in keep))

    def record_start(self, cfg, step: int) -> None:
        """``config.yaml`` and a start in ``provenance.json`` (code commit, versions, command, machine)."""
        if not self.is_main:
            return
        from rlvr import provenance
        from rlvr.config import save_config

        self.path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.path / "config.yaml")
        provenance.write(self.path, step)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """``summary.json``: the run finished (``rlvr compare`` treats its presence as "done")."""
        if self.is_main:
            write_atomic(self.path / "summary.json", json.dumps(summary, indent=2))
