"""``rlvr bench rollout``: generation throughput of a rollout engine on a fixed prompt batch.

Both engines get the same batch (the first ``--prompts`` rows of ``--data``, chat-encoded, ``--n``
samples each, seeded) and the same sampling settings. One short warm-up call is made and timed
separately (first-call kernel setup); the batch is then timed ``--repeats`` times (same seed, same
tokens) and the median run gives:

    tokens_per_s = generated tokens / wall seconds,   ms_per_token = 1000 * wall / generated tokens
    ms_per_step  = 1000 * wall / longest response     (one decode step for the whole batch)

plus every repeat's tokens/s, engine start-up time, for vllm the time of a weight sync from a
transformers copy of the model (export, push, prefix-cache reset, fingerprint check), the
engine-vs-trainer log-prob gap on the generated tokens (``rollout/logprob_diff_mean|max``,
``rollout/kl`` against a ``--trainer-dtype`` recompute), peak resident memory of the process
(``ru_maxrss``), the device and the 1-minute load average before and after (a shared CPU makes
single runs noisy). Writes
``benchmarks/results/rollout_<engine>_<device>.json`` unless ``--out`` says otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from rlvr.bench import RESULTS_DIR
from rlvr.errors import ConfigError
from rlvr.rollout import ENGINES, EngineContext
from rlvr.rollout.base import SamplingParams


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=list(ENGINES), default="vllm")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name or directory")
    p.add_argument("--data", default="gsm8k", help="prompt source (rlvr.data.load_prompts)")
    p.add_argument("--split", default="test")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--n", type=int, default=1, help="samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 (same for both engines)")
    p.add_argument("--trainer-dtype", default="float32",
                   help="dtype of the transformers recompute of the sampled tokens' log-probs (none: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--micro-batch-size", type=int, default=64, help="hf engine: sequences per forward")
    p.add_argument("--enforce-eager", action="store_true", help="vllm: no torch.compile / CUDA graphs")
    p.add_argument("--kv-cache-gb", type=float, default=1.0, help="vllm: KV cache size on CPU")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for the run (default: torch's, one per core)")
    p.add_argument("--serving-threads", type=int, default=None,
                   help="vllm: torch threads while decoding (default: same as --threads)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the batch; the median is reported")
    p.add_argument("--share-prefix-min", default=None,
                   help="hf engine: its share_prefix_min (prompts' common prefix run once when at least this "
                        "long; 0: never). Two values A,B time both settings in each repeat, one after the other "
                        "(order alternating), and report each one's median and the ratio B/A")
    p.add_argument("--out", default=None, help="output JSON path")


def _share_settings(args: argparse.Namespace) -> list[int]:
    """``--share-prefix-min`` as a list of one or two non-negative ints (empty when not given)."""
    if args.share_prefix_min is None:
        return []
    try:
        vals = [int(v) for v in str(args.share_prefix_min).split(",")]
    except ValueError:
        raise ConfigError(f"--share-prefix-min: expected N or A,B (integers), got {args.share_prefix_min!r}") from None
    if not 1 <= len(vals) <= 2 or min(vals) < 0:
        raise ConfigError(f"--share-prefix-min: expected one or two integers >= 0, got {args.share_prefix_min!r}")
    if args.engine != "hf":
        raise ConfigError("--share-prefix-min applies to the hf engine only (vLLM caches prefixes itself)")
    return vals


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _version(pkg: str) -> str | None:
    for name in (pkg, f"{pkg}-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def build_engine(args: argparse.Namespace, model_path: str, tokenizer):
    """The engine under test, from the table in :mod:`rlvr.rollout` (built here so its start-up time
    is measured). An embedded engine samples from a transformers copy loaded here."""
    from rlvr.config import VLLMConfig

    entry = ENGINES[args.engine]
    policy = None
    if entry.embedded:
        from rlvr.models import load_policy

        policy, _ = load_policy(model_path, dtype=args.dtype, device=_device())
        policy.eval()
    kv = int(args.kv_cache_gb * (1 << 30)) if _device() == "cpu" else None
    sections = {"vllm": VLLMConfig(kv_cache_memory_bytes=kv, enforce_eager=args.enforce_eager,
                                   serving_threads=args.serving_threads, max_model_len=max(2048, 4 * args.max_new_tokens))}
    ctx = EngineContext(policy, tokenizer, model_path, args.dtype, args.seed, args.micro_batch_size)
    return entry.build(sections.get(entry.section), ctx)


def _time_sync(engine, model_path: str, args: argparse.Namespace) -> dict:
    """Time ``sync_weights`` from a transformers copy of the model (export + push + verify), twice."""
    from rlvr.models import load_policy

    model, _ = load_policy(model_path, dtype=args.dtype, device=_device())
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        engine.sync_weights(model)
        times.append(round(time.perf_counter() - t0, 3))
    info = engine.last_sync
    return {"sync_path": info["path"], "sync_s_each": times, "sync_push_s": round(info["time_s"], 3),
            "sync_probe_diff_mean": info["probe_diff_mean"], "sync_probe_diff_max": info["probe_diff_max"]}


@torch.no_grad()
def _logprob_consistency(rollout, model_path: str, tokenizer, args: argparse.Namespace) -> dict:
    """Engine log-probs of the sampled tokens vs a transformers recompute (``--trainer-dtype``),
    as the trainer sees them: :func:`rlvr.rollout.consistency.logprob_mismatch`."""
    from rlvr.models import load_policy, sequence_logprobs
    from rlvr.rollout.consistency import logprob_mismatch

    if args.trainer_dtype == "none":
        return {}
    model, _ = load_policy(model_path, dtype=args.trainer_dtype, device=_device())
    model.eval()
    batch = rollout.to_tensors(tokenizer.pad_token_id, _device())
    mask = batch["response_mask"]
    trainer = torch.cat([
        sequence_logprobs(model, batch["input_ids"][i : i + 8], batch["attention_mask"][i : i + 8], mask.shape[1],
                          temperature=args.temperature, chunk_size=32)
        for i in range(0, len(rollout), 8)
    ])
    stats = logprob_mismatch(batch["sampler_logprobs"], trainer, mask)
    return {"trainer_dtype": args.trainer_dtype, **{k: round(v, 6) for k, v in stats.items()}}


def run(args: argparse.Namespace) -> int:
    from rlvr.data import encode_prompt, load_prompts
    from rlvr.models import load_tokenizer, resolve_model_path

    for name in ("prompts", "n", "max_new_tokens", "repeats"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    load_1m = os.getloadavg()[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    model_path = resolve_model_path(args.model)
    tokenizer = load_tokenizer(model_path)
    examples = load_prompts(args.data, split=args.split, limit=args.prompts)
    prompts = [encode_prompt(tokenizer, ex) for ex in examples]
    params = SamplingParams(n=args.n, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed)

    shares = _share_settings(args)
    t0 = time.perf_counter()
    engine = build_engine(args, model_path, tokenizer)
    startup_s = time.perf_counter() - t0
    if shares:
        engine.share_prefix_min = shares[0]
    t0 = time.perf_counter()
    engine.generate(prompts[:2], SamplingParams(max_new_tokens=8, seed=args.seed))
    warmup_s = time.perf_counter() - t0

    runs = []  # (wall seconds, rollout) per timed repeat; same seed, so the same tokens each time
    other: list[float] = []  # with two --share-prefix-min settings: the second one's walls
    for k in range(max(1, args.repeats)):
        order = ([0, 1] if k % 2 == 0 else [1, 0]) if len(shares) == 2 else [0]  # two settings: alternate
        for which in order:
            if shares:
                engine.share_prefix_min = shares[which]
            t0 = time.perf_counter()
            out = engine.generate(prompts, params)
            wall_k = time.perf_counter() - t0
            if which == 0:
                runs.append((wall_k, out))
            else:
                other.append(wall_k)
    rollout = runs[-1][1]
    sync = {} if ENGINES[args.engine].embedded else _time_sync(engine, model_path, args)
    consistency = _logprob_consistency(rollout, model_path, tokenizer, args)
    walls = [w for w, _ in runs]
    wall = statistics.median(walls)
    tokens = rollout.num_tokens
    longest = max(len(r) for r in rollout.response_ids)
    device = _device()
    result = {
        "engine": args.engine, "device": device, "model": args.model, "dtype": args.dtype,
        "data": f"{args.data}:{args.split}", "prompts": len(prompts), "n": args.n, "samples": len(rollout),
        "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "seed": args.seed,
        "prompt_tokens_mean": sum(map(len, prompts)) / len(prompts),
        "tokens": tokens, "longest_response": longest,
        "finished_fraction": sum(rollout.finished) / len(rollout),
        "repeats": len(walls), "wall_s_each": [round(w, 3) for w in walls],
        "tokens_per_s_each": [round(r.num_tokens / w, 1) for w, r in runs],
        "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 1),
        "tokens_per_s_best": round(max(r.num_tokens / w for w, r in runs), 1),
        "ms_per_token": round(1000 * wall / max(tokens, 1), 3), "ms_per_step": round(1000 * wall / max(longest, 1), 2),
        "startup_s": round(startup_s, 2), "warmup_s": round(warmup_s, 2), **sync, **consistency,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "enforce_eager": None if ENGINES[args.engine].embedded else bool(args.enforce_eager),
        "serving_threads": getattr(engine, "serving_threads", None),
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_avg_1m_at_start": round(load_1m, 2), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": _version("transformers"), "vllm": _version("vllm")},
        "date": time.strftime("%Y-%m-%d"),
    }
    if shares:
        result["share_prefix_min"] = shares[0]
    if len(shares) == 2:
        result["share_prefix_min_b"] = shares[1]
        result["wall_s_each_b"] = [round(w, 3) for w in other]
        result["wall_s_b"] = round(statistics.median(other), 3)
        result["wall_ratio_b_over_a"] = round(statistics.median(other) / wall, 3)
    out = Path(args.out) if args.out else RESULTS_DIR / f"rollout_{args.engine}_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.engine} on {device}: {tokens} tokens in {wall:.2f} s = {result['tokens_per_s']} tok/s "
          f"({result['ms_per_token']} ms/token, {result['ms_per_step']} ms/step); start-up {startup_s:.1f} s, "
          f"peak RSS {result['peak_rss_gb']} GB -> {out}", file=sys.stderr)
    if len(shares) == 2:
        print(f"share_prefix_min {shares[0]}: {wall:.2f} s; {shares[1]}: {result['wall_s_b']:.2f} s "
              f"(ratio {result['wall_ratio_b_over_a']}, medians of {len(other)})", file=sys.stderr)
    return 0
