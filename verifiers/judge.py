"""The judge: runs the reference tests against a sandboxed program it only talks to over pipes.

The tests are dataset content (trusted) and run here, in a process forked from the scorer for
each run (``run_forked``), with this interpreter's own builtins and modules. The program runs in
the sandbox (``verifiers.sandbox``); the names the tests take from it are ``Remote`` proxies:

* calling one sends ``[seq, target, args, kwargs]`` to the program, which answers with plain
  data in the tagged wire format (``_sandbox_launcher.encode``), parsed by ``json.loads`` and a
  tag decoder: None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset
  (and Counter/OrderedDict/defaultdict/deque rebuilt from plain data). Nothing the program sends
  is ever executed, unpickled or evaluated here; a frame over ``MAX_FRAME`` bytes fails the call.
* anything else comes back as an opaque ``Remote`` handle that can only be passed back to the
  program (or called there). Comparing, hashing, printing, truth-testing or otherwise using a
  handle raises ``CallFailed`` and fails the unit.
* an exception raised by the program comes back as a ``ProgramError``: for a builtin exception
  a subclass of both (so tests that expect ``ValueError`` work), for anything else, and for
  ``StopIteration``/``StopAsyncIteration``, a plain ``RemoteException``. A program exception is
  never a builtin control-flow exception, so it cannot end a C-level iteration in the tests
  (``all(map(candidate, xs))``). A crash, an exit, a timeout or a malformed answer
  raises ``CallFailed`` (a ``BaseException``: ``except Exception`` in a test cannot swallow it)
  and fails the unit even if the test catches it; so does using a program object.
* a unit pays only when it called into the program; with partial credit, a unit that also
  passes when the candidate returns None or raises pays nothing (it is left out of the total).
* the judge's own work is charged to the item: it is killed one second after the item's
  deadline, and sets and dicts whose members collide on one hash are refused at decoding.

HumanEval helpers that the prompt defines (``poly``, ``encode_cyclic``...) come from the dataset
prompt, executed here; only the entry point is the program's. For MBPP and plain tests, a free
name of the tests is the program's unless it is a builtin (a builtin name is the program's only
when the reference solution defines it) or a standard-library module (imported here). The
verdict (units passed, status, reason) exists only in this process and is sent to the scorer
over a pipe the program never sees.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import json
import os
import resource
import select
import signal
import sys
import time
from dataclasses import dataclass, field

from verifiers._sandbox_launcher import MAX_FRAME, WireError, decode, dumps, encode

BUILTIN_EXCEPTIONS = {name: v for name, v in vars(builtins).items()
                      if isinstance(v, type) and issubclass(v, Exception)}
JUDGE_MEMORY_MB = 2048  # address space the judge may add on top of what the scorer maps


class CallFailed(BaseException):
    """A call into the program crashed, exited, timed out or answered with malformed data, or a
    program object was used on the judge side. Fails the unit even when the test catches it."""


class ProgramError(Exception):
    """Base of every exception the program raised, as the tests see it."""


class RemoteException(ProgramError):
    """The program raised an exception that is not a builtin one, or a builtin control-flow one
    (``StopIteration``, ``StopAsyncIteration``); the message names its type."""


CONTROL_FLOW = (StopIteration, StopAsyncIteration)  # (BaseException-only ones arrive as exits)
_PROGRAM_TYPES: dict = {}
JUDGE_GRACE_S = 1.0  # the judge is killed this long after the item's deadline
STUB_BUDGET_S = 1.0  # at most this long (and a fifth of the item's time) for the stub passes

@dataclass
class Job:
    """Everything the judge needs, compiled before any program runs."""

    mode: str
    program: str  # source run in the sandbox
    program_setup: str  # MBPP/plain ``setup`` code, run in the sandbox after the program
    units: list = field(default_factory=list)  # (code object, counted)
    prelude: object = None  # compiled HumanEval prompt (its helpers are the judge's)
    test: object = None
    entry_point: str = ""
    check_arg: str = "candidate"
    remote_names: tuple = ()
    stdlib_names: tuple = ()
    stop_early: bool = True
    frame: bytes = b""  # ``program_frame``, once built
    frame_sent: int = 0  # bytes of it the scorer already wrote to the request pipe


# ----------------------------------------------------------------------------------- preparation
def prepare(req: dict) -> Job:
    """Compile the tests and decide which names are the program's (SyntaxError/ValueError if bad)."""
    mode, code = req["mode"], req["code"]
    job = Job(mode=mode, program=code, program_setup="", stop_early=not req.get("partial", False))
    if mode == "humaneval":
        entry = req["entry_point"]
        job.program = req["prompt"] + ("\n" if _defines(code, entry) else "") + code
        job.prelude = compile(req["prompt"], "<prompt>", "exec")
        job.entry_point = entry
        test_src = req["test"]
    else:
        job.program_setup = req.get("setup") or ""
        test_src = req["test"] if mode == "script" else "\n".join(req["tests"])
    tree = ast.parse(test_src, "<test>")
    job.test = compile(tree, "<test>", "exec")
    job.units = _make_units(req, mode, tree, job)
    if mode != "humaneval":
        remote, modules = _split_names(req, tree)
        job.remote_names, job.stdlib_names = tuple(sorted(remote)), tuple(sorted(modules))
    return job


def program_frame(job: Job) -> bytes:
    """The first frame of the request pipe: the program source and its set-up code."""
    if not job.frame:
        job.frame = dumps(["program", job.program, job.program_setup])
    return job.frame


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


def _make_units(req: dict, mode: str, tree: ast.Module, job: Job) -> list:
    """Split the tests into units: (code object, counted), run in order in one namespace.

    humaneval: one unit ``check(candidate)``; with ``partial`` each top-level statement of
    ``check`` is a unit (counted when it contains an ``assert``). mbpp: one unit per assert in
    ``test_list``. script: one unit per top-level statement, counted when it contains an
    ``assert`` (or, in tests without any ``assert``, when it is not an import or definition).
    A unit is ``(code, counted, mentions)``: ``mentions`` when its source names a program name.
    """
    def has_assert(node):
        return any(isinstance(n, ast.Assert) for n in ast.walk(node))

    if mode == "humaneval":
        names = {req["entry_point"], "__rlvr_candidate__"}
    else:
        names = _split_names(req, tree)[0]

    def unit(stmts, counted):
        mentions = any(isinstance(n, ast.Name) and n.id in names for s in stmts for n in ast.walk(s))
        return (compile(ast.Module(body=list(stmts), type_ignores=[]), "<test>", "exec"), counted, mentions)

    if mode == "humaneval":
        check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
        if check is None:
            raise ValueError("HumanEval test defines no check()")
        job.check_arg = check.args.args[0].arg if check.args.args else "candidate"
        names.add(job.check_arg)
        if req.get("partial"):
            try:
                return [unit([s], has_assert(s)) for s in check.body]
            except SyntaxError:  # e.g. a bare ``return`` in check: one unit
                pass
        return [unit(ast.parse("__rlvr_check__(__rlvr_candidate__)").body, True)]
    if mode == "mbpp":
        return [unit(ast.parse(t, "<test>").body, True) for t in req["tests"]]
    if has_assert(tree):
        return [unit([s], has_assert(s)) for s in tree.body]
    setup = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return [unit([s], not isinstance(s, setup)) for s in tree.body]


def _split_names(req: dict, tree: ast.Module) -> tuple[set, set]:
    """(names of the program, standard-library modules) among the tests' free names.

    A name is the program's unless it is a builtin (then only when the reference solution
    defines it) or a standard-library module the tests use as one (``math.isclose`` without an
    import); those the judge imports itself.
    """
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    defined = set()
    if req.get("reference_code"):
        try:
            body = ast.parse(req["reference_code"]).body
            defined = {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        except (SyntaxError, ValueError):
            pass
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    as_module = {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    modules = {n for n in used if n in stdlib and n in as_module and n not in defined}
    remote = {n for n in used if (n not in vars(builtins) or n in defined) and n not in modules}
    return remote, modules


# ----------------------------------------------------------------------------------- the channel
class Channel:
    """Calls into the program over (request, reply) pipes with a deadline; drains its output."""

    def __init__(self, req_w: int, rep_r: int, out_r: int, deadline: float, output_limit: int):
        self.req_w, self.rep_r, self.out_r = req_w, rep_r, out_r
        self.deadline, self.output_limit = deadline, output_limit
        os.set_blocking(req_w, False)
        os.set_blocking(out_r, False)
        self.buf = bytearray()
        self.output = bytearray()
        self.out_open = True
        self.seq = 0
        self.dead: str | None = None  # why the program can no longer answer
        self.fatal: str | None = None  # a call failure the current unit must not survive
        self.status = "failed"

    # -- low level
    def _drain_output(self) -> None:
        while True:
            try:
                chunk = os.read(self.out_r, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                return
            if not chunk:
                self.out_open = False
                return
            self.output += chunk[: max(0, self.output_limit - len(self.output))]

    def _fail(self, why: str, status: str) -> CallFailed:
        self.dead = self.dead or why
        self.fatal = self.fatal or why
        if self.status == "failed":
            self.status = status
        return CallFailed(why)

    def _wait(self, rlist, wlist):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self._fail("wall-clock timeout", "timeout")
        r, w, _ = select.select(rlist + ([self.out_r] if self.out_open else []), wlist, [], left)
        if self.out_r in r:
            self._drain_output()
        return r, w

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            _, w = self._wait([], [self.req_w])
            if w:
                try:
                    view = view[os.write(self.req_w, view):]
                except BlockingIOError:
                    continue
                except OSError:
                    raise self._fail("the program exited", "crashed") from None

    def _recv(self) -> list:
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[:nl])
                del self.buf[: nl + 1]
                break
            if len(self.buf) > MAX_FRAME:
                raise self._fail("the program answered with more than %d bytes" % MAX_FRAME, "failed")
            r, _ = self._wait([self.rep_r], [])
            if self.rep_r in r:
                chunk = os.read(self.rep_r, 1 << 20)
                if not chunk:
                    raise self._fail("the program exited", "crashed")
                self.buf += chunk
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError, MemoryError):
            raise self._fail("malformed answer from the program", "failed") from None
        if type(msg) is not list or not msg or type(msg[0]) is not str:
            raise self._fail("malformed answer from the program", "failed")
        return msg

    # -- protocol
    def send_program(self, job: "Job") -> tuple[bool, str]:
        """Send the program source (the first frame of the request pipe): (ok, reason). The
        launcher never sees it; only the child that runs it does."""
        try:
            self._send(program_frame(job)[job.frame_sent:])
        except CallFailed as e:
            return False, str(e)
        return True, ""

    def start(self) -> tuple[bool, str]:
        """Wait for the program to finish running its module code: (ok, reason)."""
        try:
            msg = self._recv()
        except CallFailed as e:
            return False, str(e)
        if msg == ["ready"]:
            return True, ""
        if len(msg) == 4 and msg[0] == "raise" and type(msg[2]) is str and type(msg[3]) is str:
            detail = f": {msg[3]}" if msg[3] else ""
            return False, f"completion raised {msg[2][:80]}{detail}"[:300]
        self.dead = "malformed answer from the program"
        return False, self.dead

    def call(self, target: list, args: tuple, kwargs: dict):
        if self.dead:
            raise CallFailed(self.dead)
        self.seq += 1
        seq = self.seq
        try:
            wire_args = [encode(a, self._outgoing) for a in args]
            wire_kwargs = [[str(k), encode(v, self._outgoing)] for k, v in kwargs.items()]
        except RecursionError:
            self.fatal = self.fatal or "arguments nested too deeply"
            raise CallFailed("arguments nested too deeply") from None
        data = dumps([seq, target, wire_args, wire_kwargs])
        if len(data) > MAX_FRAME:
            self.fatal = self.fatal or "arguments too large"
            raise CallFailed("arguments larger than %d bytes" % MAX_FRAME)
        self._send(data)
        msg = self._recv()
        kind = msg[0]
        if len(msg) < 2 or msg[1] != seq or type(msg[1]) is not int:
            raise self._fail("malformed answer from the program", "failed")
        if kind == "ok" and len(msg) == 3:
            try:
                return decode(msg[2], self._incoming)
            except (WireError, RecursionError) as e:
                raise self._fail(f"the program answered with malformed data ({e})", "failed") from None
        if kind == "raise" and len(msg) == 4 and type(msg[2]) is str and type(msg[3]) is str:
            raise _exception(msg[2], msg[3])
        if kind == "exit" and len(msg) == 3:
            self.fatal = self.fatal or "the program exited during a call"
            raise CallFailed("the program exited during a call")
        raise self._fail("malformed answer from the program", "failed")

    def _outgoing(self, value):
        if type(value) is Remote and object.__getattribute__(value, "_chan") is self:
            return object.__getattribute__(value, "_tag")
        self.fatal = self.fatal or "cannot pass a %s to the program" % type(value).__name__
        raise CallFailed(f"cannot pass a {type(value).__name__} to the program")

    def _incoming(self, tag):
        if tag[0] != "H":
            raise WireError("the program may not send names")
        return Remote(self, tag)


def _program_type(cls: type) -> type | None:
    """``cls`` and ``ProgramError`` in one class named like ``cls`` (None when they cannot mix)."""
    if cls not in _PROGRAM_TYPES:
        try:
            _PROGRAM_TYPES[cls] = type(cls.__name__, (cls, ProgramError), {"__module__": "builtins"})
        except TypeError:
            _PROGRAM_TYPES[cls] = None
    return _PROGRAM_TYPES[cls]


def _exception(name: str, message: str) -> ProgramError:
    """The exception the tests see for a program exception named ``name``: always a
    ``ProgramError``, never ``StopIteration`` (which would silently end a C-level iteration)."""
    cls = BUILTIN_EXCEPTIONS.get(name)
    if cls is not None and not issubclass(cls, CONTROL_FLOW):
        wrapped = _program_type(cls)
        if wrapped is not None:
            try:
                return wrapped(message) if message else wrapped()
            except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
                pass
    return RemoteException(f"{name[:80]}: {message}" if message else name[:80])


def _misuse(obj=None, *_args, **_kwargs):
    why = "a program object was used by the tests (it can only be passed back)"
    if type(obj) is Remote:  # the unit fails even if the test catches this
        chan = object.__getattribute__(obj, "_chan")
        chan.fatal = chan.fatal or why
    raise CallFailed(why)


class Remote:
    """A name or object of the program: callable (a call into the program), passable back as an
    argument, and nothing else (every other use raises ``CallFailed``)."""

    __slots__ = ("_chan", "_tag")

    def __init__(self, chan: Channel, tag: list):
        object.__setattr__(self, "_chan", chan)
        object.__setattr__(self, "_tag", tag)

    def __call__(self, *args, **kwargs):
        return object.__getattribute__(self, "_chan").call(object.__getattribute__(self, "_tag"), args, kwargs)

    def __getattribute__(self, name):
        _misuse(self)


for _name in ("eq ne lt le gt ge bool hash repr str format len iter contains getitem setitem "
              "delitem add radd sub rsub mul rmul truediv rtruediv floordiv rfloordiv mod rmod "
              "pow rpow neg pos abs invert index int float complex round and rand or ror xor "
              "rxor lshift rlshift rshift rrshift matmul rmatmul reversed enter exit "
              "setattr delattr dir reduce reduce_ex sizeof iadd isub imul").split():
    setattr(Remote, f"__{_name}__", _misuse)
del _name


# ----------------------------------------------------------------------------------- running
def _namespace(job: Job, program_name) -> dict:
    """The tests' namespace; ``program_name(name)`` gives what stands for a program name."""
    ns = {"__builtins__": dict(vars(builtins)), "__name__": "__rlvr_test__"}
    if job.mode == "humaneval":
        exec(job.prelude, ns)  # the prompt's helpers are the judge's own
        exec(job.test, ns)
        candidate = program_name(job.entry_point)
        ns["__rlvr_check__"] = ns.get("check")
        ns["__rlvr_candidate__"] = ns[job.entry_point] = ns[job.check_arg] = candidate
    else:
        for name in job.stdlib_names:  # e.g. ``math.isclose`` used without an import
            try:
                ns[name] = importlib.import_module(name)
            except ImportError:
                pass
        for name in job.remote_names:
            ns[name] = program_name(name)
    return ns


def _stub_returning_none(*_args, **_kwargs):
    return None


def _stub_raising(*_args, **_kwargs):
    raise RemoteException("Exception: the candidate raised")


def _stub_passes(job: Job, stub, report: int) -> None:
    """Write (to fd ``report``, one line each) the indices of the units that pass, and call the
    program, when every program name is ``stub`` (a candidate that computes nothing)."""
    calls = [0]

    def counted_stub(*args, **kwargs):
        calls[0] += 1
        return stub(*args, **kwargs)

    try:
        ns = _namespace(job, lambda name: counted_stub)
    except BaseException:  # noqa: B902 - the tests' own set-up failed on stubs
        return
    mark = 0
    for i, (code, counted, _) in enumerate(job.units):
        try:
            exec(code, ns)
        except BaseException:  # noqa: B902 - a failing assert, a stub exception
            if counted:
                mark = calls[0]
            continue
        if counted:
            if calls[0] > mark:
                os.write(report, b"%d\n" % i)
            mark = calls[0]


def _trivial_units(job: Job, budget: float) -> set:
    """Units that also pass against a candidate returning None or raising (``_stub_passes``),
    found in a forked process that is killed after ``budget`` seconds (a unit not reached by
    then is not in the set); nothing it does reaches the real run's namespace."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            for stub in (_stub_returning_none, _stub_raising):
                _stub_passes(job, stub, w)
        finally:
            os._exit(0)
    os.close(w)
    data, _ = _collect_child(pid, r, time.monotonic() + budget)
    return {int(x) for x in data.split(b"\n")[:-1]}  # (complete lines only)


def _collect_child(pid: int, fd: int, end: float) -> tuple[bytes, bool]:
    """Read a forked child's pipe ``fd`` until it closes or the monotonic time ``end``, then kill
    and reap the child whatever happened: ``(data, timed_out)``."""
    data = bytearray()
    timed_out = False
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not select.select([fd], [], [], left)[0]:
                timed_out = True
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        os.waitpid(pid, 0)
    return bytes(data), timed_out


def judge(job: Job, chan: Channel, *, partial: bool = False) -> dict:
    """Run every unit; the verdict ``{status, passed, total, reason}``.

    A unit counts when it asserts and either names a program name or calls into the program; it
    passes when it ran without error and made at least one call into the program. With
    ``partial``, units that pass against a candidate returning None or raising (``_stub_passes``)
    measure nothing and are left out of both counts.
    """
    ok, why = chan.send_program(job)
    trivial = set()
    if ok and partial:  # the program starts meanwhile
        budget = min(STUB_BUDGET_S, max(0.0, chan.deadline - time.monotonic()) / 5)
        trivial = _trivial_units(job, budget)
    if ok:
        ok, why = chan.start()
    if not ok:
        status = "timeout" if "timeout" in why else "failed"
        total = sum(1 for i, (_, c, m) in enumerate(job.units) if c and m and i not in trivial)
        return {"status": status, "passed": 0, "total": total, "reason": why}
    ns = _namespace(job, lambda name: Remote(chan, ["G", name]))
    reason = ""
    outcomes = [False] * len(job.units)
    called = [False] * len(job.units)  # calls since the previous counted unit (set-up units carry)
    mark = 0
    for i, (code, counts, _) in enumerate(job.units):
        chan.fatal = None
        try:
            exec(code, ns)
            outcomes[i] = chan.fatal is None
            if chan.fatal and not reason:
                reason = f"test {i} failed: {chan.fatal}"
        except CallFailed as e:
            reason = reason or f"test {i} failed: {e}"
        except BaseException as e:  # noqa: B902 - a failing assert, a program exception
            reason = reason or f"test {i} failed: {_describe(e)}"
        called[i] = chan.seq > mark
        if counts:
            mark = chan.seq
        if not outcomes[i] and (job.stop_early or chan.dead):
            break
    # a unit that ran cleanly without calling the program measured nothing: it is not counted
    counted = [i for i, (_, c, m) in enumerate(job.units)
               if c and i not in trivial and (called[i] or (m and not outcomes[i]))]
    passed = sum(1 for i in counted if outcomes[i] and called[i])
    total = len(counted)
    if not total:
        return {"status": "failed", "passed": 0, "total": 0, "reason": reason or "no tests that call the program"}
    if passed == total and not chan.dead:
        return {"status": "passed", "passed": passed, "total": total, "reason": "all tests passed"}
    status = chan.status if chan.dead else "failed"
    return {"status": status, "passed": passed, "total": total, "reason": reason[:500] or "tests failed"}


def _describe(e: BaseException) -> str:
    t = type(e)
    name = t.__name__ if t in BUILTIN_EXCEPTIONS.values() or issubclass(t, ProgramError) else "exception"
    try:
        msg = str(e)
    except Exception:  # noqa: BLE001
        msg = ""
    return (name + (": " + msg if msg else ""))[:300]


def run_forked(job: Job, req_w: int, rep_r: int, out_r: int, *, deadline: float,
               output_limit: int = 8192, close_fds=()) -> dict:
    """Run ``judge`` in a forked child (fresh module state for the tests, a memory cap, and a
    hard kill at the deadline); returns its verdict plus the program's captured output."""
    vr, vw = os.pipe()
    pid = os.fork()
    if pid == 0:  # the judge child
        code = 0
        try:
            os.close(vr)
            for fd in close_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            _child_limits()
            chan = Channel(req_w, rep_r, out_r, deadline, output_limit)
            try:
                verdict = judge(job, chan, partial=not job.stop_early)
            except BaseException as e:  # noqa: B902 - a judge bug must not look like a pass
                verdict = {"status": "error", "reason": f"judge: {_describe(e)}"}
            if chan.out_open:
                chan._drain_output()
            verdict["output"] = chan.output.decode("utf-8", "replace")
            data = json.dumps(verdict).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(vw, view):]
        except BaseException:  # noqa: B902
            code = 1
        finally:
            os._exit(code)
    os.close(vw)
    data, timed_out = _collect_child(pid, vr, deadline + JUDGE_GRACE_S)  # the judge's work is the item's
    if timed_out:
        return {"status": "timeout", "reason": "wall-clock timeout (judge)"}
    try:
        verdict = json.loads(data)
    except ValueError:
        return {"status": "error", "reason": "the judge died without a verdict"}
    return verdict


def _child_limits() -> None:
    """Judge child: die with the scorer, and cap its address space (tests may build large values
    from the program's answers)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/status") as f:
            vm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
        cap = (vm_kb << 10) + (JUDGE_MEMORY_MB << 20)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or cap < hard:
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError, StopIteration):
        pass
