"""Sandbox launcher and in-child test runner for ``verifiers.sandbox`` (standard library only).

Run as ``python -I -S -B _sandbox_launcher.py CONFIG_JSON``, usually as pid 1 of fresh network and
pid namespaces (``unshare``). The launcher never runs untrusted code itself: it reads one JSON
request per line on stdin, forks a child per request, enforces the wall-clock limit, sweeps every
process the child left behind and answers one JSON line on stdout. See ``verifiers/sandbox.py`` for
the threat model; the comments here say which line implements which defence.

Child life cycle (``_child``, then ``_run_child``):
  1. OS setup (trusted): new session, stdin from /dev/null, stdout/stderr to the capped output
     pipe, the result pipe moved to a random high fd, every other fd closed (the launcher's
     request pipe included), rlimits, unprivileged uid when possible, scrubbed environment.
  2. Preparation (trusted): compile completion and tests, import the modules the tests import,
     copy the builtins dict the tests will use.
  3. Lockdown: start the (waiting) test thread, remove thread creation, pidfd signals and ``gc``,
     snapshot every module/class/builtins dict, install the audit hook. From here on the
     operations the completion could use to escape or to peek are denied.
  4. The completion and then the tests run in that thread, so walking frames from completion
     code can never reach the main thread, which holds the token.
  5. The main thread waits on a C-level lock, re-checks integrity with references captured in
     step 2, and writes ``TOKEN passed total violations reason`` in one atomic ``os.write``.
"""
import ast
import builtins
import io
import json
import os
import random
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import types
import _thread

# Modules imported before forking, so children neither pay for them nor see them appear later.
PREIMPORT = ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
             "typing", "fractions", "decimal", "operator", "copy", "statistics", "datetime")
DENIED_IMPORTS = frozenset({"ctypes", "_ctypes", "cffi", "gc", "_posixsubprocess", "_testcapi",
                            "_testinternalcapi", "_xxsubinterpreters", "_xxinterpchannels",
                            "faulthandler", "tracemalloc", "_tracemalloc", "pty", "_gdbm",
                            "_dbm", "readline", "syslog"})  # C code that writes files/logs unaudited
DENIED_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
    "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
    "sys.addaudithook", "sys.settrace", "sys.setprofile", "sys._current_frames",
    "sys._current_exceptions", "code.__new__", "os.symlink", "os.link", "os.mknod",
    "resource.prlimit", "fcntl.ioctl", "os.startfile", "webbrowser.open", "os.chroot",
    "os.setns", "os.unshare", "cpython.run_command", "cpython.run_file",
    "resource.setrlimit",  # root could raise its own hard limits again
    "sqlite3.enable_load_extension", "sqlite3.load_extension"})
DENIED_PREFIXES = ("ctypes.", "socket.", "gc.", "_winapi.", "winreg.", "ftplib.", "smtplib.",
                   "urllib.", "http.", "imaplib.", "poplib.", "nntplib.", "telnetlib.")
PATH_EVENTS = frozenset({"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown",
                         "os.truncate", "os.utime", "os.chflags", "os.lchflags", "os.setxattr",
                         "os.removexattr", "os.mkfifo", "shutil.rmtree", "shutil.copyfile",
                         "shutil.copymode", "shutil.copystat", "shutil.copytree", "shutil.move",
                         "shutil.chown", "shutil.make_archive", "shutil.unpack_archive"})
FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})
READ_DENIED = ("/proc", "/sys", "/dev")  # not even listed
READ_ALLOWED = frozenset({"/dev/null", "/dev/urandom", "/dev/random", "/dev/zero"})
MAX_WRITE_OPENS = 64  # with RLIMIT_FSIZE this bounds the disk a run can fill
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
RESULT_MAX = 3000  # < PIPE_BUF, so the runner's single write is atomic


# ----------------------------------------------------------------------------------------------
# Launcher (trusted, long-lived)
# ----------------------------------------------------------------------------------------------
def main(argv):
    cfg = json.loads(argv[1])
    for name in PREIMPORT:
        __import__(name)
    cfg["pid1"] = os.getpid() == 1
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    while True:
        line = sys.stdin.buffer.readline()
        if not line:  # the scorer went away: take every sandbox process with us
            break
        try:
            reply = handle(json.loads(line), cfg)
        except Exception as e:  # a launcher bug must not look like a pass
            reply = {"status": "launcher_error", "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    _sweep(cfg, None)
    shutil.rmtree(cfg["base_dir"], ignore_errors=True)  # also when the scorer died without close()


def handle(req, cfg):
    """Run one request in a forked child; return what the scorer needs to judge it."""
    run_dir = tempfile.mkdtemp(prefix="run-", dir=cfg["base_dir"])
    if cfg.get("uid") is not None:
        os.chown(run_dir, cfg["uid"], cfg["uid"])
    res_r, res_w = os.pipe()
    out_r, out_w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: never returns
        try:
            os.close(res_r)
            os.close(out_r)
            _child(req, cfg, run_dir, res_w, out_w)
        finally:
            os._exit(70)
    os.close(res_w)
    os.close(out_w)
    result, output, timed_out = _collect(res_r, out_r, t0 + float(req["timeout"]), cfg)
    status = _sweep(cfg, pid)
    elapsed = time.monotonic() - t0
    shutil.rmtree(run_dir, onerror=_force_remove)
    return {"status": "done", "result": result.decode("latin-1"),
            "output": output.decode("utf-8", "replace"), "timed_out": timed_out,
            "exit": status, "time_s": round(elapsed, 4)}


def _collect(res_r, out_r, deadline, cfg):
    """Read the result and output pipes until both close or the deadline passes."""
    result, output = bytearray(), bytearray()
    cap = int(cfg.get("output_limit", 8192))
    open_fds = {res_r, out_r}
    timed_out = False
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(list(open_fds), [], [], left)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                os.close(fd)
            elif fd == res_r:
                result += chunk[: max(0, 4 * RESULT_MAX - len(result))]
            else:  # output is capped; the rest is drained and dropped
                output += chunk[: max(0, cap - len(output))]
    for fd in open_fds:
        os.close(fd)
    return bytes(result), bytes(output), timed_out


def _sweep(cfg, pid):
    """SIGKILL the child's process group and, as pid 1 of the namespace, every other process."""
    status = None
    if pid is not None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    if cfg.get("pid1"):
        try:
            os.kill(-1, signal.SIGKILL)  # everything in our pid namespace except us
        except OSError:
            pass
    if pid is not None:
        try:
            _, raw = os.waitpid(pid, 0)
            status = -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)
        except ChildProcessError:
            pass
    while True:  # reap re-parented orphans
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    return status


def _force_remove(func, path, exc_info):
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        func(path)
    except OSError:
        pass


# ----------------------------------------------------------------------------------------------
# Child: OS-level confinement (trusted code, runs before any untrusted code)
# ----------------------------------------------------------------------------------------------
def _child(req, cfg, run_dir, res_w, out_w):
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # stdin: immediate EOF
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    res_fd = random.SystemRandom().randrange(100, 1000)  # unguessable number, checked by token anyway
    os.dup2(res_w, res_fd)
    os.closerange(3, res_fd)
    os.closerange(res_fd + 1, 65536)  # the launcher's request pipe included
    for fd, name in ((1, "stdout"), (2, "stderr")):  # unbuffered: the child leaves via os._exit
        stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", write_through=True)
        setattr(sys, name, stream)
        setattr(sys, "__%s__" % name, stream)
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))  # drop the
    # launcher's stdin object: its buffer has seen requests
    os.chdir(run_dir)
    _set_limits(req, cfg)
    if cfg.get("uid") is not None:  # real root: become a dedicated unprivileged uid
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": run_dir, "TMPDIR": run_dir,
                       "LANG": "C.UTF-8"})
    tempfile.tempdir = run_dir
    os.umask(0o077)
    random.seed()
    sys.setrecursionlimit(int(req.get("recursion_limit", 3000)))
    _thread.stack_size(64 * 1024 * 1024)
    token = req["token"]
    req["token"] = None
    ns = _private_namespace()
    ns["_run_child"](req, run_dir, res_fd, token)
    os._exit(0)


def _set_limits(req, cfg):
    cpu = int(req.get("cpu_s") or (float(req["timeout"]) + 1))
    mem = int(req["memory_mb"]) * 1024 * 1024
    fsize = int(req.get("fsize_mb", 8)) * 1024 * 1024
    limits = [(resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (mem, mem)),
              (resource.RLIMIT_FSIZE, (fsize, fsize)), (resource.RLIMIT_CORE, (0, 0)),
              (resource.RLIMIT_NOFILE, (1024, 1024)),
              (resource.RLIMIT_NPROC, (int(cfg["nproc"]), int(cfg["nproc"])))]
    for what, value in limits:
        try:
            resource.setrlimit(what, value)
        except (ValueError, OSError):
            soft, hard = resource.getrlimit(what)  # cannot raise a hard limit: lower to it
            resource.setrlimit(what, (min(value[0], hard), min(value[1], hard)))


def _private_namespace():
    """Rebuild the runner functions over a private copy of builtins and globals.

    Code that runs after the completion (integrity checks, counting, the final write) looks up
    ``len``, ``type`` ... here, so monkeypatching the ``builtins`` module cannot reach it.
    """
    ns = dict(globals())
    ns["__builtins__"] = dict(builtins.__dict__)
    for name, value in list(ns.items()):
        if isinstance(value, types.FunctionType) and value.__module__ == __name__:
            ns[name] = types.FunctionType(value.__code__, ns, name, value.__defaults__,
                                          value.__closure__)
    return ns


# ----------------------------------------------------------------------------------------------
# Child: preparation, lockdown, the test thread and the final verdict
# ----------------------------------------------------------------------------------------------
def _run_child(req, run_dir, res_fd, token):
    os_write, os_exit = os.write, os._exit  # captured before any untrusted code runs
    integrity = _integrity
    job = _prepare(req)
    gg = _private_namespace()  # the guards' own globals: if a test leaks one, this is all it sees
    state = {"outcomes": [False] * len(job["units"]), "reason": "", "keep": [], "done": False}
    violations = []
    done, go = _thread.allocate_lock(), _thread.allocate_lock()
    done.acquire()
    go.acquire()
    _thread.start_new_thread(_test_thread, (job, state, go, done))
    _lockdown()
    snap_all = _snapshot_modules(None)
    job["guard"] = gg["_guard_config"](job)
    snap_all += [(gg, dict(gg), True), (gg["__builtins__"], dict(gg["__builtins__"]), True),
                 (job["guard"], dict(job["guard"]), True)]
    sys.addaudithook(_make_audit_hook(run_dir, violations, _compile_bytecode_code()))
    go.release()
    done.acquire()  # C-level lock: a patched ``threading`` cannot fake this
    problem = integrity(snap_all)
    for wrapper, cells in job["guard"]["wrappers"]:
        if wrapper.__closure__ is None or any(
                c.cell_contents is not v for c, v in zip(wrapper.__closure__, cells)):
            problem = problem or "tampered with a guard"
    passed = 0
    for i in job["counted"]:
        if state["outcomes"][i] is True:
            passed += 1
    total = len(job["counted"])
    reason = state["reason"] if type(state["reason"]) is str else "?"
    if problem is not None:
        violations.append(problem)
    if not state["done"]:
        violations.append("test thread did not finish")
    bad = "; ".join(v for v in violations[:3] if type(v) is str)
    text = "%s %d %d %d %s" % (token, passed, total, len(violations), (bad or reason)[:800])
    text = text.replace("\n", " ")[:RESULT_MAX]
    os_write(res_fd, text.encode("utf-8", "replace")[:RESULT_MAX] + b"\n")
    os_exit(0)


def _prepare(req):
    """Compile everything and import the tests' modules while nothing untrusted has run."""
    mode, code = req["mode"], req["code"]
    job = {"mode": mode, "stop_early": not req.get("partial", False)}
    if mode == "humaneval":
        entry = req["entry_point"]
        job["program_src"] = req["prompt"] + ("\n" if _defines(code, entry) else "") + code
        job["prelude"] = compile(req["prompt"], "<prompt>", "exec")
        job["entry_point"] = entry
        test_src = req["test"]
    else:
        job["program_src"] = code
        job["setup"] = compile(req.get("setup") or "", "<setup>", "exec")
        test_src = req["test"] if mode == "script" else "\n".join(req["tests"])
    test_tree = ast.parse(test_src, "<test>")
    job["test"] = compile(test_tree, "<test>", "exec")
    job["units"] = _make_units(req, mode, test_tree, job)
    job["counted"] = [i for i, (_, counted) in enumerate(job["units"]) if counted]
    job["injectable"], job["classes_ok"] = _injectable_names(req, test_tree)
    modules = _imported_modules(test_src, req.get("prompt", ""), req.get("setup", ""))
    for name in modules:
        try:
            __import__(name)
        except Exception:
            pass
    job["test_modules"] = [sys.modules[n] for n in modules if n in sys.modules]
    job["builtins"] = dict(builtins.__dict__)  # the tests' own, never shared with the completion
    return job


def _defines(code, name):
    """True when ``code`` parses and defines ``name`` at module level (evaluated in the child)."""
    try:
        tree = ast.parse(code)
    except Exception:
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name
               for n in tree.body)


def _make_units(req, mode, test_tree, job):
    """Split the tests into units: (code object, counted) run in order in the test namespace.

    humaneval: one unit ``check(candidate)``; with ``partial`` each top-level statement of
    ``check`` becomes a unit (counted when it contains an ``assert``), run with the candidate
    bound to ``check``'s parameter name. mbpp: one unit per assert in ``test_list``. script: one
    unit per top-level statement of the test code, counted when it contains an ``assert`` (or,
    in tests without any ``assert``, when it is not an import or definition).
    """
    def has_assert(node):
        return any(isinstance(n, ast.Assert) for n in ast.walk(node))

    def unit(stmts, counted):
        return (compile(ast.Module(body=list(stmts), type_ignores=[]), "<test>", "exec"), counted)

    if mode == "humaneval":
        check = next((n for n in test_tree.body if isinstance(n, ast.FunctionDef)
                      and n.name == "check"), None)
        if check is None:
            raise ValueError("HumanEval test defines no check()")
        job["check_arg"] = check.args.args[0].arg if check.args.args else "candidate"
        if req.get("partial"):
            try:
                return [unit([s], has_assert(s)) for s in check.body]
            except SyntaxError:  # e.g. a bare ``return`` in check: fall back to one unit
                pass
        return [unit(ast.parse("__rlvr_check__(__rlvr_candidate__)").body, True)]
    if mode == "mbpp":
        return [unit(ast.parse(t, "<test>").body, True) for t in req["tests"]]
    if has_assert(test_tree):
        return [unit([s], has_assert(s)) for s in test_tree.body]
    setup = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return [unit([s], not isinstance(s, setup)) for s in test_tree.body]  # e.g. unittest calls


def _imported_modules(*sources):
    names = []
    for src in sources:
        try:
            tree = ast.parse(src or "")
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
    return [n for n in dict.fromkeys(names) if n.split(".")[0] not in DENIED_IMPORTS]


def _injectable_names(req, test_tree):
    """Which names the tests may take from the completion's namespace, and which may be classes.

    Only names the tests (or the setup code) read. A name that shadows a builtin (``len``,
    ``sum``) is taken only when the reference solution defines it too, so a completion cannot
    swap ``len`` out from under the asserts; a class is handed over unguarded only when the
    reference solution defines a class of that name (MBPP's ``Pair``, ``Node``).
    """
    used = {n.id for n in ast.walk(test_tree) if isinstance(n, ast.Name)}
    if req.get("setup"):
        used |= {n.id for n in ast.walk(ast.parse(req["setup"])) if isinstance(n, ast.Name)}
    defined, classes = set(), set()
    if req.get("reference_code"):
        try:
            body = ast.parse(req["reference_code"]).body
            defined = {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            classes = {n.name for n in body if isinstance(n, ast.ClassDef)}
        except SyntaxError:
            pass
    names = {n for n in used if n not in builtins.__dict__ or n in defined}
    return names, classes


# Functions the audit hook cannot see that reach beyond the process (thread creation, pidfd
# signals, scheduling and niceness of others, the system clock, fork without an event).
UNAUDITED = (("_thread", ("start_new_thread", "start_new")), ("threading", ("_start_new_thread",)),
             ("os", ("pidfd_open", "setpriority", "nice", "sched_setscheduler", "sched_setparam",
                     "sched_setaffinity")),
             ("posix", ("pidfd_open", "setpriority", "nice", "sched_setscheduler", "sched_setparam",
                        "sched_setaffinity")),
             ("signal", ("pidfd_send_signal",)), ("_signal", ("pidfd_send_signal",)),
             ("time", ("clock_settime", "clock_settime_ns")), ("_posixsubprocess", ("fork_exec",)))


def _lockdown():
    """Remove what the audit hook cannot see (``UNAUDITED``) and drop ``gc``."""
    import gc
    gc.disable()
    for mod_name, attrs in UNAUDITED:
        mod = sys.modules.get(mod_name)
        for attr in attrs:
            if mod is not None and hasattr(mod, attr):
                setattr(mod, attr, None)
    for name in DENIED_IMPORTS:
        sys.modules.pop(name, None)


def _read_roots(run_dir):
    """Where the child may read: its run dir, the standard library, zoneinfo/locale data."""
    import sysconfig
    paths = sysconfig.get_paths()
    roots = {run_dir, paths["stdlib"], paths["platstdlib"], os.path.dirname(os.__file__),
             os.path.join(sys.base_prefix, "lib"), os.path.join(sys.base_exec_prefix, "lib"),
             "/usr/lib", "/usr/lib64", "/usr/share/zoneinfo", "/usr/share/locale",
             "/etc/localtime", "/etc/timezone", *READ_ALLOWED}
    return tuple(sorted({os.path.realpath(r) for r in roots}))


# Positions of the path arguments and of the ``dir_fd`` arguments in each event's args.
PATH_ARGS = {"os.rename": (0, 1), "shutil.copyfile": (0, 1), "shutil.copytree": (0, 1),
             "shutil.move": (0, 1), "shutil.copymode": (0, 1), "shutil.copystat": (0, 1)}
DIR_FD_ARGS = {"os.remove": (1,), "os.rmdir": (1,), "os.mkdir": (2,), "os.rename": (2, 3),
               "os.chmod": (2,), "os.chown": (3,), "os.utime": (3,)}
IGNORED_EVENTS = frozenset({"exec", "compile", "object.__setattr__", "object.__delattr__",
                            "builtins.id", "time.sleep", "os.chdir", "sys._getframemodulename"})


def _make_audit_hook(run_dir, violations, compile_code):
    """The audit hook that denies escapes and records violations (table in ``sandbox.py``).

    A closure over private state: nothing reachable from Python can change the policy (the
    helpers it calls are looked up in the child's private namespace, not in ``__main__``).
    Paths are checked after ``realpath``: writes and file-system changes must stay inside the
    run dir, reads inside the run dir and the standard library. Relative paths with ``dir_fd``
    and fd-based changes (``fchmod``...) are refused: the hook cannot see where an fd points.
    """
    st = {"prefix": run_dir.rstrip("/") + "/", "roots": _read_roots(run_dir), "writes": 0,
          "violations": violations, "compile_code": compile_code, "getframe": sys._getframe,
          "realpath": os.path.realpath, "getcwd": os.getcwd}
    busy = [False]

    def hook(event, args):
        if busy[0] or event in IGNORED_EVENTS:
            return
        busy[0] = True  # events raised by the checks themselves are not re-checked
        try:
            _check_event(st, event, args)
        finally:
            busy[0] = False

    return hook


def _deny(st, event, what, record=True, exc=PermissionError):
    if record and len(st["violations"]) < 50:
        st["violations"].append(f"{event}: {what}"[:200])
    raise exc(f"sandbox: {event} is not allowed ({what})"[:300])


def _real(st, p):
    """Absolute, symlink-free form of a str/bytes path (relative to the cwd), else None."""
    if type(p) is bytes:
        p = os.fsdecode(p)
    if type(p) is not str:
        return None
    return st["realpath"](os.path.join(st["getcwd"](), p))


def _under(rp, roots):
    return rp is not None and any(rp == r or rp.startswith(r + "/") for r in roots)


def _check_event(st, event, args):
    if event == "open":
        _check_open(st, event, args)
    elif event in PATH_EVENTS:
        _check_change(st, event, args)
    elif event == "rlvr.violation":
        _deny(st, event, args[0] if args and type(args[0]) is str else "?", exc=_Violation)
    elif event == "import":
        if (args[0] if args and type(args[0]) is str else "").split(".")[0] in DENIED_IMPORTS:
            _deny(st, event, args[0], exc=ImportError)
    elif event == "object.__getattr__":
        if len(args) > 1 and args[1] in FRAME_ATTRS:
            _deny(st, event, args[1], record=False, exc=AttributeError)
    elif event == "sys._getframe":  # ValueError: what the stdlib expects when it probes
        _deny(st, event, "frame access", record=False, exc=ValueError)
    elif event in ("marshal.loads", "marshal.load"):
        # frames: 0 here, 1 the hook, 2 the caller; only the import system may unmarshal
        if st["getframe"](2).f_code is not st["compile_code"]:
            _deny(st, event, "marshal outside the import system")
    elif event in ("os.listdir", "os.scandir"):
        rp = _real(st, args[0]) if args else None
        if _under(rp, READ_DENIED):
            _deny(st, event, "listing of " + rp)
    elif event == "mmap.__new__":
        if args and args[0] != -1:
            _deny(st, event, "file-backed mmap")
    elif event == "sqlite3.connect":  # sqlite creates files in C, without an "open" event
        db = args[0] if args else None
        if db not in (":memory:", "", b":memory:", b"") and not _under(_real(st, db), (st["prefix"][:-1],)):
            _deny(st, event, "database outside the sandbox directory")
    elif event in DENIED_EVENTS or event.startswith(DENIED_PREFIXES):
        _deny(st, event, "denied")


def _check_open(st, event, args):
    path, mode, flags = args[0], args[1], args[2]
    if type(path) is int:
        return  # an fd this process already holds
    if type(path) not in (str, bytes):
        _deny(st, event, "non-string path")
    if mode is None and not os.path.isabs(path):
        _deny(st, event, "os.open with a relative path")  # its dir_fd is invisible here
    rp = _real(st, path)
    if type(flags) is int and flags & WRITE_FLAGS:
        st["writes"] += 1
        if not _under(rp, (st["prefix"][:-1],)):
            _deny(st, event, "write outside the sandbox directory: " + rp)
        if st["writes"] > MAX_WRITE_OPENS:
            _deny(st, event, "too many files written")
    elif not _under(rp, st["roots"]):
        _deny(st, event, "read of " + rp)


def _check_change(st, event, args):
    for i in DIR_FD_ARGS.get(event, ()):
        if i < len(args) and args[i] not in (-1, None):
            _deny(st, event, "dir_fd")
    for i in PATH_ARGS.get(event, (0,)):
        if i < len(args) and not _under(_real(st, args[i]), (st["prefix"][:-1],)):
            _deny(st, event, "outside the sandbox directory (or an fd)")


class _Violation(BaseException):
    """Raised into the completion when it tried something the sandbox forbids."""


def _compile_bytecode_code():
    bootstrap = sys.modules.get("_frozen_importlib_external")
    return getattr(getattr(bootstrap, "_compile_bytecode", None), "__code__", None)


class _GuardFailure(BaseException):
    """A guarded call returned a non-data value or the test environment was tampered with."""


def _guard_config(job):
    """State of the guards (runs inside the guards' private namespace, after the lockdown)."""
    import collections, datetime, decimal, fractions
    scalars = {type(None), bool, int, float, complex, str, bytes, range, type(Ellipsis),
               fractions.Fraction, decimal.Decimal, datetime.date, datetime.datetime,
               datetime.time, datetime.timedelta}
    views = {type({}.keys()), type({}.values()), type({}.items())}  # re-iterable, C-level
    seqs = {list, tuple, set, frozenset, collections.deque, bytearray} | views
    maps = {dict, collections.OrderedDict, collections.Counter, collections.defaultdict}
    factories = {None, list, dict, set, int, float, str, tuple, frozenset}
    snap_quick = _snapshot_modules(job["test_modules"])
    snap_quick.append((job["builtins"], dict(job["builtins"]), True))
    return {"kinds": (scalars, seqs, maps, factories), "snap_quick": snap_quick,
            "audit": sys.audit, "wrapper": _wrap, "wrappers": []}


def _wrap(fn, guard):
    """Wrap a completion callable: its results must be plain data and leave the tests intact.

    An object whose ``__eq__`` always says True cannot pass ``assert candidate(x) == y``; after
    every call the builtins, modules and classes the tests rely on are re-checked, so a patch
    made during a call (and undone later) is caught while it is live.
    """
    audit, snap_quick, kinds = guard["audit"], guard["snap_quick"], guard["kinds"]

    def guarded(*args, **kwargs):
        out = fn(*args, **kwargs)
        problem = _plain(out, kinds) or _integrity(snap_quick)
        if problem is not None:
            audit("rlvr.violation", problem)  # recorded by the audit hook, out of reach
            raise _GuardFailure(problem)
        return out

    name = getattr(fn, "__name__", None)
    guarded.__name__ = name if type(name) is str else "candidate"
    guard["wrappers"].append((guarded, tuple(c.cell_contents for c in guarded.__closure__)))
    return guarded


def _plain(value, kinds, budget=2_000_000):
    """None when ``value`` is built only from trusted data types, else a reason string.

    Trusted: None/bool/int/float/complex/str/bytes/range, Fraction/Decimal/datetime, and
    list/tuple/set/frozenset/deque/bytearray/dict views/dict/OrderedDict/Counter/defaultdict of those
    (exact types: a subclass could override ``__eq__``). Iterators and generators are rejected:
    consuming them would run completion code after the guard looked.
    """
    scalars, seqs, maps, factories = kinds
    stack, seen = [value], set()
    while stack:
        budget -= 1
        if budget < 0:
            return "returned value too large to check"
        x = stack.pop()
        t = type(x)
        if t in scalars:
            continue
        if id(x) in seen:
            continue
        seen.add(id(x))
        if t in seqs:
            stack.extend(x if t is list else list(x))
        elif t in maps:
            if getattr(x, "default_factory", None) not in factories:
                return "returned a defaultdict with a custom default_factory"
            for k, v in dict.items(x):
                stack.append(k)
                stack.append(v)
        else:
            return "returned a non-data value of type " + str(t.__name__)[:60]
    return None


def _snapshot_modules(modules):
    """Snapshot (live dict, copy, check_added_keys) for modules and the classes they define."""
    if modules is None:
        modules = list(sys.modules.values())
        snaps = [(sys.modules, dict(sys.modules), False), (builtins.__dict__,
                                                           dict(builtins.__dict__), True)]
    else:
        snaps = []
    for mod in modules:
        d = getattr(mod, "__dict__", None)
        if type(d) is not dict or mod is sys:
            continue
        snaps.append((d, dict(d), False))
        for value in list(d.values()):
            if type(value) is type and getattr(value, "__module__", None) == d.get("__name__"):
                snaps.append((value.__dict__, dict(value.__dict__), True))
    return snaps


def _integrity(snaps):
    """None when every snapshotted mapping still holds the same objects, else a reason."""
    missing = object()
    for live, copy, strict in snaps:
        if strict and len(live) != len(copy):
            return "tampered with %s" % _what(copy)
        for key, value in copy.items():
            if live.get(key, missing) is not value:
                return "tampered with %s.%s" % (_what(copy), str(key)[:60])
    return None


def _what(copy):
    name = copy.get("__qualname__") or copy.get("__name__") or "a module"
    return name if type(name) is str else "?"


def _test_thread(job, state, go, done):
    """Run the completion, then the tests. Every exception is a failure; nothing escapes."""
    go.acquire()
    try:
        _run_tests(job, state)
        state["done"] = True
    except BaseException as e:  # noqa: B902 - completion may raise anything
        state["reason"] = "harness: " + _describe(e)
        state["done"] = True
    finally:
        done.release()


def _run_tests(job, state):
    keep, guard = state["keep"], job["guard"]
    solution = {"__name__": "__rlvr_solution__"}  # a fresh module namespace for the completion
    keep.append(solution)  # kept alive: no finalizer of the completion runs after the tests
    try:
        exec(compile(job["program_src"], "<completion>", "exec"), solution)
    except BaseException as e:  # noqa: B902 - the completion may raise anything
        state["reason"] = "completion raised " + _describe(e)
        return
    ns = {"__builtins__": job["builtins"], "__name__": "__rlvr_test__"}
    keep.append(ns)
    wrap = guard["wrapper"]
    if job["mode"] == "humaneval":
        exec(job["prelude"], ns)
        exec(job["test"], ns)
        check = ns.get("check")
        if type(check) is not types.FunctionType or check.__code__.co_filename != "<test>":
            state["reason"] = "harness: check() is not the test's own"
            return
        entry = solution.get(job["entry_point"])
        if not callable(entry):
            state["reason"] = "completion does not define " + job["entry_point"]
            return
        ns["__rlvr_check__"] = check
        candidate = wrap(entry, guard)  # some tests also call the entry point by name
        ns["__rlvr_candidate__"] = ns[job["check_arg"]] = ns[job["entry_point"]] = candidate
    else:
        for name in job["injectable"]:
            if name in solution:
                value = solution[name]
                if type(value) is type and name in job["classes_ok"]:
                    ns[name] = value  # a class the tests construct (MBPP Pair, Node)
                else:
                    ns[name] = wrap(value, guard) if callable(value) else value
        exec(job["setup"], ns)
    _run_units(job, state, ns)


def _run_units(job, state, ns):
    outcomes = state["outcomes"]
    for i, (code, counted) in enumerate(job["units"]):
        try:
            exec(code, ns)
            outcomes[i] = True
        except BaseException as e:  # noqa: B902
            if not state["reason"]:
                state["reason"] = "test %d failed: %s" % (i, _describe(e))
            if job["stop_early"]:
                return
    if not job["counted"]:
        state["reason"] = "no tests"


BUILTIN_EXCEPTIONS = frozenset(v for v in builtins.__dict__.values()
                               if isinstance(v, type) and issubclass(v, BaseException))


def _describe(e):
    """``Type: message`` for reasons; the message only for builtin exception types."""
    t = type(e)
    name = t.__name__ if t in BUILTIN_EXCEPTIONS else "exception"
    if t not in BUILTIN_EXCEPTIONS:
        name = getattr(t, "__name__", "?")
        return (name if type(name) is str else "?")[:100]
    try:
        msg = str(e)
    except BaseException:  # noqa: B902
        msg = ""
    return (name + (": " + msg if type(msg) is str and msg else ""))[:300]


if __name__ == "__main__":
    main(sys.argv)
