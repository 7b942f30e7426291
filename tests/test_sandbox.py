"""Exploit suite for the code sandbox: real bubblewrap sandboxes, real attacks, no mocks.

Each attack is a completion for a tiny task (``add(a, b)``, or an MBPP / plain-test reference)
that tries to get reward without solving it, or to reach the host, the judge or another program.
Wrong code must score 0 whatever it does to its own interpreter; the host must be untouched; the
same sandbox must still score the honest solution 1.0 afterwards.
"""
from __future__ import annotations

import os
import time

import pytest

from verifiers.code import CodeVerifier, build_request, extract_code
from procs import alive
from verifiers.sandbox import Sandbox

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TEST = ("def check(candidate):\n"
        "    assert candidate(2, 3) == 5\n"
        "    assert candidate(-1, 1) == 0\n"
        "    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9\n")
TASK = {"prompt": PROMPT, "test": TEST, "entry_point": "add"}
MBPP = {"test_list": ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"], "code": "def add(a, b):\n    return a + b\n",
        "test_setup_code": "", "challenge_test_list": []}
PLAIN = {"test": "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"}
GOOD = "    return a + b\n"
GOOD_DEF = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return 0\n"
# Loads the _ctypes extension under another module name (no import of "_ctypes" or "ctypes"
# happens by that name), then builds ctypes on it: arbitrary native code from the program.
NATIVE = r'''
import _imp, sys, os, importlib.machinery
so = [f for f in os.listdir(os.path.dirname(os.__file__) + "/lib-dynload") if f.startswith("_ctypes.")][0]
spec = importlib.machinery.ModuleSpec("x._ctypes", None,
                                      origin=os.path.dirname(os.__file__) + "/lib-dynload/" + so)
sys.modules["_ctypes"] = _imp.create_dynamic(spec)
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
'''


@pytest.fixture(scope="module")
def code():
    """Generous wall limit: the machine running the tests may be heavily shared."""
    v = CodeVerifier(timeout=15.0, memory_mb=512)
    yield v
    v.close()


@pytest.fixture(scope="module")
def quick():
    """Short wall limit, for the attacks that can only end by being killed."""
    v = CodeVerifier(timeout=2.0, memory_mb=512)
    yield v
    v.close()


def score(v, completion, reference=TASK):
    return v.score(completion, reference)


def assert_zero(res, *statuses):
    assert res.reward == 0.0, res.info
    if statuses:
        assert res.info["status"] in statuses, res.info


def test_honest_solution_passes_and_wrong_one_fails(code):
    good = score(code, GOOD)
    assert good.reward == 1.0 and good.info["status"] == "passed" and good.info["passed"] == 1
    assert_zero(score(code, WRONG), "failed")
    assert score(code, GOOD_DEF, MBPP).reward == 1.0 and score(code, GOOD_DEF, PLAIN).reward == 1.0
    assert_zero(score(code, WRONG, MBPP), "failed")
    assert_zero(score(code, WRONG, PLAIN), "failed")


# ------------------------------------------------------------------ findings of issue 10
EXEC_WRAPPERS = [
    # swallows every exception the tests raise
    "_real = __builtins__['exec'] if isinstance(__builtins__, dict) else __builtins__.exec\n"
    "def _exec(*a, **k):\n    try:\n        return _real(*a, **k)\n    except BaseException:\n        return None\n"
    "import builtins\nbuiltins.exec = _exec\n",
    # skips the test units altogether
    "import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.eval = lambda *a, **k: True\n",
]


@pytest.mark.parametrize("wrapper", EXEC_WRAPPERS, ids=["swallow", "skip"])
@pytest.mark.parametrize("reference", [TASK, MBPP, PLAIN], ids=["humaneval", "mbpp", "plain"])
def test_replacing_exec_in_builtins_changes_nothing(code, wrapper, reference):
    assert_zero(score(code, wrapper + WRONG, reference), "failed")
    assert score(code, wrapper + GOOD_DEF, reference).reward == 1.0  # its own exec, its own business


def test_native_code_via_aliased_ctypes_cannot_write_outside_its_tmpfs_or_change_the_verdict(code, tmp_path):
    """Arbitrary native code (libc open/write through _ctypes loaded as ``x._ctypes``)."""
    target = tmp_path / "pwned.txt"
    secret = tmp_path / "secret.txt"
    secret.write_text("host-secret-5521")
    os.chmod(tmp_path, 0o755)
    os.chmod(secret, 0o644)
    evil = NATIVE + f'''
O_WRONLY, O_CREAT, O_RDONLY = 0o1, 0o100, 0
results = {{}}
for path in ({str(target)!r}, "/usr/pwned", "/etc/pwned", "/opt/rlvr/pwned", "/pwned", "/proc/1/mem",
             "/proc/sysrq-trigger", "/dev/pwned"):
    fd = libc.open(path.encode(), O_WRONLY | O_CREAT, 0o644)
    n = libc.write(fd, b"x", 1) if fd >= 0 else -1
    results[path] = (fd, n, ctypes.get_errno())
print("WRITES", results)
fd = libc.open({str(secret)!r}.encode(), O_RDONLY)
buf = ctypes.create_string_buffer(64)
print("READ", fd, libc.read(fd, buf, 64) if fd >= 0 else -1, buf.value)
print("PTRACE", libc.ptrace(16, 1, 0, 0), ctypes.get_errno())   # PTRACE_ATTACH to the launcher
print("KILL", libc.kill(1, 9), libc.kill(-1, 9) if False else "")
# forge answers: write verdict-looking lines to every fd
for fd in range(0, 64):
    libc.write(fd, b'["ok", 1, ["B", 1]]\\n', 20)
''' + WRONG
    res = score(code, evil)
    assert_zero(res)
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["secret.txt"]
    assert "host-secret-5521" not in res.info["output"]
    out = res.info["output"]
    assert "WRITES" in out and "PTRACE -1" in out, out  # the native code did run
    for line in out.splitlines():
        if line.startswith("WRITES"):
            assert "1)" not in line.replace("-1)", "")  # no write() returned 1
    assert score(code, GOOD).reward == 1.0  # the launcher survived


def test_native_code_cannot_rewrite_its_answers_into_a_pass(code):
    """Even with native code, an answer is only what the program sends; the judge decides."""
    evil = NATIVE + (
        "import builtins, json\n"
        "json.dumps = lambda *a, **k: '[\"ok\", 1, [\"B\", 1]]'\n"  # every answer reads 'True'
        "builtins.len = lambda x: 0\n" + WRONG)
    assert_zero(score(code, evil))


def test_replacing_len_hides_nothing(code):
    evil = "import builtins\nbuiltins.len = lambda x: 0\nbuiltins.abs = lambda x: 0\n" + WRONG
    assert_zero(score(code, evil), "failed")


def test_poisoned_re_cache_does_not_reach_the_tests(code):
    ref = {"test": "import re\nassert re.fullmatch(r'\\d+', f()) is not None\n", "code": "def f(): return '12'"}
    evil = ("import re\nre._cache[(str, r'\\d+', 0)] = re.compile('.*')\n"
            "def f():\n    return 'abc'\n")
    assert_zero(score(code, evil, ref), "failed")
    assert score(code, "def f():\n    return '12'\n", ref).reward == 1.0


def test_decimal_precision_of_the_program_does_not_reach_the_tests(code):
    ref = {"test": "from decimal import Decimal\nassert Decimal(f()) + Decimal('0.01') == Decimal('1.24')\n",
           "code": "def f(): return '1.23'"}
    evil = "import decimal\ndecimal.getcontext().prec = 1\ndef f():\n    return '1.2'\n"
    assert_zero(score(code, evil, ref), "failed")
    assert score(code, "def f():\n    return '1.23'\n", ref).reward == 1.0


def test_honest_import_importlib_is_not_a_violation(code):
    ok = "import importlib\nimport importlib.util\nimport math\n" + GOOD_DEF
    res = score(code, ok)
    assert res.reward == 1.0, res.info


def test_deep_directory_tree_is_cleaned_up(code):
    deep = ("import os\nos.makedirs('/tmp/' + '/'.join(['d'] * 1100))\n"
            "fd = os.open('/tmp', os.O_RDONLY)\n"
            "for i in range(3000):  # deeper than PATH_MAX allows as one path\n"
            "    os.mkdir('x' * 200, dir_fd=fd)\n"
            "    nfd = os.open('x' * 200, os.O_RDONLY, dir_fd=fd)\n    os.close(fd)\n    fd = nfd\n"
            "os.chmod('/tmp/d', 0)\n" + GOOD_DEF)
    res = score(code, deep)
    assert res.reward == 1.0, res.info
    assert code.sandbox.last_wiped is True
    look = "import os\nprint('LEFT', os.listdir('/tmp'))\n" + GOOD_DEF
    assert "LEFT []" in score(code, look).info["output"]


def test_full_tmpfs_is_emptied_for_the_next_program():
    v = CodeVerifier(timeout=15.0, tmpfs_mb=8)
    try:
        fill = ("import os\ni = 0\ntry:\n    while True:\n"
                "        open(f'/tmp/f{i}', 'wb').write(b'x' * (1 << 20)); i += 1\n"
                "except OSError as e:\n    print('FULL', i, e.errno)\n" + GOOD_DEF)
        res = score(v, fill)
        assert "FULL" in res.info["output"] and " 28" in res.info["output"], res.info  # ENOSPC
        assert v.sandbox.last_wiped is True
        after = "open('/tmp/big', 'wb').write(b'y' * (6 << 20))\nprint('WROTE')\n" + GOOD_DEF
        res = score(v, after)
        assert res.reward == 1.0 and "WROTE" in res.info["output"], res.info
    finally:
        v.close()


def test_sigkilled_scorer_leaves_nothing_behind(tmp_path):
    """A scorer killed with SIGKILL mid-run: every sandbox process dies, nothing stays on disk."""
    import signal
    import subprocess
    import sys
    import tempfile

    script = tmp_path / "scorer.py"
    script.write_text(
        "import sys\n"
        "from verifiers.code import CodeVerifier\n"
        "v = CodeVerifier(timeout=60)\n"
        "v.score('def add(a, b):\\n    return a + b\\n', " + repr(TASK) + ")\n"
        "print(v.sandbox._proc.pid, flush=True)\n"
        "v.score(\"import os, time\\nos.makedirs('/tmp/a/b/c')\\nopen('/tmp/a/f', 'w').write('x' * 10**6)\\n"
        "if os.fork() == 0:\\n    os.setsid()\\n    time.sleep(600)\\nprint('forked', flush=True)\\ntime.sleep(600)\\n\", "
        + repr(TASK) + ")\n")
    before = set(os.listdir(tempfile.gettempdir()))
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        bwrap_pid = int(proc.stdout.readline())
        deadline = time.monotonic() + 30
        family: set[int] = set()
        while time.monotonic() < deadline:  # wait until the program and its forked child run
            family = _descendants(bwrap_pid)
            if len(family) >= 4:  # bwrap, launcher, program, its child
                break
            time.sleep(0.1)
        assert len(family) >= 4, family
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in family):
            time.sleep(0.1)
        assert not [p for p in family if alive(p)]
        assert set(os.listdir(tempfile.gettempdir())) - before == set()
    finally:
        if proc.poll() is None:
            proc.kill()


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = {pid}, [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


# ------------------------------------------------------------------ the OS boundary
def test_program_runs_as_nobody_without_capabilities_and_sees_only_itself(code):
    look = ("import os\n"
            "st = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())\n"
            "print('UID', os.getuid(), os.geteuid(), os.getgid(), os.getgroups())\n"
            "print('CAPS', st['CapEff'].strip(), st['CapPrm'].strip(), st['CapAmb'].strip(), st['NoNewPrivs'].strip())\n"
            "print('OTHERS', [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())])\n"
            "print('ROOT', sorted(os.listdir('/')))\n"
            "print('HOST', [p for p in ('/work', '/home', '/root/.ssh', '/var', '/sys', '/etc/shadow') if os.path.exists(p)])\n"
            + GOOD_DEF)
    out = score(code, look).info["output"]
    uid = code.sandbox.mode["uid"]  # as root a host uid of its own, else 65534 in a user namespace
    assert uid == 65534 if os.geteuid() else uid >= 0x7F000000
    assert f"UID {uid} {uid} {uid} []" in out, out
    assert "CAPS 0000000000000000 0000000000000000 0000000000000000 1" in out, out
    assert "OTHERS []" in out, out  # only itself and the launcher (pid 1)
    assert "HOST []" in out, out


def test_only_its_tmpfs_is_writable(code):
    probe = ("import os\nwritable = []\n"
             "for top in ('/', '/usr', '/usr/lib', '/etc', '/opt', '/opt/rlvr', '/dev', '/dev/shm', '/proc', '/root', '/tmp',\n"
             "            os.path.dirname(os.__file__)):\n"
             "    try:\n        open(os.path.join(top, 'probe-w'), 'w').write('x')\n        writable.append(top)\n"
             "    except OSError:\n        pass\n"
             "print('WRITABLE', writable)\n" + GOOD_DEF)
    out = score(code, probe).info["output"]
    assert "WRITABLE ['/tmp']" in out, out


def test_seccomp_blocks_namespaces_keyrings_ipc_and_ptrace_but_not_threads_or_fork(code):
    probe = NATIVE + r"""
import threading
t = threading.Thread(target=lambda: print("THREAD ok")); t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print("FORK ok")
calls = {"unshare-user": (272, 0x10000000), "setns": (308, 0, 0), "ptrace-attach": (101, 16, 1, 0, 0),
         "keyctl": (250, 0, 0), "add_key": (248, b"user", b"k", b"v", 1, -3), "shmget": (29, 0, 4096, 0o1600),
         "io_uring_setup": (425, 1, 0), "bpf": (321, 0, 0, 0), "clone-newuser": (56, 0x10000000 | 17, 0, 0, 0, 0),
         "mount": (165, b"none", b"/tmp", b"tmpfs", 0, 0)}
print("SECCOMP", sorted((k, libc.syscall(*v), ctypes.get_errno()) for k, v in calls.items()))
""" + GOOD_DEF
    res = score(code, probe)
    out = res.info["output"]
    assert res.reward == 1.0 and "THREAD ok" in out and "FORK ok" in out, res.info
    line = next(x for x in out.splitlines() if x.startswith("SECCOMP"))
    results = eval(line[len("SECCOMP "):])  # noqa: S307 - our own test output
    assert len(results) == 10 and all(rc == -1 and errno == 1 for _, rc, errno in results), line  # EPERM


def test_network_is_unreachable(code):
    probe = ("import socket\n"
             "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n    print('NET open')\n"
             "except OSError as e:\n    print('NET closed', e.errno)\n" + GOOD_DEF)
    assert "NET closed" in score(code, probe).info["output"]


def test_two_sandboxes_cannot_see_or_signal_each_other():
    """Programs of one batch run in different sandboxes (one per worker): no shared pids or files."""
    import threading

    a, b = CodeVerifier(timeout=20.0), CodeVerifier(timeout=20.0)
    try:
        sleeper = ("import os, time\nopen('/tmp/flag-a', 'w').write(str(os.getpid()))\ntime.sleep(3)\n" + GOOD_DEF)
        res_a = {}
        t = threading.Thread(target=lambda: res_a.setdefault("r", score(a, sleeper)))
        t.start()
        time.sleep(1.0)
        spy = ("import os, signal\n"
               "print('SEES', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), os.path.exists('/tmp/flag-a'))\n"
               "for pid in range(2, 200):\n"
               "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n" + GOOD_DEF)
        out = score(b, spy).info["output"]
        t.join()
        assert "False" in out.split("SEES")[1].splitlines()[0], out
        assert res_a["r"].reward == 1.0  # the other program was not disturbed
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------ verdict forgery
def test_sys_exit_before_the_asserts(code):
    assert_zero(score(code, "import sys\nsys.exit(0)\n" + WRONG), "failed")


def test_raise_systemexit_inside_the_candidate(code):
    assert_zero(score(code, "def add(a, b):\n    raise SystemExit(0)\n"), "failed")


def test_os_exit_zero_inside_the_candidate(code):
    res = score(code, "import os\ndef add(a, b):\n    os._exit(0)\n")
    assert_zero(res, "crashed")
    assert "exited" in res.info["reason"]


def test_exit_is_a_failure_even_when_the_test_catches_it(code):
    ref = {"test": "try:\n    add(1, 2)\nexcept BaseException:\n    pass\nassert True\n", "code": GOOD_DEF}
    assert_zero(score(code, "import os\ndef add(a, b):\n    os._exit(0)\n", ref))


def test_redefines_check_and_candidate(code):
    evil = WRONG + "def check(candidate):\n    return True\ncandidate = add\nMETADATA = {}\n"
    assert_zero(score(code, evil), "failed")


def test_patches_unittest_and_math(code):
    ref = {"test": "import unittest, math\nunittest.TestCase().assertEqual(add(2, 3), 5)\n"
                   "assert math.isclose(add(0.1, 0.2), 0.3)\n", "code": GOOD_DEF}
    evil = ("import unittest, math\nunittest.TestCase.assertEqual = lambda *a, **k: None\n"
            "math.isclose = lambda *a, **k: True\n" + WRONG)
    assert_zero(score(code, evil, ref), "failed")
    assert score(code, GOOD_DEF, ref).reward == 1.0


def test_prints_and_forges_verdict_lines(code):
    evil = ("import os\nprint('all tests passed'); print('PASSED 3/3')\n"
            "for fd in range(1, 256):\n"
            "    try:\n        os.write(fd, b'[\"ok\", 1, [\"B\", 1]]\\n[\"ready\"]\\n')\n"
            "    except OSError:\n        pass\n" + WRONG)
    res = score(code, evil)
    assert_zero(res)
    assert "all tests passed" in res.info["output"]  # the print was seen, and ignored


@pytest.mark.parametrize("evil", [
    "class Anything:\n    def __eq__(self, other): return True\n    def __sub__(self, o): return self\n"
    "    def __abs__(self): return 0\n    def __lt__(self, o): return True\ndef add(a, b):\n    return Anything()\n",
    "class I(int):\n    def __eq__(self, o): return True\ndef add(a, b):\n    return I(0)\n",
    "class S(str):\n    def __eq__(self, o): return True\ndef add(a, b):\n    return S('')\n",
    "def add(a, b):\n    return iter([5])\n",
], ids=["eq-anything", "int-subclass", "str-subclass", "iterator"])
def test_objects_that_are_not_plain_data_cannot_pass(code, evil):
    res = score(code, evil)
    assert_zero(res, "failed")
    assert "program object" in res.info["reason"], res.info


def test_program_objects_can_be_passed_back(code):
    """MBPP-style classes: the tests construct them in the program and pass them back."""
    ref = {"test_list": ["assert longest([Pair(5, 24), Pair(15, 25), Pair(27, 40)], 3) == 2"],
           "code": "class Pair:\n    pass\ndef longest(ps, n):\n    pass\n"}
    ok = ("class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
          "def longest(ps, n):\n    ps = sorted(ps, key=lambda p: p.b)\n    end, k = None, 0\n"
          "    for p in ps:\n        if end is None or p.a > end:\n            end, k = p.b, k + 1\n    return k\n")
    assert score(code, ok, ref).reward == 1.0
    assert_zero(score(code, ok.replace("return k", "return Pair(0, 0)"), ref), "failed")


def test_program_exceptions_reach_the_tests_as_builtin_exceptions(code):
    ref = {"test": "try:\n    f(-1)\n    raise AssertionError('no error')\nexcept ValueError as e:\n"
                   "    assert str(e) == 'negative'\nassert f(2) == 4\n", "code": "def f(x): pass"}
    ok = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x * x\n"
    assert score(code, ok, ref).reward == 1.0
    assert_zero(score(code, ok.replace("ValueError", "TypeError"), ref), "failed")


def test_cannot_read_the_tests_or_expected_values(code):
    secret = "zebra-7781-secret"
    ref = {"prompt": "def f():\n    pass\n", "test": f"def check(candidate):\n    assert candidate() == {secret!r}\n",
           "entry_point": "f"}
    spy = NATIVE + r'''
found = []
def look(b):
    if b"zebra" in b:
        found.append(b[b.index(b"zebra"):][:17].decode("latin-1"))
for path in ("/proc/1/mem", "/proc/1/environ", "/proc/1/cmdline", "/proc/self/mem"):
    try:
        look(open(path, "rb").read(1 << 20))
    except OSError:
        pass
for fd in range(0, 64):
    try:
        look(os.read(fd, 1 << 16))
    except OSError:
        pass
import gc
for o in gc.get_objects():
    if isinstance(o, (str, bytes)):
        look(o.encode("latin-1", "replace") if isinstance(o, str) else o)
def f():
    return found[-1] if found else ""
'''
    res = score(code, spy, ref)
    assert_zero(res)
    assert secret not in res.info["output"] and secret not in res.info["reason"]
    assert score(code, f"def f():\n    return {secret!r}\n", ref).reward == 1.0  # the task is solvable


# ------------------------------------------------------------------ resources
def test_kills_everything_it_can_and_the_scorer_survives(code):
    evil = ("import os, signal\n"
            "for pid in (os.getppid(), 1, 0, -1):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL)\n    except Exception:\n        pass\n" + WRONG)
    assert_zero(score(code, evil))
    assert score(code, GOOD).reward == 1.0


def test_fork_bomb(code):
    evil = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    assert_zero(score(Quick.v, evil), "timeout")
    assert time.monotonic() - t0 < 15
    assert score(code, GOOD).reward == 1.0


class Quick:
    v = None


@pytest.fixture(autouse=True, scope="module")
def _quick(quick):
    Quick.v = quick


def test_allocates_without_end(code):
    evil = "x = []\nwhile True:\n    x.append(' ' * 10**7)\n"
    t0 = time.monotonic()
    assert_zero(score(code, evil), "failed", "crashed", "timeout")
    assert time.monotonic() - t0 < 15
    assert score(code, GOOD).reward == 1.0


def test_huge_answer_is_refused(code):
    evil = "def add(a, b):\n    return 'x' * (40 << 20)\n"
    assert_zero(score(code, evil))
    assert score(code, GOOD).reward == 1.0


@pytest.mark.slow  # three 2 s wall-clock kills
def test_loops_forever_and_sleeps_forever(quick, code):
    for evil in ("while True:\n    pass\n", "import time\ntime.sleep(10**6)\n",
                 "def add(a, b):\n    while True:\n        pass\n"):
        t0 = time.monotonic()
        assert_zero(score(quick, evil), "timeout")
        assert time.monotonic() - t0 < 2.0 + 8.0  # the wall limit (2 s) plus slack for a loaded machine
    assert score(code, GOOD).reward == 1.0


def test_output_flood_is_capped(code):
    flood = "import sys\nfor _ in range(20000):\n    sys.stdout.write('x' * 10000)\n" + GOOD_DEF
    res = score(code, flood)
    assert res.reward == 1.0  # 200 MB of output: drained, dropped, harmless
    assert len(res.info["output"]) <= 8192


def test_may_write_inside_its_tmpfs(code):
    ok = ("with open('scratch.txt', 'w') as f:\n    f.write('42')\n"
          "def add(a, b):\n    return a + b + int(open('scratch.txt').read()) - 42\n")
    assert score(code, ok).reward == 1.0


# ------------------------------------------------------------------ modes
def test_explicit_unsandboxed_mode_warns_on_every_run(caplog):
    v = CodeVerifier(timeout=15.0, isolation="none")
    try:
        for _ in range(2):
            caplog.clear()
            with caplog.at_level("WARNING", logger="verifiers.sandbox"):
                res = score(v, GOOD)
            assert res.reward == 1.0 and "no OS sandbox" in res.info["warning"]
            assert any("code sandbox disabled" in r.message for r in caplog.records)
        assert_zero(score(v, EXEC_WRAPPERS[0] + WRONG), "failed")  # the judge still holds the verdict
    finally:
        v.close()


def test_unprivileged_user_namespace_mode():
    """The mode a non-root scorer gets (a user namespace whose only uid is 65534 inside), run
    here as the real uid 65534 with the system interpreter (when this machine has one)."""
    import shutil
    import tempfile
    from pathlib import Path

    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)
    if os.geteuid() != 0 or shutil.which("setpriv") is None or python is None:
        pytest.skip("needs root (to become uid 65534), setpriv and a system python3")
    tmp_path = Path(tempfile.mkdtemp(prefix="rlvr-userns-test-"))  # (pytest's own is 0700)
    try:
        _run_as_nobody(tmp_path, python)
    finally:
        shutil.rmtree(tmp_path)


def _run_as_nobody(tmp_path, python):
    import subprocess

    from verifiers.sandbox import bwrap_path

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "bwrap").symlink_to(bwrap_path())
    os.chmod(tmp_path, 0o755)
    script = tmp_path / "run.py"
    script.write_text(
        "import os, sys\nsys.path.insert(0, %r)\n" % os.getcwd()
        + "from verifiers.code import CodeVerifier\n"
        "v = CodeVerifier(timeout=20)\n"
        f"task = {TASK!r}\n"
        "good, wrong = v.score(%r, task), v.score(%r, task)\n" % (GOOD, WRONG)
        + "probe = v.score(\"import os\\nos.makedirs('/tmp/a/b')\\nos.chmod('/tmp/a', 0)\\n"
        "print('UID', os.getuid())\\n\" + %r, task)\n" % GOOD_DEF
        + "after = v.score(\"import os\\nprint('LEFT', os.listdir('/tmp'))\\n\" + %r, task)\n" % GOOD_DEF
        + "print(good.reward, wrong.reward, v.sandbox.mode['user_namespace'], probe.info['output'].strip(),"
        " after.info['output'].strip())\n")
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, str(script)],
                       capture_output=True, text=True, env=env, timeout=120)
    if r.returncode and "No module named" in r.stderr:
        pytest.skip(f"the system python cannot import the verifiers package: {r.stderr.strip()[-200:]}")
    assert r.stdout.strip() == "1.0 0.0 True UID 65534 LEFT []", (r.stdout, r.stderr)


def test_refuses_to_score_where_bubblewrap_cannot_run():
    """A non-root user whose user namespaces are disabled (made real with bwrap --disable-userns):
    constructing the code verifier fails with one line that names the fix."""
    import subprocess
    import sys

    from verifiers.sandbox import bwrap_path

    code = ("import os\nfrom verifiers.code import CodeVerifier\nassert os.getuid() == 1000\n"
            "try:\n    CodeVerifier()\nexcept Exception as e:\n    print(type(e).__name__, '|', e)\n")
    # The tmpfs on /tmp hides whatever lives under it on the host: a venv made in /tmp (CI makes one
    # there) or a checkout there are bound back, read-only, over it.
    keep = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.getcwd())
                   if os.path.realpath(p).startswith("/tmp/")})
    cmd = [bwrap_path(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
           *[a for p in keep for a in ("--ro-bind", p, p)],
           "--unshare-user", "--uid", "1000", "--gid", "1000", "--disable-userns", "--unshare-pid",
           "--chdir", os.getcwd(), sys.executable, "-c", code]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    out = r.stdout.strip()
    assert out.startswith("SandboxUnavailable | "), (out, r.stderr)
    assert "\n" not in out and "user namespaces" in out and "RLVR_CODE_SANDBOX=none" in out


# ------------------------------------------------------------------ API details
def test_partial_credit_counts_asserts():
    v = CodeVerifier(timeout=15.0, partial=True)
    try:
        ref = {"test_list": ["assert f(1) == 1", "assert f(2) == 4", "assert f(3) == 9"], "code": "def f(x): return x*x"}
        res = v.score("def f(x):\n    return x if x < 3 else x * x\n", ref)
        assert res.info["passed"] == 2 and res.info["total"] == 3
        assert res.reward == pytest.approx(2 / 3)
        res = v.score("def add(a, b):\n    return a + b if a >= 0 else 7\n", TASK)
        assert (res.info["passed"], res.info["total"]) == (2, 3)  # add(-1, 1) == 0 fails
    finally:
        v.close()


def test_extract_code_and_build_request():
    text = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nand a test\n```python\nprint(add(1, 2))\n```"
    assert extract_code(text, "add").startswith("def add")
    assert extract_code("    return a + b\n", "add") == "    return a + b\n"
    assert extract_code("```py\nx = 1\n```") == "x = 1\n"
    assert extract_code("```" * 100_000) == ""  # linear on pathological fences
    assert build_request("x", {"test_list": ["assert 1"]})["mode"] == "mbpp"
    assert build_request("x", "assert 1")["mode"] == "script"
    with pytest.raises(ValueError):
        build_request("x", {"nothing": 1})


def test_sandbox_object_reports_mode_and_closes():
    with Sandbox(timeout=10.0) as box:
        res = box.run(build_request(GOOD_DEF, TASK))
        assert res.status == "passed"
        assert box.mode["isolation"] == "bwrap"
        assert box.mode["uid"] >= 0x7F000000 if os.geteuid() == 0 else box.mode["uid"] == 65534
        pid = box._proc.pid
    assert not alive(pid)


# ------------------------------------------------------------------ exceptions are data, not control flow
STOP = "def f(x):\n    raise StopIteration\n"


@pytest.mark.parametrize("test_src", [
    "assert all(map(lambda n: f(n) == n * n, range(5)))\n",
    "assert all(a == b for a, b in zip(map(f, range(5)), [0, 1, 4, 9, 16]))\n",
    "assert not any(map(lambda n: f(n) != n * n, range(5)))\n",
    "assert sorted(set(map(f, range(3)))) == [0, 1, 4] or list(map(f, range(3))) == []\n",
], ids=["all-map", "zip-map", "any-map", "set-map"])
@pytest.mark.parametrize("stop", [STOP, STOP.replace("StopIteration", "StopAsyncIteration"),
                                  "def f(x):\n    raise StopIteration(x * x)\n",
                                  "class E(StopIteration):\n    pass\ndef f(x):\n    raise E\n"],
                         ids=["stop", "stopasync", "stop-value", "stop-subclass"])
def test_stop_iteration_from_the_program_does_not_end_the_tests(code, test_src, stop):
    """A StopIteration from the candidate must not end the C-level iteration in a test."""
    ref = {"test": test_src, "code": "def f(x): pass"}
    assert score(code, "def f(x):\n    return x * x\n", ref).reward == 1.0
    assert_zero(score(code, stop, ref), "failed")


def test_program_exceptions_are_their_own_type_but_still_caught_by_their_builtin_name(code):
    """Tests may catch ValueError from the candidate; what they catch is never a builtin
    control-flow exception and never a ``StopIteration``."""
    ref = {"test": "try:\n    f(-1)\nexcept ValueError as e:\n    assert type(e) is not ValueError and isinstance(e, ValueError)\n"
                   "    assert type(e).__name__ == 'ValueError' and str(e) == 'neg'\nelse:\n    raise AssertionError\n"
                   "try:\n    f(-2)\nexcept StopIteration:\n    raise AssertionError('StopIteration reached the tests')\n"
                   "except Exception as e:\n    assert 'StopIteration' in str(e)\n",
           "code": "def f(x): pass"}
    ok = "def f(x):\n    if x == -1:\n        raise ValueError('neg')\n    raise StopIteration\n"
    assert score(code, ok, ref).reward == 1.0


# ------------------------------------------------------------------ program size on the wire
@pytest.mark.parametrize("filler", [
    "# " + "x" * 70_000 + "\n",
    "TABLE = " + repr(list(range(25_000))) + "\n",
    "# " + "\u00e9" * 12_000 + "\n",
], ids=["70k-comment", "150k-table", "12k-non-ascii"])
def test_large_honest_programs_are_scored(code, filler):
    res = score(code, filler + GOOD_DEF)
    assert res.reward == 1.0, res.info["reason"]


def test_program_at_the_documented_size_limit(code):
    """``MAX_CODE_CHARS`` characters of the widest kind (astral, 12 bytes each as escaped JSON)."""
    from verifiers.code import MAX_CODE_CHARS

    head = GOOD_DEF + "# "
    at = head + "\U0001F600" * (MAX_CODE_CHARS - len(head) - 1) + "\n"
    assert len(at) == MAX_CODE_CHARS
    res = score(code, at)
    assert res.reward == 1.0, res.info["reason"]
    over = score(code, "#" + at)
    assert_zero(over, "error")
    assert over.info["reason"] == "code too long"
    assert score(code, GOOD).reward == 1.0


# ------------------------------------------------------------------ nothing of one program reaches the next
def test_a_program_cannot_read_the_source_of_earlier_programs(code):
    """The warm launcher never holds a program's source, so a later program scanning its whole
    address space (``/proc/self/maps`` + ``ctypes.string_at``) finds nothing of earlier ones."""
    earlier = "SECRET = 'quokka-55190-earlier-rollout'\n" + GOOD_DEF
    assert score(code, earlier).reward == 1.0
    spy = NATIVE + r'''
needle = b"-".join([b"quokka", b"55190"])
hits = 0
for line in open("/proc/self/maps"):
    parts = line.split()
    lo, hi = (int(x, 16) for x in parts[0].split("-"))
    name = parts[5] if len(parts) > 5 else ""
    if "r" not in parts[1] or name.startswith("[v"):
        continue
    try:
        data = ctypes.string_at(lo, hi - lo)
    except Exception:
        continue
    at = data.find(needle)
    while at >= 0:  # (the needle itself is in memory too: count only the earlier program's string)
        hits += data[at + len(needle):at + len(needle) + 8] == b"-earlier"
        at = data.find(needle, at + 1)
print("HITS", hits)
''' + GOOD_DEF
    res = score(code, spy)
    assert "HITS 0" in res.info["output"], res.info["output"]


# ------------------------------------------------------------------ the judge's own work is bounded
COLLIDE = ("import sys\nP = (1 << 61) - 1\n"
           "sys.modules['__main__'].encode = lambda v, h, d=0: "
           "['E', [['I', format(i * P, 'x')] for i in range(150000)]]\n")


def test_colliding_set_members_cost_the_judge_nothing(quick):
    """150k distinct ints of one hash, sent as a set: refused before any set is built."""
    t0 = time.monotonic()
    res = score(quick, COLLIDE + GOOD_DEF)
    assert_zero(res, "failed")
    assert time.monotonic() - t0 < 2.0 + 1.5, res.info
    assert "collid" in res.info["reason"], res.info


def test_the_judges_work_ends_at_the_items_deadline(quick):
    """Quadratic work in a test on what the program returned stops at the deadline."""
    ref = {"test": "assert len(set(f())) == 3\n", "code": "def f(): pass"}
    evil = "P = (1 << 61) - 1\nV = [i * P for i in range(150000)]\ndef f():\n    return V\n"
    t0 = time.monotonic()
    assert_zero(score(quick, evil, ref), "timeout")
    assert time.monotonic() - t0 < 2.0 + 2.0


# ------------------------------------------------------------------ partial credit measures the candidate
PARTIAL_TASK = {"prompt": PROMPT, "entry_point": "add", "test": (
    "def check(candidate):\n"
    "    assert True\n"
    "    assert candidate(2, 3) == 5\n"
    "    assert candidate(2, 2) != 5\n"          # passes on None
    "    assert candidate(-1, 1) is not True\n"  # passes on None
    "    if False:\n        assert candidate(1, 1) == 2\n"
    "    try:\n        candidate('a', 1)\n    except Exception:\n        pass\n    else:\n        assert True\n"
    "    assert candidate(0, 0) == 0\n")}


@pytest.mark.parametrize("body", ["    pass\n", "    return None\n", "    raise ValueError\n",
                                  "    import sys\n    sys.exit(0)\n"])
def test_partial_credit_pays_nothing_for_a_body_that_does_not_compute(body):
    v = CodeVerifier(timeout=15.0, partial=True)
    try:
        res = v.score(body, PARTIAL_TASK)
        assert res.reward == 0.0 and res.info["passed"] == 0, res.info
        good = v.score(GOOD, PARTIAL_TASK)
        assert good.reward == 1.0 and good.info["total"] == 2, good.info
        half = v.score("    return a + b if a else 7\n", PARTIAL_TASK)
        assert half.reward == 0.5, half.info
        mbpp = {"test_list": ["assert True", "assert add(2, 3) == 5", "assert add(1, 1) != 3"], "code": GOOD_DEF}
        assert v.score("def add(a, b):\n" + body, mbpp).reward == 0.0
        assert v.score(GOOD_DEF, mbpp).reward == 1.0
        plain = {"test": "x = 1\nassert x == 1\nassert add(2, 3) == 5\n"}
        assert v.score("def add(a, b):\n" + body, plain).reward == 0.0
        assert v.score(GOOD_DEF, plain).reward == 1.0
    finally:
        v.close()


# ------------------------------------------------------------------ budgets per sandbox, not per process or uid
def test_nothing_of_a_run_survives_it_not_even_zombies(code):
    """60 parked children (and their orphans) are killed and reaped before the next run."""
    park = ("import os, time\n"
            "for _ in range(30):\n"
            "    if os.fork() == 0:\n"
            "        if os.fork() == 0:\n            time.sleep(100)\n"
            "        time.sleep(100)\n" + GOOD_DEF)
    assert score(code, park).reward == 1.0
    census = ("import os\nothers = []\n"
              "for p in os.listdir('/proc'):\n"
              "    if p.isdigit() and int(p) not in (1, os.getpid()):\n"
              "        try:\n            others.append(open('/proc/%s/stat' % p).read().split(')')[-1].split()[0])\n"
              "        except OSError:\n            pass\n"
              "print('OTHERS', others)\n" + GOOD_DEF)
    out = score(code, census).info["output"]
    assert "OTHERS []" in out, out


def test_process_budget_is_per_sandbox():
    """A program holding all its processes does not make another sandbox's threads fail: each
    sandbox has its own uid (so its own RLIMIT_NPROC count)."""
    import threading

    a, b = CodeVerifier(timeout=20.0), CodeVerifier(timeout=20.0)
    try:
        hog = ("import os, time\nprint('UID', os.getuid())\nn = 0\n"
               "while True:\n"
               "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
               "    if pid == 0:\n        time.sleep(100)\n    n += 1\n"
               "print('FORKED', n)\ntime.sleep(4)\n" + GOOD_DEF)
        res_a = {}
        t = threading.Thread(target=lambda: res_a.setdefault("r", score(a, hog)))
        t.start()
        time.sleep(2.0)
        threads = ("import os, threading\nprint('UID', os.getuid())\nout = []\n"
                   "ts = [threading.Thread(target=out.append, args=(i,)) for i in range(16)]\n"
                   "[t.start() for t in ts]\n[t.join() for t in ts]\n"
                   "def add(a, b):\n    return a + b + len(out) - 16\n")
        res_b = score(b, threads)
        t.join()
        assert res_b.reward == 1.0, res_b.info
        assert res_a["r"].reward == 1.0, res_a["r"].info
        uid_a = res_a["r"].info["output"].split("UID ")[1].split()[0]
        uid_b = res_b.info["output"].split("UID ")[1].split()[0]
        assert uid_a != uid_b and "0" not in (uid_a, uid_b)
        assert a.sandbox.mode["uid"] == int(uid_a) and b.sandbox.mode["uid"] == int(uid_b)
    finally:
        a.close()
        b.close()


def test_memory_budget_is_per_sandbox():
    """Four processes of 200 MB each under ``memory_mb=256``: the sandbox's budget, not each
    process's, is what counts; the whole run is killed."""
    v = CodeVerifier(timeout=20.0, memory_mb=256)
    try:
        hog = ("import os, time\n"
               "for _ in range(4):\n"
               "    if os.fork() == 0:\n        x = b'x' * (200 << 20)\n        time.sleep(100)\n"
               "time.sleep(3)\n" + GOOD_DEF)
        t0 = time.monotonic()
        res = v.score(hog, TASK)
        assert_zero(res, "crashed")
        assert "memory" in res.info["reason"], res.info
        assert time.monotonic() - t0 < 10
        assert v.score(GOOD, TASK).reward == 1.0
    finally:
        v.close()


def test_file_count_budget_of_the_tmpfs():
    """Empty files cost no tmpfs blocks but kernel memory: their number is capped too."""
    v = CodeVerifier(timeout=20.0)
    try:
        flood = ("import os\n"
                 "for i in range(300000):\n    open('/tmp/f%d' % i, 'w').close()\n" + GOOD_DEF)
        res = v.score(flood, TASK)
        assert_zero(res, "crashed")
        assert "files" in res.info["reason"], res.info
        assert v.score(GOOD, TASK).reward == 1.0
    finally:
        v.close()


def test_using_a_program_object_fails_the_unit_even_when_the_test_catches_it(code):
    ref = {"test": "try:\n    r = f(1)\n    ok = r + 0 == 1\nexcept BaseException:\n    ok = False\nassert f(2) == 2\n",
           "code": "def f(x): pass"}
    assert score(code, "def f(x):\n    return x\n", ref).reward == 1.0
    res = score(code, "class W:\n    pass\ndef f(x):\n    return W() if x == 1 else x\n", ref)
    assert_zero(res, "failed")
    assert "program object" in res.info["reason"], res.info


def test_only_the_standard_library_is_importable(code):
    """Third-party packages of the bound Python installs (site-packages, dist-packages) are
    hidden, even from a program that puts their folders on ``sys.path`` itself."""
    import glob
    import sys as host_sys

    folders = sorted({p for pattern in ("/usr/lib*/python3*/*-packages", "/usr/local/lib*/python3*/*-packages",
                                        host_sys.base_prefix + "/lib*/python3*/*-packages")
                      for p in glob.glob(pattern)})
    probe = (f"import os, sys\nsys.path[:0] = {folders!r}\n"
             "print('LISTED', [f for f in sys.path[:%d] if os.path.isdir(f) and os.listdir(f)])\n" % len(folders)
             + "wrote = []\n"
             "for f in sys.path[:%d]:\n" % len(folders)
             + "    try:\n        open(os.path.join(f, 'numpy.py'), 'w').write('x = 1')\n        wrote.append(f)\n"
             "    except OSError:\n        pass\n"
             "print('WROTE', wrote)\n"
             "found = []\n"
             "for m in ('numpy', 'cffi', 'IPython', 'yaml', 'pip', 'setuptools'):\n"
             "    try:\n        __import__(m)\n        found.append(m)\n"
             "    except ImportError:\n        pass\n"
             "import json, decimal, ctypes, sqlite3\n"
             "print('IMPORTED', found)\n" + GOOD_DEF)
    res = score(code, probe)
    assert res.reward == 1.0, res.info  # the standard library (compiled modules too) still works
    out = res.info["output"]
    assert "LISTED []" in out and "IMPORTED []" in out and "WROTE []" in out, out


def test_stub_pass_of_partial_credit_is_bounded_even_when_a_test_swallows_everything():
    """The judge's stub pass (partial credit) stops within its budget even in a test that
    catches every exception in a loop; honest code is still scored, within the item's time."""
    ref = {"test": "import time\nt0 = time.monotonic()\nwhile True:\n"
                   "    try:\n        if time.monotonic() - t0 > 3 or f(1) == 1:\n            break\n"
                   "        time.sleep(0.01)\n"
                   "    except BaseException:\n        pass\nassert f(2) == 2\n", "code": "def f(x): pass"}
    v = CodeVerifier(timeout=5.0, partial=True)
    try:
        t0 = time.monotonic()
        res = v.score("def f(x):\n    return x\n", ref)
        assert res.reward == 1.0, res.info
        assert time.monotonic() - t0 < 3.0
    finally:
        v.close()
