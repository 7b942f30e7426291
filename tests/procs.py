"""Process helpers shared by the tests that start, signal and kill processes."""
from __future__ import annotations


def alive(pid: int) -> bool:
    """``pid`` exists and is neither a zombie nor dead (``/proc/<pid>/stat``'s state; Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def failure_text(stderr: str, tail: int = 3000) -> str:
    """What a failed launch's stderr says, for an assertion message: every crash dump of
    ``PYTHONFAULTHANDLER=1`` ("Fatal Python error" up to its list of extension modules, which can run
    to thousands of characters and would push the stacks out of a plain tail), then the tail."""
    dumps, start = [], stderr.find("Fatal Python error")
    while start != -1:
        end = stderr.find("Extension modules", start)
        dumps.append(stderr[start:end if end != -1 else start + 6000])
        start = stderr.find("Fatal Python error", start + 1)
    return "".join(f"--- crash dump ---\n{d}\n" for d in dumps) + "--- tail ---\n" + stderr[-tail:]
