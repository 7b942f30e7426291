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
