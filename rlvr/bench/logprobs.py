"""``rlvr bench logprobs RECIPE [overrides]``: what the policy's log-prob pass costs on one real
batch, with the rows as they are and with each prompt run once in the trainable blocks.

One batch is sampled from the recipe's model and first ``--prompts`` training prompts (``rollout.n``
samples each, the recipe's temperature and length), with the boundary states the engine captures
for the frozen-prefix path. Then forward + backward of :func:`rlvr.models.sequence_logprobs` over
the batch as shuffled micro-batches of ``trainer.micro_batch_size`` rows, ``--repeats`` times per
variant, alternating variants; the best CPU seconds of each go to
``benchmarks/results/logprobs_<device>.json`` (earlier runs kept under ``history``).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from rlvr.bench import RESULTS_DIR, write_result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="YAML recipe (e.g. recipes/study_chain4d1.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides")
    p.add_argument("--prompts", type=int, default=8, help="training prompts in the batch (default 8)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per variant (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--label", default="", help="free text stored with the run")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/logprobs_<device>.json)")


def run(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    import rlvr.models as M
    from rlvr.config import load_config
    from rlvr.data import encode_prompt
    from rlvr.errors import ConfigError
    from rlvr.rollout.base import SamplingParams
    from rlvr.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.recipe, [*args.overrides, f"trainer.output_dir={tmp}/run", "data.eval=null",
                                        "trainer.progress=false", "trainer.tensorboard=false"])
        tr = Trainer(cfg)
        k = tr.learner.top_k
        if not k:
            raise ConfigError("rlvr bench logprobs needs the frozen-prefix path (model.trainable_layers > 0 and "
                              "trainer.frozen_prefix_cache true)")
        prompts = [encode_prompt(tr.tokenizer, ex) for ex in tr.train_examples[: args.prompts]]
        r = cfg.rollout
        c0 = time.process_time()
        ro = tr.engine.generate(prompts, SamplingParams(n=r.n, temperature=r.temperature, max_new_tokens=r.max_new_tokens,
                                                        seed=cfg.trainer.seed, capture_block=k))
        gen_cpu = time.process_time() - c0
        b = ro.to_tensors(tr.tokenizer.pad_token_id)
        ids, attn, hb, mask = b["input_ids"], b["attention_mask"], b["boundary_hidden"], b["response_mask"]
        N, R = mask.shape
        mb = cfg.trainer.micro_batch_size
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))
        plan = M._shared_prompt_plan
        variants = {"rows": lambda *a, **kw: None, "each_prompt_once": plan}
        best: dict[str, float] = {}
        try:
            for _ in range(args.repeats):
                for name, planner in variants.items():
                    M._shared_prompt_plan = planner
                    c0 = time.process_time()
                    for s in range(0, N, mb):
                        rows = perm[s: s + mb]
                        lp = M.sequence_logprobs(tr.policy, ids[rows], attn[rows], R, temperature=r.temperature,
                                                 boundary=(k, hb[rows]))
                        (lp * mask[rows]).sum().backward()
                    best[name] = min(best.get(name, float("inf")), time.process_time() - c0)
                    tr.policy.zero_grad(set_to_none=True)
        finally:
            M._shared_prompt_plan = plan
    device = "cuda" if torch.cuda.is_available() else "cpu"
    entry = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "label": args.label,
        "recipe": args.recipe, "overrides": list(args.overrides), "device": device,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__, "loadavg": os.getloadavg()},
        "batch": {"rows": N, "prompts": len(prompts), "prompt_and_response_len": int(ids.shape[1]), "response_len": R,
                  "real_response_tokens": int(mask.sum()), "micro_batch_size": mb, "trainable_blocks": k},
        "generate_cpu_s": gen_cpu, "fwd_bwd_cpu_s": best,
    }
    for name, sec in best.items():
        print(f"{name}: {sec:.2f} CPU s forward + backward over {N} rows ({-(-N // mb)} micro-batches of {mb})")
    out = Path(args.out or RESULTS_DIR / f"logprobs_{device}.json")
    write_result(out, entry)
    print(f"wrote {out}")
    return 0
