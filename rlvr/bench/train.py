"""``rlvr bench train``: policy-update throughput (tokens/s, ms/step, peak memory, MFU on GPU).

One "step" is what the trainer does per micro-batch: a forward over [B, P+R] tokens, the response
log-probs (chunked log-softmax, no [B, T, V] float32 tensor), the clipped policy loss, backward
and an AdamW step. FLOPs are counted as 6 * N_trainable_params * tokens + 2 * N_frozen * tokens
(forward-only for frozen layers), plus attention (12 * layers * hidden * T^2 per sequence, fwd+bwd);
MFU divides achieved FLOP/s by the device's dense bf16 peak when it is known.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

# dense bf16 peak FLOP/s by device-name fragment (vendor datasheets, no sparsity)
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name or path")
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--response-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after 1 warm-up)")
    p.add_argument("--trainable-layers", type=int, default=None, help="train only the top K blocks")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/train_<device>.json)")


def _peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def run(args: argparse.Namespace) -> int:
    from rlvr import algorithms as A
    from rlvr.models import load_policy, sequence_logprobs

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    model, tok = load_policy(args.model, dtype=dtype, device=device,
                             gradient_checkpointing=args.gradient_checkpointing)
    if args.trainable_layers:
        blocks = model.model.layers
        for p in model.parameters():
            p.requires_grad_(False)
        for b in list(blocks)[-args.trainable_layers:]:
            for p in b.parameters():
                p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    n_all = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-6)
    B, P, R = args.batch, args.prompt_len, args.response_len
    T = P + R
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, tok.vocab_size, (B, T), generator=gen).to(device)
    attn = torch.ones_like(ids)
    mask = torch.ones(B, R, device=device)
    adv = torch.randn(B, generator=gen).to(device)
    model.train()

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        logp = sequence_logprobs(model, ids, attn, R, chunk_size=4096)
        loss, _ = A.policy_loss(logp, logp.detach(), adv, mask)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [step() for _ in range(args.steps)]
    ms = statistics.median(times) * 1000
    tokens = B * T
    cfg = model.config
    flops = (6 * n_train + 2 * (n_all - n_train)) * tokens + 12 * cfg.num_hidden_layers * cfg.hidden_size * T * T * B
    achieved = flops / (ms / 1000)
    peak = _peak(device)
    if device.type == "cuda":
        mem = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        import resource

        mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result = {
        "benchmark": "train", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
        "platform": platform.platform(), "torch": torch.__version__, "model": args.model,
        "dtype": str(next(model.parameters()).dtype), "batch": B, "prompt_len": P, "response_len": R,
        "trainable_params": n_train, "total_params": n_all, "gradient_checkpointing": args.gradient_checkpointing,
        "ms_per_step": round(ms, 2), "ms_per_step_all": [round(t * 1000, 2) for t in times],
        "tokens_per_s": round(tokens / (ms / 1000), 1), "achieved_tflops": round(achieved / 1e12, 3),
        "mfu": None if peak is None else round(achieved / peak, 4), "peak_memory_gb": round(mem, 3),
    }
    out = Path(args.out or f"benchmarks/results/train_{'cuda' if device.type == 'cuda' else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0
