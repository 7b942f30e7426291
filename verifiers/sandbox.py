"""Run untrusted Python against tests, deciding pass/fail from a secret the program cannot forge.

Architecture
------------
``Sandbox`` owns one long-lived *launcher* (``_sandbox_launcher.py``, standard library only) started
as ``python -I -S -B`` and, where the kernel allows it, as pid 1 of fresh network and pid namespaces
(``unshare --net --pid --fork --kill-child``, with ``-r`` when not root). Each ``run`` sends one
JSON request; the launcher forks a child that confines itself, runs the completion and then the
tests in a fresh interpreter state, and reports ``TOKEN passed total violations reason`` on a
private pipe. The reply counts only if it carries the random per-run token, generated here.

Threat model
------------
The program is adversarial: it wants reward without solving the task, or to damage the host or
the scorer. It runs in the same interpreter as the tests (it must: the tests call it), so the
defences are layered: OS confinement around the process, an audit hook and a lockdown inside it,
and an order of execution that keeps everything the verdict depends on out of its reach.

=======================================  ======================================================
Attack                                   Defence (and where)
=======================================  ======================================================
``sys.exit(0)``, ``raise SystemExit``,   Success is only the token line, written by the runner's
``os._exit(0)`` before the asserts       main thread after every test unit passed. Exiting early
                                         means no token (``_run_child``); ``SystemExit`` in the
                                         completion or a test is a failed unit (``_run_units``).
prints a fake success marker,            stdout/stderr are a capped pipe the verdict ignores;
writes to every fd                       the result fd is dup'ed to a random number and a line
                                         without this run's 128-bit token is rejected (``run``).
redefines ``check`` / ``candidate``      Tests run in their own namespace, built after the
                                         completion ran, from the test source; ``check`` must be
                                         a function compiled from ``<test>`` and the candidate
                                         is passed in by the runner (``_run_tests``).
monkeypatches builtins                   Tests get a private copy of the builtins dict taken
                                         before the completion ran; any change to ``builtins``,
                                         a pre-existing module or class, or ``sys.modules`` is a
                                         violation, re-checked after every candidate call and at
                                         the end (``_snapshot_modules``, ``_integrity``).
patches ``unittest`` (or ``math``...)    Modules the tests import are imported before the
                                         completion runs and snapshotted (same check).
objects whose ``__eq__`` is always True  Values returned by completion callables must be plain
                                         data of exact trusted types (``_plain``), else 0.
reads the test source / expected values  Tests never touch the disk (sent in the request, fds
                                         closed before the completion runs); the audit hook
                                         denies frame access (``sys._getframe``, ``tb_frame``,
                                         ``gi_frame``...), ``gc`` introspection, reads outside
                                         the run dir and the standard library (``/proc/self/mem``
                                         included) and unmarshalling outside the import system;
                                         completion + tests run in a separate
                                         thread so no frame chain reaches the main thread that
                                         holds the token.
tracing / profiling / threads / audit    ``sys.settrace``/``setprofile``/``addaudithook`` are
hooks to run code later                  denied; thread creation is removed
                                         (``_thread.start_new_thread = None``), ``gc`` disabled
                                         and the completion's objects kept alive, so none of its
                                         code runs between a guard check and the verdict.
kills its parent                         ``os.kill``/``killpg``/``pidfd`` are denied; the parent
                                         is pid 1 of its namespace (immune to signals from
                                         inside) and, as root, the child runs as a dedicated uid.
forks without end                        ``os.fork``/``exec``/``posix_spawn``/``system``/
                                         ``subprocess`` denied; ``RLIMIT_NPROC``; every process
                                         left is SIGKILLed after each run (``kill(-1)`` as pid 1,
                                         else ``killpg``).
allocates without end                    ``RLIMIT_AS`` (``memory_mb``): ``MemoryError``.
loops forever                            ``RLIMIT_CPU`` and a wall-clock deadline enforced by the
                                         launcher, which kills the whole group.
writes outside its temp dir              Writes (``open`` with write flags, ``remove``, ``rename``,
                                         ``mkdir``, ``chmod``..., ``sqlite3.connect``) must
                                         resolve (``realpath``) inside the run's fresh temp dir;
                                         ``dir_fd`` arguments, fd-based ``fchmod``/``ftruncate``,
                                         symlinks and hard links are refused; C modules that
                                         write files unaudited (``dbm``, ``readline``) cannot be
                                         imported; as root the child also drops to a dedicated
                                         uid when that uid can read the standard library.
disables the sandbox from inside         The hook is a closure over private state, its helpers
                                         are looked up in a private copy of the launcher's
                                         globals (patching ``__main__`` changes nothing, and is
                                         itself a detected tampering); ``resource.setrlimit`` is
                                         denied (root could raise hard limits again).
host-wide state (as root)                ``time.clock_settime``, ``nice``, ``setpriority`` and
                                         the ``sched_set*`` calls are removed before the
                                         completion runs.
network                                  Own network namespace (no interfaces up) when available;
                                         sockets denied by the audit hook everywhere.
huge output, filling the disk           Output pipe drained and capped (``output_limit``);
                                         ``RLIMIT_FSIZE`` (8 MB) per file, at most 64 files
                                         opened for writing, the run dir deleted after the run.
=======================================  ======================================================

Residual risks (known gaps): CPython is not a security boundary; a memory-safety bug in the
interpreter or a C extension, or an introspection path the hook does not know, could defeat the
in-process layers (the OS layers remain). Methods of classes the tests construct from the
completion (MBPP ``Pair``) run unguarded. A completion may re-enable ``gc`` and so run a
finalizer between two guard checks. Without user namespaces and as a non-root user, the OS
layer is only rlimits + process groups; as root where no uid can be dropped (the standard
library is not readable by other users), only the in-process layers stop writes to the host.
Only the standard library is importable (no numpy). Solutions that return iterators, generators
or their own classes score 0 even if the values would compare equal.
"""
from __future__ import annotations

import atexit
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

LAUNCHER = Path(__file__).with_name("_sandbox_launcher.py")
_LIVE: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()


@dataclass
class SandboxResult:
    """Outcome of one run. ``status``: passed | failed | timeout | violation | crashed | error."""

    status: str
    passed: int = 0
    total: int = 0
    reason: str = ""
    output: str = ""
    time_s: float = 0.0
    exit: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total and self.status in ("passed", "failed") else 0.0


@lru_cache(maxsize=1)
def isolation_prefix() -> tuple[str, ...]:
    """The ``unshare`` command line that works for this user here, or () when none does.

    Tries network + pid namespaces, then pid only, then network only (``-r`` maps the caller to
    root in a new user namespace when it is not root already).
    """
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux"):
        return ()
    user = [] if os.geteuid() == 0 else ["-r"]
    for ns in (["--net", "--pid", "--fork", "--kill-child"], ["--pid", "--fork", "--kill-child"],
               ["--net"]):
        cmd = [exe, *user, *ns]
        try:
            ok = subprocess.run([*cmd, "true"], stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=10).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return tuple(cmd)
    return ()


def _sandbox_uid() -> int | None:
    """A dedicated unprivileged uid for the children when running as real root, else None."""
    if os.geteuid() != 0 or not _others_can_read(Path(os.__file__).parent):
        return None  # (a uid that cannot read the standard library could not import anything)
    candidate = 200_000 + os.getpid() % 100_000
    try:  # stay inside the uid range mapped into this (possibly containerised) user namespace
        for line in Path("/proc/self/uid_map").read_text().splitlines():
            inside, _, count = (int(x) for x in line.split())
            if inside <= candidate < inside + count:
                return candidate
        return 65534
    except (OSError, ValueError):
        return 65534


def _others_can_read(folder: Path) -> bool:
    """True when users other than the owner can list ``folder`` and traverse all its parents."""
    try:
        if folder.stat().st_mode & 0o005 != 0o005:
            return False
        return all(p.stat().st_mode & 0o001 for p in folder.resolve().parents)
    except OSError:
        return False


def _user_tasks() -> int:
    """Number of tasks (threads) this uid owns, for an RLIMIT_NPROC with headroom."""
    uid, n = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(entry.path, "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields.get("Uid", "-1").split()[0]) == uid:
                n += int(fields.get("Threads", "1"))
    return n


class Sandbox:
    """A launcher process plus the per-run protocol. One ``run`` at a time (thread-safe).

    ``timeout`` is the wall-clock limit per run (seconds), ``memory_mb`` the address-space limit,
    ``output_limit`` the bytes of stdout/stderr kept. ``isolation="auto"`` uses namespaces when
    the kernel allows them, ``"none"`` never.
    """

    def __init__(self, *, timeout: float = 5.0, memory_mb: int = 1024, output_limit: int = 8192,
                 fsize_mb: int = 8, isolation: str = "auto"):
        self.timeout, self.memory_mb, self.output_limit = float(timeout), int(memory_mb), output_limit
        self.fsize_mb, self.isolation = fsize_mb, isolation
        self._proc: subprocess.Popen | None = None
        self._buf = bytearray()
        self._base: str | None = None
        self._lock = threading.Lock()
        _LIVE.add(self)

    # -------------------------------------------------------------- launcher life cycle
    def _start(self) -> None:
        prefix = isolation_prefix() if self.isolation == "auto" else ()
        uid = _sandbox_uid() if (not prefix or "-r" not in prefix) else None
        self._base = tempfile.mkdtemp(prefix="rlvr-sandbox-")
        os.chmod(self._base, 0o711)  # the unprivileged uid must reach its run dir
        if uid is not None:
            nproc = 8
        elif prefix and "--pid" in prefix:
            nproc = 16  # counted inside the new user namespace
        else:
            nproc = _user_tasks() + 64
        cfg = {"base_dir": self._base, "uid": uid, "nproc": nproc, "output_limit": self.output_limit}
        cmd = [*prefix, sys.executable, "-I", "-S", "-B", str(LAUNCHER), json.dumps(cfg)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, start_new_session=True, bufsize=0)
        self._buf = bytearray()
        self.mode = {"namespaces": " ".join(prefix[1:]) or "none", "uid": uid, "nproc": nproc}

    def close(self) -> None:
        """Stop the launcher (it kills every sandboxed process on its way out) and clean up."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
            proc.stdout.close()
        if self._base:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -------------------------------------------------------------- one run
    def run(self, request: dict, *, timeout: float | None = None) -> SandboxResult:
        """Run one request (fields in ``verifiers.code.build_request``); never raises for bad code."""
        token = secrets.token_hex(16)
        wall = float(timeout or self.timeout)
        req = dict(request, token=token, timeout=wall, memory_mb=self.memory_mb,
                   fsize_mb=self.fsize_mb)
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self.close()
                self._start()
            try:
                self._proc.stdin.write((json.dumps(req) + "\n").encode())
                reply = self._read_line(deadline=time.monotonic() + wall + 10.0)
            except (OSError, ValueError, TimeoutError) as e:
                self.close()  # launcher died or hung: start afresh next time
                return SandboxResult("crashed", reason=f"sandbox launcher failed: {e}")
        return _judge(reply, token)

    def _read_line(self, deadline: float) -> dict:
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from the launcher")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise OSError("launcher exited")
                self._buf += chunk
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        return json.loads(line)


def _judge(reply: dict, token: str) -> SandboxResult:
    """Turn the launcher's reply into a result; only a line carrying ``token`` can pass."""
    if reply.get("status") != "done":
        return SandboxResult("error", reason=str(reply.get("error", reply))[:300])
    common = dict(output=reply.get("output", ""), time_s=float(reply.get("time_s", 0.0)),
                  exit=reply.get("exit"))
    text = reply.get("result", "")
    at = text.find(token + " ")
    if at < 0:
        if reply.get("timed_out"):
            return SandboxResult("timeout", reason="wall-clock timeout", **common)
        code = reply.get("exit")
        why = f"killed by signal {-code}" if isinstance(code, int) and code < 0 else f"exit code {code}"
        if code == -signal.SIGXCPU:
            return SandboxResult("timeout", reason="CPU time limit", **common)
        return SandboxResult("crashed", reason=f"no verdict from the program ({why})", **common)
    fields = text[at + len(token) + 1:].split("\n", 1)[0].split(" ", 3)
    try:
        passed, total, n_viol = int(fields[0]), int(fields[1]), int(fields[2])
    except (ValueError, IndexError):
        return SandboxResult("crashed", reason="malformed verdict", **common)
    reason = fields[3] if len(fields) > 3 else ""
    if n_viol:
        return SandboxResult("violation", 0, total, reason or "sandbox violation", **common)
    ok = total > 0 and passed == total
    return SandboxResult("passed" if ok else "failed", passed, total,
                         reason or ("all tests passed" if ok else "tests failed"), **common)


@atexit.register
def _close_all() -> None:
    for box in list(_LIVE):
        box.close()
