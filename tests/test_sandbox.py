"""Exploit suite for the code sandbox: every attack must score 0 and leave host and scorer intact.

Each attack is a completion for a tiny HumanEval-style task (``add(a, b)``) that tries to get
reward without solving it, or to harm the host. After each one the same sandbox must still
score the honest solution 1.0 (checked at the end and, where relevant, inside the test).
"""
from __future__ import annotations

import os
import time

import pytest

from verifiers.code import CodeVerifier, build_request, extract_code
from verifiers.sandbox import Sandbox, isolation_prefix

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TEST = ("def check(candidate):\n"
        "    assert candidate(2, 3) == 5\n"
        "    assert candidate(-1, 1) == 0\n"
        "    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9\n")
TASK = {"prompt": PROMPT, "test": TEST, "entry_point": "add"}
GOOD = "    return a + b\n"
WRONG = "def add(a, b):\n    return 0\n"


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


def test_sys_exit_before_the_asserts(code):
    assert_zero(score(code, "import sys\nsys.exit(0)\n" + WRONG), "failed")


def test_raise_systemexit_inside_the_candidate(code):
    assert_zero(score(code, "def add(a, b):\n    raise SystemExit(0)\n"), "failed")


def test_os_exit_zero_before_the_asserts(code):
    res = score(code, "import os\nos._exit(0)\n")
    assert_zero(res, "crashed")
    assert "no verdict" in res.info["reason"]


def test_redefines_check_and_candidate(code):
    evil = WRONG + "def check(candidate):\n    return True\ncandidate = add\nMETADATA = {}\n"
    assert_zero(score(code, evil), "failed")


def test_redefines_check_as_a_builtin(code):
    evil = "import builtins\nbuiltins.check = lambda c: True\n" + WRONG
    assert_zero(score(code, evil), "violation")


def test_patches_unittest(code):
    ref = {"test": "import unittest\nunittest.TestCase().assertEqual(add(2, 3), 5)\n", "code": "def add(a, b): return a + b"}
    evil = "import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\n" + WRONG
    assert_zero(score(code, evil, ref), "violation")
    assert score(code, "def add(a, b):\n    return a + b\n", ref).reward == 1.0


def test_monkeypatches_builtins(code):
    evil = ("import builtins\nbuiltins.abs = lambda x: 0\n"
            "def add(a, b):\n    return 5 if (a, b) == (2, 3) else (0 if (a, b) == (-1, 1) else 99)\n")
    res = score(code, evil)
    assert_zero(res, "violation")
    assert "builtins.abs" in res.info["reason"]


def test_patches_a_module_the_tests_use(code):
    ref = {"test": "import math\nassert math.isclose(add(0.1, 0.2), 0.3)\n", "code": "def add(a, b): return a + b"}
    evil = "import math\nmath.isclose = lambda *a, **k: True\ndef add(a, b):\n    return -1\n"
    assert_zero(score(code, evil, ref), "violation")


def test_prints_a_fake_success_marker_and_forges_verdict_lines(code):
    evil = ("import os\nprint('all tests passed'); print('PASSED 3/3')\n"
            "for fd in range(1, 1024):\n"
            "    try:\n        os.write(fd, b'0123456789abcdef0123456789abcdef 1 1 0 ok\\n')\n"
            "    except OSError:\n        pass\n" + WRONG)
    res = score(code, evil)
    assert_zero(res, "failed")
    assert "all tests passed" in res.info["output"]  # the print was seen, and ignored


def test_object_that_equals_everything(code):
    evil = ("class Anything:\n"
            "    def __eq__(self, other): return True\n"
            "    def __sub__(self, other): return self\n"
            "    def __abs__(self): return 0\n"
            "def add(a, b):\n    return Anything()\n")
    res = score(code, evil)
    assert_zero(res, "violation")
    assert "non-data value" in res.info["reason"]


def test_iterators_are_rejected_but_plain_containers_and_views_accepted(code):
    ref = {"test": "assert sorted(f()) == [1, 2]", "code": "def f(): return [2, 1]"}
    assert score(code, "def f():\n    return {2: 'a', 1: 'b'}.keys()\n", ref).reward == 1.0
    assert score(code, "def f():\n    return (2, 1)\n", ref).reward == 1.0
    gen = score(code, "def f():\n    return (x for x in (2, 1))\n", ref)
    assert_zero(gen, "violation")
    assert "generator" in gen.info["reason"]


def test_int_subclass_with_forged_eq(code):
    evil = "class I(int):\n    def __eq__(self, o): return True\ndef add(a, b):\n    return I(0)\n"
    assert_zero(score(code, evil), "violation")


def test_kills_its_parent(code):
    evil = ("import os, signal\n"
            "for pid in (os.getppid(), 1, 0, -1):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL)\n    except Exception:\n        pass\n"
            "try:\n    os.killpg(os.getpgid(0), signal.SIGKILL)\nexcept Exception:\n    pass\n"
            "def add(a, b):\n    return a + b\n")
    assert_zero(score(code, evil), "violation")
    assert score(code, GOOD).reward == 1.0  # the launcher survived


def test_kills_its_parent_with_a_pidfd(code):
    evil = ("import os, signal\n"
            "signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)\n" + GOOD.replace("    ", "def add(a, b):\n    ", 1))
    assert_zero(score(code, evil))
    assert score(code, GOOD).reward == 1.0


def test_fork_bomb(code):
    evil = "import os\nwhile True:\n    os.fork()\n"
    t0 = time.monotonic()
    assert_zero(score(code, evil), "violation")
    assert time.monotonic() - t0 < 10
    assert score(code, GOOD).reward == 1.0


def test_fork_bomb_through_subprocess_and_multiprocessing(code):
    for evil in ("import subprocess\nsubprocess.Popen(['sh', '-c', ':(){ :|:& };:'])\n",
                 "import os\nos.system(':(){ :|:& };:')\n",
                 "import multiprocessing\nmultiprocessing.Process(target=print).start()\n",
                 "import os\nos.posix_spawn('/bin/sh', ['sh'], {})\n"):
        assert_zero(score(code, evil + GOOD.replace("    ", "def add(a, b):\n    ", 1)), "violation")


def test_allocates_without_end(code):
    evil = "x = []\nwhile True:\n    x.append(' ' * 10**7)\n"
    t0 = time.monotonic()
    res = score(code, evil)
    assert_zero(res, "failed", "crashed", "timeout")
    assert time.monotonic() - t0 < 10
    assert score(code, GOOD).reward == 1.0


@pytest.mark.slow  # three 2 s wall-clock kills
def test_loops_forever_and_sleeps_forever(quick, code):
    for evil in ("while True:\n    pass\n", "import time\ntime.sleep(10**6)\n",
                 "def add(a, b):\n    while True:\n        pass\n"):
        t0 = time.monotonic()
        assert_zero(score(quick, evil), "timeout")
        assert time.monotonic() - t0 < 2.0 + 8.0  # the wall limit (2 s) plus slack for a loaded machine
    assert score(code, GOOD).reward == 1.0


def test_writes_outside_its_temp_dir(code, tmp_path):
    target = tmp_path / "pwned.txt"
    for evil in (f"open({str(target)!r}, 'w').write('x')\n",
                 f"import os\nfd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)\n",
                 f"import shutil\nshutil.copyfile('/etc/hostname', {str(target)!r})\n",
                 f"import os\nos.symlink({str(target)!r}, 'link')\nopen('link', 'w').write('x')\n",
                 f"try:\n    open({str(target)!r}, 'w').write('x')\nexcept Exception:\n    pass\n"):
        assert_zero(score(code, evil + "def add(a, b):\n    return a + b\n"), "violation")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_changes_through_dir_fd_or_fd_are_refused(code):
    # Each would be a no-op even if allowed (missing name, unchanged mode/times): the test is safe.
    for evil in ("import os\nfd = os.open(os.path.dirname(os.__file__), os.O_RDONLY)\n"
                 "os.rmdir('no-such-dir-7781', dir_fd=fd)\n",
                 "import os\nfd = os.open(os.__file__, os.O_RDONLY)\n"
                 "os.fchmod(fd, os.stat(os.__file__).st_mode & 0o7777)\n",
                 "import os\nst = os.stat(os.__file__)\nos.utime(os.__file__, (st.st_atime, st.st_mtime))\n",
                 "import os\nos.rename(os.__file__ + '.missing', 'x')\n"):
        assert_zero(score(code, evil + "def add(a, b):\n    return a + b\n"), "violation")


def test_reads_outside_the_allowed_roots_are_refused(code):
    for evil in ("open('/etc/passwd').read()\n", "open('/etc/shadow').read()\n",
                 "import os\nos.open('/etc/hostname', os.O_RDONLY)\n"):
        assert_zero(score(code, evil + "def add(a, b):\n    return a + b\n"), "violation")


def test_cannot_switch_the_sandbox_off_from_inside(code):
    evil = ("import sys\nmain = sys.modules['__main__']\n"
            "for name in dir(main):\n"
            "    if name.startswith(('_check', '_deny', 'DENIED', '_make_audit')):\n"
            "        try:\n            setattr(main, name, (lambda *a, **k: None) if name[0] == '_' else frozenset())\n"
            "        except Exception:\n            pass\n"
            "import os\nos.fork()\n" + WRONG)
    res = score(code, evil)
    assert_zero(res, "violation")
    assert "os.fork" in res.info["reason"] or "tampered" in res.info["reason"]
    assert score(code, GOOD).reward == 1.0


def test_root_only_powers_are_gone(code, tmp_path):
    """Where the child keeps uid 0 (inside its namespaces), it must not touch host-wide state."""
    db = tmp_path / "evil.db"
    for evil in ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n",
                 "import time\ntime.clock_settime(time.CLOCK_REALTIME, time.time())\n",
                 "import os\nos.nice(0)\n",
                 "import os\nos.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))\n",
                 f"import sqlite3\nsqlite3.connect({str(db)!r}).execute('create table t(x)')\n",
                 f"import dbm\ndbm.open({str(db)!r}, 'c')\n"):
        assert_zero(score(code, evil + "def add(a, b):\n    return a + b\n"))
    assert not db.exists() and list(tmp_path.iterdir()) == []
    ok = "import sqlite3\nsqlite3.connect(':memory:').execute('create table t(x)')\n" + GOOD.replace("    ", "def add(a, b):\n    ", 1)
    assert score(code, ok).reward == 1.0


def test_may_write_inside_its_temp_dir(code):
    ok = ("with open('scratch.txt', 'w') as f:\n    f.write('42')\n"
          "def add(a, b):\n    return a + b + int(open('scratch.txt').read()) - 42\n")
    assert score(code, ok).reward == 1.0


def test_cannot_read_the_test_source_or_expected_values(code):
    secret = "zebra-7781-secret"
    ref = {"prompt": "def f():\n    pass\n", "test": f"def check(candidate):\n    assert candidate() == {secret!r}\n",
           "entry_point": "f"}
    spy = r'''
import sys, os
found = []
def look(x):
    if isinstance(x, (str, bytes)) and b"zebra"[:5].decode() in (x if isinstance(x, str) else x.decode("latin-1")):
        found.append(x if isinstance(x, str) else x.decode("latin-1"))
for attempt in (
    lambda: [look(o) for o in __import__("gc").get_objects()],
    lambda: [look(v) for v in sys._getframe(1).f_locals.values()],
    lambda: [look(c) for c in sys._getframe(2).f_code.co_consts],
    lambda: look(open("/proc/self/mem", "rb").read(100)),
    lambda: look(open("/proc/self/cmdline", "rb").read()),
    lambda: [look(open(f, "rb").read()) for f in os.listdir(".")],
):
    try:
        attempt()
    except BaseException:
        pass
for fd in range(0, 1024):
    try:
        look(os.read(fd, 1 << 20))
    except OSError:
        pass
def f():
    try:
        raise ValueError
    except ValueError as e:
        try:
            frame = e.__traceback__.tb_frame.f_back
            for c in frame.f_code.co_consts:
                look(c)
        except BaseException:
            pass
    try:
        for c in sys._getframe(1).f_code.co_consts:
            look(c)
    except BaseException:
        pass
    return found[-1] if found else ""
'''
    res = score(code, spy, ref)
    assert_zero(res)
    assert secret not in res.info["output"] and secret not in res.info["reason"]
    assert score(code, f"def f():\n    return {secret!r}\n", ref).reward == 1.0  # the task is solvable


def test_trace_hook_cannot_skip_asserts(code):
    evil = ("import sys\n"
            "def tracer(frame, event, arg):\n"
            "    if event == 'line' and frame.f_code.co_filename == '<test>':\n"
            "        frame.f_lineno = frame.f_lineno + 1\n"
            "    return tracer\n"
            "sys.settrace(tracer)\n" + WRONG)
    assert_zero(score(code, evil), "violation")


def test_threads_cannot_be_started(code):
    evil = ("import threading, _thread\n"
            "try:\n    threading.Thread(target=lambda: None).start()\nexcept Exception as e:\n    print('thread', e)\n"
            "try:\n    _thread.start_new_thread(print, ())\nexcept Exception as e:\n    print('_thread', e)\n"
            + GOOD.replace("    ", "def add(a, b):\n    ", 1))
    res = score(code, evil)
    assert "thread" in res.info["output"] and "_thread" in res.info["output"]
    assert res.reward == 1.0  # the attempt failed; the (honest) solution still counts


def test_network_is_unreachable(code):
    evil = ("import socket\n"
            "s = socket.create_connection(('1.1.1.1', 80), timeout=1)\n"
            "def add(a, b):\n    return a + b\n")
    assert_zero(score(code, evil), "violation")


def test_ctypes_and_raw_bytecode_are_blocked(code):
    for evil in ("import ctypes\n", "import marshal\nmarshal.loads(b'c' + bytes(100))\n",
                 "def g(): pass\ng.__code__.replace(co_code=b'\\x00' * 4)\n"):
        assert_zero(score(code, evil + "def add(a, b):\n    return a + b\n"), "violation")


def test_output_flood_is_capped(code):
    flood = "import sys\nfor _ in range(20000):\n    sys.stdout.write('x' * 10000)\n" + "def add(a, b):\n    return a + b\n"
    res = score(code, flood)
    assert res.reward == 1.0  # 200 MB of output: drained, dropped, harmless
    assert len(res.info["output"]) <= 8192


def test_scorer_still_works_after_all_attacks(code):
    assert score(code, GOOD).reward == 1.0
    assert score(code, "```python\ndef add(a, b):\n    return a + b\n```").reward == 1.0


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


def test_no_isolation_mode_still_blocks_the_main_attacks(tmp_path):
    v = CodeVerifier(timeout=15.0, isolation="none")
    try:
        target = tmp_path / "x"
        assert score(v, GOOD).reward == 1.0
        assert_zero(score(v, "import os\nwhile True:\n    os.fork()\n"), "violation")
        assert_zero(score(v, f"open({str(target)!r}, 'w')\n" + WRONG), "violation")
        assert_zero(score(v, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + WRONG), "violation")
        assert not target.exists()
        assert score(v, GOOD).reward == 1.0
        assert v.sandbox.mode["namespaces"] == "none"
    finally:
        v.close()


def test_launcher_processes_are_cleaned_up():
    box = Sandbox(timeout=15.0)
    box.run(build_request(GOOD, TASK))
    pid = box._proc.pid
    box.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_isolation_probe_and_modes():
    prefix = isolation_prefix()
    assert isinstance(prefix, tuple)
    if prefix:
        assert prefix[0].endswith("unshare")


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
