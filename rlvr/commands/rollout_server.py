"""``rlvr rollout-server MODEL [--host H] [--port P] ...``: vLLM generation for a remote trainer.

Start it on the devices it should own (``CUDA_VISIBLE_DEVICES=4,5,6,7 rlvr rollout-server ...
--tensor-parallel-size 4``) and point the trainer at it: ``rollout.engine=vllm_server
rollout.server.url=http://HOST:PORT``. Every request must carry the server's token: the
environment's ``RLVR_ROLLOUT_TOKEN``, or one made at start and printed (give it to the trainer as
``RLVR_ROLLOUT_TOKEN`` or ``rollout.server.token``). It listens on 127.0.0.1 unless ``--host`` says
otherwise (then it warns: anyone who reaches the port and has the token drives the engine; the
traffic is plain HTTP). Weights arrive as a safetensors blob over HTTP, or by a
broadcast per tensor in a gloo/NCCL group with the trainer (``rollout.server.weight_transport``;
tensor parallel 1 only: the engine must run in this process). See docs/scaling.md.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from rlvr.rollout.server import TOKEN_ENV

SERVING = "rlvr rollout-server: serving"  # the line that says the server listens (and on which URL)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model name or Hugging Face directory (the trainer's model.name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port, printed on start)")
    p.add_argument("--dtype", default=None, help="vLLM dtype (default: bfloat16 on CUDA, float32 on CPU; "
                                                  "match the trainer's model.dtype to sample on-policy)")
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float, default=None)
    p.add_argument("--kv-cache-memory-bytes", type=int, default=None)
    p.add_argument("--enforce-eager", action="store_true", help="no compilation / CUDA graphs (faster start)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conn-timeout-s", type=float, default=60.0,
                   help="close a connection whose client sends nothing for this long (an idle or stalled client)")


def resolve_token(environ: Mapping[str, str]) -> tuple[str, bool]:
    """The server's token: ``environ[TOKEN_ENV]``, or a new random one. Returns (token, made here)."""
    if TOKEN_ENV in environ:
        token = environ[TOKEN_ENV].strip()
        if not token:
            raise SystemExit(f"rlvr rollout-server: error: {TOKEN_ENV} is set but empty")
        return token, False
    return secrets.token_urlsafe(32), True


def exposure_warning(host: str) -> str | None:
    """A one-line warning when ``host`` is not a loopback address (None for 127.0.0.1, ::1, localhost)."""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (f"rlvr rollout-server: warning: listening on {host}, not loopback: anyone who can reach the port and "
            f"has the token can push weights and generate, over plain HTTP (unencrypted); keep the token secret, "
            f"firewall the port (and the collective rendezvous port) to the trainer's hosts, or bind 127.0.0.1 "
            f"and use an ssh tunnel")


def run(args: argparse.Namespace) -> int:
    import torch

    from rlvr.models import resolve_model_path
    from rlvr.rollout.server import serve
    from rlvr.rollout.vllm import VLLMEngine

    token, made = resolve_token(os.environ)  # (checked before the engine's slow start)
    if not args.conn_timeout_s > 0:
        print(f"rlvr rollout-server: error: --conn-timeout-s must be > 0, got {args.conn_timeout_s:g}", file=sys.stderr)
        return 2
    engine = VLLMEngine(resolve_model_path(args.model), dtype=args.dtype or ("bfloat16" if torch.cuda.is_available() else "float32"),
                        max_model_len=args.max_model_len, tensor_parallel_size=args.tensor_parallel_size,
                        gpu_memory_utilization=args.gpu_memory_utilization,
                        kv_cache_memory_bytes=args.kv_cache_memory_bytes, enforce_eager=args.enforce_eager,
                        seed=args.seed, enable_sleep_mode=False)

    def ready(port: int) -> None:
        warning = exposure_warning(args.host)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        if made:
            print(f"rlvr rollout-server: token (none in {TOKEN_ENV}, so made now; the trainer needs it as "
                  f"{TOKEN_ENV} or rollout.server.token): {token}", flush=True)
        print(f"{SERVING} {engine.model_path} ({engine.dtype}) on http://{args.host}:{port}",
              flush=True)

    try:
        serve(engine, args.host, args.port, token=token, ready=ready, conn_timeout_s=args.conn_timeout_s)
    except KeyboardInterrupt:
        pass
    except OSError as e:  # the port is taken, the address is not ours
        print(f"rlvr rollout-server: error: cannot listen on {args.host}:{args.port}: {e.strerror or e}",
              file=sys.stderr)
        return 2
    finally:
        engine.close()
    return 0


def start(model_path: str, args: Sequence[str] = (), *, timeout_s: float = 600,
          env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, str, str]:
    """Start ``rlvr rollout-server MODEL_PATH ARGS`` as a child process and wait for its serving line.

    Returns the process (its output keeps being drained, so it never blocks on a full pipe), the
    URL it serves on (``--port 0`` picks a free port) and its token (``env``'s ``RLVR_ROLLOUT_TOKEN``,
    else a new one given to it). Raises RuntimeError, with the server's last output, when it exits or
    has not started within ``timeout_s``; the child is killed then.
    """
    env = dict(os.environ if env is None else env)
    env[TOKEN_ENV] = env.get(TOKEN_ENV) or secrets.token_urlsafe(32)
    cmd = [sys.executable, "-m", "rlvr.cli", "rollout-server", model_path, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    seen: list[str] = []
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        m = re.search(r"on (http://\S+)", line)
        if line.startswith(SERVING) and m:
            return proc, m.group(1), env[TOKEN_ENV]
    proc.kill()
    why = f"exited with {proc.returncode}" if proc.poll() is not None else f"did not start within {timeout_s:.0f} s"
    raise RuntimeError(f"rollout server {why}:\n" + "".join(seen[-40:]))
