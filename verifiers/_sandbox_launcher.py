"""The program side of the code sandbox: a warm launcher inside bubblewrap, and the wire format.

Standard library only. ``verifiers.sandbox`` starts this file as ``python -I -S -B`` as pid 1 of
a bubblewrap sandbox (``CONFIG_JSON`` as the only argument) and talks to it over a SOCK_SEQPACKET
control socket. The launcher never runs untrusted code itself. Per run it receives three pipe
ends by SCM_RIGHTS (requests in, replies out, program output), forks a child, and on ``end``
SIGKILLs every other process of its pid namespace, wipes the writable tmpfs and reports.

The child (``_child``) confines itself (rlimits; as an unprivileged uid when the launcher is
root), runs the program in a fresh module namespace and then answers calls from the judge
(``verifiers.judge``) until its request pipe closes. Whatever the program does to this
interpreter only changes what it answers; every answer is parsed by the judge as plain data.

Wire format (``encode``/``decode``), one JSON document per line, parsed by ``json.loads`` only:
every value is a tagged list, so nothing is ever constructed by running code:

  ["N"] None   ["B", 0|1] bool   ["I", hex] int   ["F", float.hex] float   ["C", hex, hex] complex
  ["S", str]   ["Y", base64] bytes   ["L", [...]] list   ["T", [...]] tuple   ["E", [...]] set
  ["Z", [...]] frozenset   ["D", [[k, v], ...]] dict   ["H", n] handle to a program object
  ["G", name] a global of the program (judge to program only)
  ["P", name] one of the builtin types in ``TYPES`` (``int``, ``str``...)
  ["R", kind, payload] a standard-library container rebuilt from plain data: Counter,
  OrderedDict, defaultdict (factory list/int/set/dict/str/float/tuple or none), deque.

A value of any other type (or nested deeper than ``MAX_DEPTH``) is sent as a handle. Decoding
refuses a set, frozenset or mapping with more than ``MAX_COLLISIONS`` members of one hash (an
honest encoder never sends them; building one costs quadratic time).

The program source is the first frame of the request pipe, ``["program", source, setup]``, read
by the child that runs it; the launcher's control messages carry only limits, so the launcher
(which every child is forked from) never holds any program's data.
"""
import base64
import collections
import json
import os
import resource
import select
import signal
import socket
import stat
import sys

MAX_DEPTH = 200
MAX_FRAME = 16 << 20  # bytes of one encoded value; larger answers fail the call
MAX_COLLISIONS = 64  # members of one hash a decoded set or mapping may have
POLL_S = 0.05  # how often the launcher checks a run's budgets
CTL_MAX = 1 << 16
_FACTORIES = {"list": list, "int": int, "set": set, "dict": dict, "str": str, "float": float,
              "tuple": tuple}
TYPES = {t.__name__: t for t in (int, float, complex, str, bytes, bool, list, tuple, dict, set,
                                 frozenset, bytearray, range, object, type(None))}
_TYPE_NAMES = {t: n for n, t in TYPES.items()}
_RICH = {collections.Counter: "Counter", collections.OrderedDict: "OrderedDict",
         collections.defaultdict: "defaultdict", collections.deque: "deque"}


# ----------------------------------------------------------------------------------------------
# Wire format
# ----------------------------------------------------------------------------------------------
class WireError(Exception):
    """A frame that is not well-formed plain data."""


def encode(value, handle, depth=0):
    """Tagged form of ``value``; ``handle(obj)`` returns the tag for anything not plain data."""
    t = type(value)
    if depth > MAX_DEPTH:
        return handle(value)
    if value is None:
        return ["N"]
    if t is bool:
        return ["B", int(value)]
    if t is int:
        return ["I", format(value, "x")]
    if t is float:
        return ["F", value.hex()]
    if t is complex:
        return ["C", value.real.hex(), value.imag.hex()]
    if t is str:
        return ["S", value]
    if t is bytes:
        return ["Y", base64.b64encode(value).decode("ascii")]
    if t is list or t is tuple or t is set or t is frozenset:
        tag = {list: "L", tuple: "T", set: "E", frozenset: "Z"}[t]
        return [tag, [encode(x, handle, depth + 1) for x in value]]
    if t is dict:
        return ["D", [[encode(k, handle, depth + 1), encode(v, handle, depth + 1)]
                      for k, v in value.items()]]
    if t is type and value in _TYPE_NAMES:
        return ["P", _TYPE_NAMES[value]]
    kind = _RICH.get(t)
    if kind == "deque":
        return ["R", kind, [encode(x, handle, depth + 1) for x in value]]
    if kind is not None:
        factory = getattr(value, "default_factory", None)
        name = next((n for n, f in _FACTORIES.items() if f is factory), None)
        if factory is not None and name is None:
            return handle(value)
        items = [[encode(k, handle, depth + 1), encode(v, handle, depth + 1)]
                 for k, v in dict.items(value)]
        return ["R", kind if name is None else kind + ":" + name, items]
    return handle(value)


def decode(tree, handle, depth=0):
    """Plain data from a tagged tree (``json.loads`` output); ``handle(tag)`` resolves H/G tags.

    Raises ``WireError`` on anything malformed: unknown tags, wrong payload types, unhashable
    set members or dict keys, nesting deeper than ``MAX_DEPTH``.
    """
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if type(tree) is not list or not tree or type(tree[0]) is not str:
        raise WireError("malformed value")
    tag, n = tree[0], len(tree)
    try:
        if tag == "N" and n == 1:
            return None
        if tag == "B" and n == 2 and tree[1] in (0, 1) and type(tree[1]) is int:
            return bool(tree[1])
        if tag == "I" and n == 2 and type(tree[1]) is str and len(tree[1]) < (MAX_FRAME // 2):
            return int(tree[1], 16)
        if tag == "F" and n == 2 and type(tree[1]) is str and len(tree[1]) < 40:
            return float.fromhex(tree[1])
        if tag == "C" and n == 3 and type(tree[1]) is str and type(tree[2]) is str \
                and len(tree[1]) < 40 and len(tree[2]) < 40:
            return complex(float.fromhex(tree[1]), float.fromhex(tree[2]))
        if tag == "S" and n == 2 and type(tree[1]) is str:
            return tree[1]
        if tag == "Y" and n == 2 and type(tree[1]) is str:
            return base64.b64decode(tree[1].encode("ascii"), validate=True)
        if tag in ("L", "T", "E", "Z") and n == 2 and type(tree[1]) is list:
            items = [decode(x, handle, depth + 1) for x in tree[1]]
            if tag in ("E", "Z"):
                _check_collisions(items)
            return {"L": list, "T": tuple, "E": set, "Z": frozenset}[tag](items)
        if tag == "D" and n == 2 and type(tree[1]) is list:
            return dict(_pairs(tree[1], handle, depth))
        if tag == "R" and n == 3 and type(tree[1]) is str and type(tree[2]) is list:
            kind, _, fac = tree[1].partition(":")
            if kind == "deque" and not fac:
                return collections.deque(decode(x, handle, depth + 1) for x in tree[2])
            pairs = _pairs(tree[2], handle, depth)
            if kind == "Counter" and not fac:
                return collections.Counter(dict(pairs))
            if kind == "OrderedDict" and not fac:
                return collections.OrderedDict(pairs)
            if kind == "defaultdict" and (not fac or fac in _FACTORIES):
                return collections.defaultdict(_FACTORIES.get(fac), pairs)
        if tag == "P" and n == 2 and type(tree[1]) is str and tree[1] in TYPES:
            return TYPES[tree[1]]
        if tag in ("H", "G") and n == 2 and type(tree[1]) in (int, str) and type(tree[1]) is not bool:
            return handle(tree)
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as e:
        raise WireError("malformed %s value: %s" % (tag, type(e).__name__)) from None
    raise WireError("malformed value with tag %r" % tag[:8])


def _pairs(items, handle, depth):
    out = []
    for kv in items:
        if type(kv) is not list or len(kv) != 2:
            raise WireError("malformed mapping")
        out.append((decode(kv[0], handle, depth + 1), decode(kv[1], handle, depth + 1)))
    _check_collisions([k for k, _ in out])
    return out


def _check_collisions(keys):
    """WireError when more than ``MAX_COLLISIONS`` of ``keys`` share one hash (linear time: the
    hashes of ints below 2**61 - 1 in absolute value are the ints themselves)."""
    if len(keys) <= MAX_COLLISIONS:
        return
    counts = collections.Counter(hash(k) for k in keys)  # TypeError (unhashable) -> malformed
    if max(counts.values()) > MAX_COLLISIONS:
        raise WireError("more than %d set members or keys collide on one hash" % MAX_COLLISIONS)


def dumps(tree):
    return (json.dumps(tree, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


# ----------------------------------------------------------------------------------------------
# Launcher (trusted, long-lived, pid 1 of the sandbox)
# ----------------------------------------------------------------------------------------------
def main(argv):
    cfg = json.loads(argv[1])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)  # as pid 1, signals without a handler never arrive
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    for name in cfg.get("preimport", ()):
        try:
            __import__(name)
        except ImportError:
            pass
    _not_dumpable()
    ctl = socket.socket(fileno=int(cfg["ctl_fd"]))
    child = None
    police = os.getpid() == 1  # (it sees every process of the sandbox only as its pid 1)
    killed = None
    budget = 0  # bytes; set by each "run" request before its child exists
    while True:
        if child is not None and police and killed is None:
            if not select.select([ctl], [], [], POLL_S)[0]:
                killed = _over_budget(budget, cfg)
                if killed is not None:
                    try:
                        os.kill(-1, signal.SIGKILL)  # the whole run; the judge sees it exit
                    except OSError:
                        pass
                continue
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, CTL_MAX, 8)
        except OSError:
            msg, fds = b"", []
        if not msg:  # the scorer went away: take every process of the sandbox with us
            break
        req = json.loads(msg)
        if req["op"] == "run" and child is None and len(fds) == 3:
            budget = int(req["memory_mb"]) << 20
            try:
                child = os.fork()
            except OSError as e:  # e.g. EAGAIN: answer, and let the scorer fail this run
                for fd in fds:
                    os.close(fd)
                ctl.send(json.dumps({"op": "error", "error": "fork failed: %s" % e}).encode())
                continue
            if child == 0:
                try:
                    ctl.close()
                    _child(req, cfg, fds)
                finally:
                    os._exit(70)
            for fd in fds:
                os.close(fd)
            ctl.send(json.dumps({"op": "started"}).encode())
        elif req["op"] == "end":
            status = _sweep(child)
            child = None
            wiped = _wipe_forked(cfg["work_dir"])
            ctl.send(json.dumps({"op": "done", "exit": status, "wiped": wiped, "killed": killed}).encode())
            killed = None
        else:
            for fd in fds:
                os.close(fd)
            ctl.send(json.dumps({"op": "error", "error": "bad request"}).encode())
    _sweep(child)
    _wipe_forked(cfg["work_dir"])


def _over_budget(memory, cfg):
    """Why the run must stop, or None: the sandbox's budgets are for all its processes together.

    ``memory``: bytes of anonymous resident memory (``statm`` resident minus shared) summed over
    every process but the launcher, each less the launcher's own (a forked process maps the
    launcher's pages, copied on write: counting them in every process would make 30 honest
    worker processes look like 600 MB; ``/proc/<pid>/smaps_rollup``, which splits shared pages,
    is closed to the launcher); ``cfg["max_inodes"]``: files and directories in the tmpfs (an
    empty file costs no tmpfs block, but kernel memory). Reads only numbers from ``/proc`` and
    ``statvfs``, never anything the program wrote.
    """
    page, total = os.sysconf("SC_PAGE_SIZE"), 0
    base = _anon_pages("1") or 0
    for name in os.listdir("/proc"):
        if name.isdigit() and name != "1":
            total += max(0, (_anon_pages(name) or 0) - base) * page
    if total > memory:
        return "memory budget of the sandbox exceeded (%d MiB resident in all its processes, at most %d)" % (
            total >> 20, memory >> 20)
    limit = cfg.get("max_inodes")
    if limit:
        try:
            st = os.statvfs(cfg["work_dir"])
            used = st.f_files - st.f_ffree
        except OSError:
            used = 0
        if used > limit:
            return "files budget of the sandbox exceeded (%d files in %s, at most %d)" % (
                used, cfg["work_dir"], limit)
    return None


def _anon_pages(pid):
    try:
        with open("/proc/%s/statm" % pid, "rb") as f:
            fields = f.read().split()
        return int(fields[1]) - int(fields[2])
    except (OSError, ValueError, IndexError):
        return None


def _not_dumpable():
    """prctl(PR_SET_DUMPABLE, 0): no process without CAP_SYS_PTRACE can ptrace the launcher or
    open its /proc files (its children inherit this until they exec)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except (OSError, AttributeError, ImportError):
        pass


def _sweep(pid):
    """SIGKILL the run's processes; the run's exit status.

    As pid 1 of the sandbox's own pid namespace: every other process in it (``kill(-1)``).
    Anywhere else (``isolation="none"``) only the child's session, never ``kill(-1)``, which
    would reach every process of the user on the host.
    """
    status = None
    if os.getpid() == 1:
        try:
            os.kill(-1, signal.SIGKILL)  # everything in our pid namespace except us (pid 1)
        except OSError:
            pass
    elif pid is not None:
        try:
            os.killpg(pid, signal.SIGKILL)  # the child called setsid(): its pid is its group
        except OSError:
            pass
    if pid is not None:
        try:
            _, raw = os.waitpid(pid, 0)
            status = -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)
        except ChildProcessError:
            pass
    if os.getpid() == 1:  # every orphan is ours: reap until none is left (no zombie survives a run)
        while True:
            try:
                os.kill(-1, signal.SIGKILL)  # (one forked while we were killing)
            except OSError:
                pass
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    while True:  # reap re-parented orphans
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    return status


def _wipe_forked(top):
    """``_wipe`` in a short-lived child, so that the names the program chose never enter the
    launcher's memory (every later child is forked from it). True when ``top`` is empty."""
    try:
        st = os.statvfs(top)
        if st.f_files - st.f_ffree <= 1:  # a tmpfs holding only its root: nothing to do
            return True
    except OSError:
        pass
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:
        code = 1
        try:
            code = 0 if _wipe(top) else 1
        finally:
            os._exit(code)
    while True:
        try:
            _, raw = os.waitpid(pid, 0)
            return os.WIFEXITED(raw) and os.WEXITSTATUS(raw) == 0
        except InterruptedError:
            continue
        except ChildProcessError:
            return False


def _wipe(top):
    """Empty ``top`` (a tmpfs) without recursion and without long paths.

    Each directory is opened on its own, its files unlinked and its subdirectories renamed up
    to ``top`` (flattening any depth), then removed; permissions the program took away are
    restored first. True when ``top`` is empty afterwards.
    """
    try:
        topfd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    counter, previous = 0, None
    try:
        while True:
            names = sorted(os.listdir(topfd))
            if not names:
                return True
            if names == previous:  # no progress: give up (the scorer then starts a new sandbox)
                return False
            previous = names
            for name in names:
                counter += 1
                try:
                    _empty_entry(topfd, name, counter)
                except OSError:
                    pass
    finally:
        os.close(topfd)


def _empty_entry(topfd, name, counter):
    try:
        st = os.stat(name, dir_fd=topfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=topfd)
        return
    try:
        os.chmod(name, 0o700, dir_fd=topfd, follow_symlinks=False)
    except (OSError, NotImplementedError):
        pass
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=topfd)
    try:
        for i, entry in enumerate(os.listdir(fd)):
            est = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(est.st_mode):
                try:
                    os.chmod(entry, 0o700, dir_fd=fd, follow_symlinks=False)
                except (OSError, NotImplementedError):
                    pass
                os.rename(entry, ".w%d.%d" % (counter, i), src_dir_fd=fd, dst_dir_fd=topfd)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=topfd)
    except OSError:
        pass  # a name that collided is handled on the next pass


# ----------------------------------------------------------------------------------------------
# Child: confine, run the program, answer calls (untrusted from the moment the program runs)
# ----------------------------------------------------------------------------------------------
def _child(req, cfg, fds):
    req_r, rep_w, out_w = fds
    os.setsid()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    os.dup2(req_r, 3)
    os.dup2(rep_w, 4)
    os.closerange(5, 1 << 16)
    import io
    for fd, name in ((1, "stdout"), (2, "stderr")):  # unbuffered: the child may leave by os._exit
        stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", write_through=True)
        setattr(sys, name, stream)
        setattr(sys, "__%s__" % name, stream)
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    os.chdir(cfg["work_dir"])
    try:  # under memory pressure the kernel kills the program's processes before the launcher
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    _set_limits(req)
    if cfg.get("drop_uid") is not None:  # the launcher is root: become the unprivileged uid
        uid = int(cfg["drop_uid"])
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # leaves no capabilities (no keep-caps)
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": cfg["work_dir"],
                       "TMPDIR": cfg["work_dir"], "LANG": "C.UTF-8"})
    import random
    import tempfile
    tempfile.tempdir = cfg["work_dir"]
    random.seed()
    sys.setrecursionlimit(int(req.get("recursion_limit", 3000)))
    _serve(req)
    os._exit(0)


def _set_limits(req):
    cpu = max(1, int(float(req["cpu_s"]) + 0.999))
    mem = int(req["memory_mb"]) << 20
    fsize = int(req["fsize_mb"]) << 20
    limits = [(resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (mem, mem)),
              (resource.RLIMIT_FSIZE, (fsize, fsize)), (resource.RLIMIT_CORE, (0, 0)),
              (resource.RLIMIT_NOFILE, (256, 256)),
              (resource.RLIMIT_NPROC, (int(req["nproc"]), int(req["nproc"])))]
    for what, value in limits:
        soft, hard = resource.getrlimit(what)
        if hard != resource.RLIM_INFINITY:
            value = (min(value[0], hard), min(value[1], hard))
        resource.setrlimit(what, value)


def _serve(req):
    """Read the program (``["program", source, setup]``, the first frame of the request pipe),
    run it, then answer ``[seq, target, args, kwargs]`` requests until EOF."""
    reply_fd = 4
    reader = os.fdopen(3, "rb", buffering=1 << 16)
    try:
        tag, source, setup = json.loads(reader.readline(MAX_FRAME + 2))
        if tag != "program" or type(source) is not str or type(setup) is not str:
            raise ValueError
    except (ValueError, TypeError, RecursionError, MemoryError):
        os._exit(0)
    program = {"__name__": "__rlvr_solution__", "__builtins__": __builtins__}
    handles = []

    def to_handle(obj):
        handles.append(obj)
        return ["H", len(handles) - 1]

    def resolve(tag):
        if tag[0] == "H" and type(tag[1]) is int and 0 <= tag[1] < len(handles):
            return handles[tag[1]]
        if tag[0] == "G" and type(tag[1]) is str:
            if tag[1] not in program:
                raise NameError("name %r is not defined by the program" % tag[1][:100])
            return program[tag[1]]
        raise WireError("unknown handle")

    def send(tree):
        data = dumps(tree)
        view = memoryview(data)
        while view:
            view = view[os.write(reply_fd, view):]

    try:
        exec(compile(source, "<completion>", "exec"), program)
        if setup:
            exec(compile(setup, "<setup>", "exec"), program)
        send(["ready"])
    except BaseException as e:  # noqa: B902 - the program may raise anything
        send(["raise", -1, _exc_name(e), _exc_msg(e)])
        os._exit(0)
    while True:
        line = reader.readline(MAX_FRAME + 2)
        if not line:
            os._exit(0)
        seq = -1
        try:
            seq, target, args, kwargs = json.loads(line)
            fn = resolve(target)
            args = [decode(a, resolve) for a in args]
            kwargs = {k: decode(v, resolve) for k, v in kwargs}
            out = fn(*args, **kwargs)
            reply = ["ok", seq, encode(out, to_handle)]
        except (SystemExit, KeyboardInterrupt, GeneratorExit) as e:
            reply = ["exit", seq, _exc_name(e)]
        except BaseException as e:  # noqa: B902
            reply = ["raise", seq, _exc_name(e), _exc_msg(e)]
        send(reply)


def _exc_name(e):
    name = getattr(type(e), "__name__", "Exception")
    return name if type(name) is str else "Exception"


def _exc_msg(e):
    try:
        msg = str(e)
    except BaseException:  # noqa: B902
        msg = ""
    return msg[:1000] if type(msg) is str else ""


if __name__ == "__main__":
    main(sys.argv)
