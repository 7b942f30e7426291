"""``rlvr bench weightpush``: time the trainer's weight push to ``rlvr rollout-server``, by transport.

Starts a rollout server on this machine (a subprocess, ``--enforce-eager``), loads the same model in
transformers as the trainer would, and pushes its weights with each ``--transports`` in turn,
``--repeats`` times (interleaved, so that a change in the machine's load hits both alike), after
one verified warm-up push per transport (which also opens the collective group; timed apart as
``first_s``). Per push: ``push_s`` = the engine's ``last_sync["time_s"]`` (serialise or broadcast,
the server's in-place load and prefix-cache reset), ``server_s`` = the server's part of it,
``sync_s`` = the whole ``sync_weights(verify=False)`` call (plus exporting and checking the names).
The median is reported. Writes ``benchmarks/results/weightpush_<device>.json`` (earlier runs under
``history``) unless ``--out`` says otherwise.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from rlvr.bench import RESULTS_DIR, write_result
from rlvr.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name or directory")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 (trainer and server alike)")
    p.add_argument("--transports", default="http,collective", help="comma-separated: http, collective")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--server-gpus", default=None,
                   help="CUDA_VISIBLE_DEVICES of the server (e.g. 1; the trainer side keeps this process's)")
    p.add_argument("--startup-s", type=float, default=1200, help="longest wait for the server to start")
    p.add_argument("--out", default=None, help="output JSON path")


def start_server(model_path: str, dtype: str, timeout_s: float,
                 gpus: str | None = None) -> tuple[subprocess.Popen, str, str, float]:
    """The server under test, its URL and token, and its start-up time in seconds."""
    from rlvr.commands import rollout_server

    t0 = time.perf_counter()
    args = ["--port", "0", "--dtype", dtype, "--enforce-eager", "--max-model-len", "512"]
    if not torch.cuda.is_available():
        args += ["--kv-cache-memory-bytes", str(256 << 20)]
    else:
        args += ["--gpu-memory-utilization", "0.3"]
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": gpus} if gpus is not None else {})}
    proc, url, token = rollout_server.start(model_path, args, timeout_s=timeout_s, env=env)
    return proc, url, token, time.perf_counter() - t0


def _write(out: Path, result: dict) -> None:
    write_result(out, result, keep=10)


def run(args: argparse.Namespace) -> int:
    from rlvr.models import load_policy, resolve_model_path
    from rlvr.bench.rollout import _version
    from rlvr.rollout.remote import VLLMServerEngine

    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if not transports or any(t not in ("http", "collective") for t in transports):
        raise ConfigError(f"--transports: a comma-separated list of http, collective; got {args.transports!r}")
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    load_1m = os.getloadavg()[0]
    model_path = resolve_model_path(args.model)
    model, tokenizer = load_policy(model_path, dtype=args.dtype)
    model.eval()
    proc, url, token, startup_s = start_server(model_path, args.dtype, args.startup_s, args.server_gpus)
    try:
        engines = {t: VLLMServerEngine(url, tokenizer, weight_transport=t, timeout_s=600, token=token)
                   for t in transports}
        per: dict[str, dict] = {t: {"push_s_each": [], "server_s_each": [], "sync_s_each": []} for t in transports}
        for t, engine in engines.items():
            t0 = time.perf_counter()
            engine.sync_weights(model)  # verified; opens the group for the collective push
            per[t].update(first_s=round(time.perf_counter() - t0, 3),
                          probe_diff_mean=engine.last_sync["probe_diff_mean"],
                          path=engine.last_sync["path"], tensors=engine.last_sync["tensors"],
                          bytes=engine.last_sync["bytes"])
        for _ in range(args.repeats):
            for t, engine in engines.items():
                t0 = time.perf_counter()
                engine.sync_weights(model, verify=False)
                per[t]["sync_s_each"].append(round(time.perf_counter() - t0, 3))
                per[t]["push_s_each"].append(round(engine.last_sync["time_s"], 3))
                per[t]["server_s_each"].append(round(engine.last_sync["server_s"], 3))
        # still the model's weights after the timed pushes (checked by the engine that pushed last:
        # an engine refuses to read weights that another one pushed)
        engines[transports[-1]].verify_sync(model)
        for t, engine in engines.items():
            engine.close()
            for key in ("push_s", "server_s", "sync_s"):
                per[t][key] = statistics.median(per[t][f"{key}_each"])
            per[t]["gb_per_s"] = round(per[t]["bytes"] / per[t]["push_s"] / 1e9, 3)
    finally:
        proc.kill()
        proc.wait()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = {
        "model": args.model, "dtype": args.dtype, "device": device, "server_gpus": args.server_gpus,
        "repeats": args.repeats,
        "transports": per, "server_startup_s": round(startup_s, 1),
        "cpu_count": os.cpu_count(), "device_name": torch.cuda.get_device_name() if device == "cuda"
        else platform.processor() or platform.machine(),
        "load_avg_1m_at_start": round(load_1m, 2), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": _version("transformers"), "vllm": _version("vllm")},
        "date": time.strftime("%Y-%m-%d"),
    }
    out = Path(args.out) if args.out else RESULTS_DIR / f"weightpush_{device}.json"
    _write(out, result)
    for t in transports:
        p = per[t]
        print(f"{t:>10}: push {p['push_s']:.3f} s (each {p['push_s_each']}), server {p['server_s']:.3f} s, "
              f"{p['bytes'] / 1e6:.0f} MB, {p['gb_per_s']} GB/s", file=sys.stderr)
    print(f"-> {out}", file=sys.stderr)
    return 0
