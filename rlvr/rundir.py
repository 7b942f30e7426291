"""One process trains in a run directory at a time: ``<run_dir>/.lock``, held with ``fcntl.flock``.

The lock is taken when a :class:`~rlvr.trainer.Trainer` is built (process 0 of a distributed run)
and held until it is closed or its process ends (the kernel drops a dead process's lock, so a
crashed run never leaves a stale one). The file holds the pid of the holder, which a refused start
names. A second trainer in the same process (a test, a notebook) shares the lock.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from rlvr.errors import RlvrError

LOCK_NAME = ".lock"
_HELD: dict[str, list[int]] = {}  # resolved run dir -> [fd, holders in this process]


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
