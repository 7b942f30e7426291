"""The RLVR training loop: the only module that knows the order of things.

One step, top to bottom (CleanRL style)::

    prompts -> engine.generate (n per prompt) -> verifier scores -> old/ref logprobs (+ values)
    -> token rewards (score at the last token, KL in the reward if the preset says so)
    -> advantages (the preset's estimator) -> K epochs x mini-batches of policy (+ critic) updates
    -> metrics, periodic eval, checkpoint

Algorithms are data (:mod:`rlvr.algorithms.presets`): the loop never branches on an algorithm's
name, only on the preset's fields (estimator, critic, epochs, clip, KL placement, ...).

Distributed: under ``accelerate launch`` each process generates for its own slice of the prompts
(whole groups stay on one process, so group baselines are exact) and gradients are averaged with
an all-reduce before every optimizer step (``trainer.distributed=ddp``), or policy, critic and
reference are sharded with FSDP2 and their gradients reduce-scattered (``fsdp2``, :mod:`rlvr.fsdp`).
"""
from __future__ import annotations

import math
import resource
import signal
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from rlvr import algorithms as A
from rlvr.algorithms.presets import Preset, get_preset
from rlvr.checkpoint import latest_checkpoint, load_state, rng_state, save_checkpoint, set_rng_state, trainable_state
from rlvr.config import Config, save_config
from rlvr.errors import ConfigError, RlvrError
from rlvr.metrics import MetricsLogger, PhaseTimer
from rlvr.rollout.base import Rollout, SamplingParams
from rlvr.rollout.consistency import logprob_mismatch
from rlvr.updates import UPDATES, UpdateInputs


# preset fields beyond the PPO/GRPO core that this loop implements (Preset.extensions())
SUPPORTED_EXTENSIONS = frozenset({"policy_loss", "update_rule", "lam_critic", "lam_length_alpha", "value_warmup_steps", "seq_is",
                                  "dynamic_sampling", "overlong_buffer"})


# settings a resume may change: budgets, eval/checkpoint cadence and logging, none of which changes
# the run's path (trainer.total_steps only with a constant learning rate: else it sets the schedule)
RESUMABLE_SETTINGS = frozenset({
    "name", "trainer.total_steps", "trainer.max_samples", "trainer.max_tokens", "trainer.max_time_s",
    "trainer.eval_every", "trainer.eval_every_limit", "trainer.eval_at_start", "trainer.checkpoint_every", "trainer.progress",
    "trainer.tensorboard", "trainer.wandb_project", "trainer.dist_timeout_s",
    "trainer.output_dir"})  # the same directory, spelled another way (it holds the checkpoint)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class NonFiniteLossError(RlvrError):
    """Raised after ``trainer.max_bad_steps`` consecutive steps skipped for a non-finite loss or gradient norm."""


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    n = mask.sum()
    return float((x * mask).sum() / n) if n > 0 else float("nan")


def _train_without_dropout(model: torch.nn.Module) -> None:
    """Train mode (gradient checkpointing engages) with every dropout layer off: pi_old is taken
    without dropout, so the update must be too, or an on-policy ratio is not 1."""
    model.train()
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout) or type(mod).__name__.endswith("Dropout"):
            mod.eval()
        if isinstance(getattr(mod, "attention_dropout", None), float):  # functional dropout in attention
            mod.attention_dropout = 0.0


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


class Trainer:
    """Compose model, engine, verifiers and algorithms according to a :class:`Config`."""

    def __init__(self, cfg: Config, *, resume: bool = False, force_resume: bool = False,
                 evaluator: Callable[[Trainer, bool], dict[str, Any] | None] | None = None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg = cfg
        self.evaluator = evaluator  # (trainer, final) -> eval metrics; the core never imports evals/
        self.preset: Preset = get_preset(cfg.algorithm.preset).with_overrides(**cfg.algorithm.overrides)
        unsupported = {k: v for k, v in self.preset.extensions().items() if k not in SUPPORTED_EXTENSIONS}
        if unsupported:
            k, v = next(iter(unsupported.items()))
            raise ConfigError(f"algorithm.preset={self.preset.name}: {k}={v!r} is not run by this trainer yet")
        if self.preset.update_rule not in UPDATES:
            raise ConfigError(f"algorithm.update_rule={self.preset.update_rule!r} has no driver in rlvr.updates "
                              f"(known: {', '.join(UPDATES)})")
        self.update_rule = UPDATES[self.preset.update_rule]
        t = cfg.trainer
        cpu = t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available())
        from datetime import timedelta

        from accelerate.utils import InitProcessGroupKwargs

        # a bounded wait in every collective: a dead or hung peer is an error, never a hang
        self.accelerator = Accelerator(cpu=cpu, kwargs_handlers=[
            InitProcessGroupKwargs(timeout=timedelta(seconds=t.dist_timeout_s))])
        self.device = self.accelerator.device
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.run_dir = Path(t.output_dir)
        self.fsdp = self._use_fsdp()
        set_seed(t.seed + self.rank)
        self._load_data()
        from rlvr.scoring import check_reward

        check_reward(cfg.reward, self.train_examples)  # a bad verifier: one line, before any model loads
        # the run directory: locked, and a resume checked against the run's settings, before any model loads
        self._lock_run_dir()
        resume = resume or force_resume
        ckpt = latest_checkpoint(self.run_dir) if resume else None
        resume_changes = self._check_resume_settings(ckpt, force_resume) if ckpt is not None else {}
        self._build_models()
        self._broadcast_parameters()
        self._shard_models()
        self._setup_frozen_prefix()
        self._critic_initialised = False
        if t.reuse_sampler_logprobs and next(self.policy.parameters()).dtype != torch.float32:
            raise ConfigError("trainer.reuse_sampler_logprobs needs a float32 policy (model.dtype=float32): in "
                              f"{next(self.policy.parameters()).dtype} the sampler's log-probs are not the "
                              "trainer's, so pi_old must be recomputed")
        self._build_optimizers()
        self.kl_ctl = A.make_kl_controller(self.preset)  # reference KL coefficient
        self.kl_old_ctl = A.make_old_kl_controller(self.preset)  # PPO-KL trust-region coefficient
        self.step = 0
        self.samples = 0
        self.tokens = 0
        self.elapsed_offset = 0.0
        self.train_s = 0.0  # wall seconds spent training (no evals, no diagnostics, no checkpoints)
        self.train_cpu_s = 0.0  # the same in CPU seconds of this process (robust to a shared machine)
        self.bad_steps = 0
        self._stop_signal: int | None = None
        self._active_rows: torch.Tensor | None = None  # [N] 1.0 = real row, 0.0 = padding (see _learn_rows)
        self._perm_cache: dict[int, list[int]] = {}
        self._last_eval: dict[str, Any] | None = None
        self._eval_pending = False  # the eval due at this step was not run (a stop came first)
        if resume and ckpt is None and self.is_main:
            print(f"rlvr train: no checkpoint under {self.run_dir}/checkpoints; starting fresh")
        if ckpt is not None:
            self._restore(ckpt)
            if resume_changes:
                self._record_forced_resume(ckpt, resume_changes)
        else:
            self._set_aside_earlier_attempt()
        if self.is_main:
            from rlvr import provenance

            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            provenance.write(self.run_dir, self.step)  # code commit, versions, command, machine
        self.engine = self._build_engine()

    # ------------------------------------------------------------------ setup
    def _use_fsdp(self) -> bool:
        """``trainer.distributed`` resolved: "auto" follows accelerate's launch config (``accelerate
        launch --config_file recipes/accelerate/fsdp2.yaml`` sets ACCELERATE_USE_FSDP and
        FSDP_VERSION). FSDP2 with one process shards over a group of one (same code path)."""
        import os

        t, m = self.cfg.trainer, self.cfg.model
        launched = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
        if launched and os.environ.get("FSDP_VERSION", "1") != "2":
            raise ConfigError("accelerate config: fsdp_version must be 2 (FSDP2); rlvr does not run FSDP1 "
                              "(see recipes/accelerate/fsdp2.yaml)")
        if t.distributed == "ddp" and launched:
            raise ConfigError("trainer.distributed=ddp, but accelerate launch was given an FSDP config; "
                              "use trainer.distributed=fsdp2 (or auto), or launch without the FSDP config")
        if not (t.distributed == "fsdp2" or (t.distributed == "auto" and launched)):
            return False
        if m.lora_r > 0:
            raise ConfigError("model.lora_r: LoRA is not supported with trainer.distributed=fsdp2 (use ddp: the "
                              "adapters are small, only the frozen base would be sharded)")
        if self.preset.update_rule != "first_order":
            why = {"trpo": "its Fisher-vector products take autograd.grad, which FSDP does not reduce",
                   "dpo": "each process has its own number of pairs, so of backward passes"}
            raise ConfigError(f"algorithm.update_rule={self.preset.update_rule} is not supported with "
                              f"trainer.distributed=fsdp2 ({why.get(self.preset.update_rule, 'only first_order is')}); use ddp")
        if t.gradvar_every:
            raise ConfigError("trainer.gradvar_every is not supported with trainer.distributed=fsdp2 (per-part "
                              "gradients would be averaged over processes); set it to 0 or use ddp")
        if not torch.distributed.is_initialized():  # one process: a group of one
            torch.distributed.init_process_group("gloo" if self.device.type == "cpu" else "nccl",
                                                 store=torch.distributed.HashStore(), rank=0, world_size=1)
        return True

    def _load_data(self) -> None:
        from rlvr.data import load_eval_examples, load_prompts

        d = self.cfg.data
        self.train_examples = load_prompts(d.train, split=d.train_split or "train", limit=d.train_limit,
                                           system_prompt=d.system_prompt, seed=self.cfg.trainer.seed,
                                           format=d.format, reference_column=d.reference_column)
        if not self.train_examples:
            raise ConfigError(f"data.train: '{d.train}' has no examples")
        self.pairs = None  # offline preference pairs (data.pairs): they replace sampling
        if d.pairs:
            from rlvr.pairs import load_preference_pairs

            self.pairs = load_preference_pairs(d.pairs)
        self.eval_examples = None
        if d.eval:
            self.eval_examples = load_eval_examples(self.cfg)
            if self.evaluator is None:
                import warnings

                warnings.warn("data.eval is set but no evaluator was given, so nothing is evaluated; "
                              "`rlvr train` passes the evals harness (rlvr.commands.train.harness_evaluator)",
                              stacklevel=3)

    def _build_models(self) -> None:
        from rlvr.models import build_critic, build_reference, load_policy

        m = self.cfg.model
        lora = None
        if m.lora_r > 0:
            lora = {"r": m.lora_r, "alpha": m.lora_alpha, "dropout": m.lora_dropout,
                    "target_modules": list(m.lora_target_modules)}
        dtype = getattr(torch, m.dtype) if m.dtype else None
        self.policy, self.tokenizer = load_policy(m.name, dtype=dtype, device=self.device, lora=lora,
                                                  gradient_checkpointing=m.gradient_checkpointing)
        if m.trainable_layers is not None:
            self._freeze_lower_layers(m.trainable_layers)
        self.shared_critic = bool(self.preset.critic and m.critic_shared_trunk)
        self.critic = None
        if self.preset.critic:
            self.critic = build_critic(self.policy, shared_trunk=self.shared_critic).to(self.device)
        if self.critic is not None and m.trainable_layers is not None and not self.shared_critic:
            self._freeze_lower_layers(m.trainable_layers, model=self.critic, keep_prefixes=("value_head", "head"))
        self.reference = None
        if self._needs_reference():
            self.reference = build_reference(self.policy).to(self.device)

    def _broadcast_parameters(self) -> None:
        """Several processes: every model starts from process 0's parameters (randomly initialised
        parts such as LoRA adapters are drawn with a per-process seed)."""
        if self.world == 1:
            return
        for model in (self.policy, self.critic, self.reference):
            if model is None:
                continue
            with torch.no_grad():
                for q in model.parameters():
                    torch.distributed.broadcast(q.data, src=0)

    def _shard_models(self) -> None:
        """``trainer.distributed=fsdp2``: shard policy, separate critic and reference (every process
        holds process 0's parameters by now); ``self._roots`` maps each to the root every pass goes
        through (:meth:`_call`). A shared-trunk value head stays whole (its gradients all-reduced)."""
        self._roots: dict[int, torch.nn.Module] = {}
        if not self.fsdp:
            return
        import os

        from rlvr.fsdp import shard

        reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() != "false"
        models = [self.policy, self.reference] + ([self.critic] if not self.shared_critic else [])
        for model in models:
            if model is not None:
                self._roots[id(model)] = shard(model, self.device, reshard_after_forward=reshard)

    def _call(self, model: torch.nn.Module, fn: Callable, *args, **kwargs):
        """``fn(model, *args, **kwargs)``; for a sharded model inside its FSDP root's forward (which
        gathers the parameters outside the blocks and registers the gradient reduction)."""
        root = self._roots.get(id(model))
        return fn(model, *args, **kwargs) if root is None else root(*args, fn=fn, **kwargs)

    @property
    def sampling_model(self) -> torch.nn.Module:
        """The policy as a module to call (generate, probe): its FSDP root when sharded."""
        return self._roots.get(id(self.policy), self.policy)

    def _sampling_weights(self, embedded: bool = True):
        """Context in which the policy's own module samples: with FSDP2 (and an ``embedded``
        engine) all of its units are gathered once (:func:`rlvr.fsdp.gathered`), so decoding, whose
        length differs between processes, makes no collective."""
        import contextlib

        if not (self.fsdp and embedded):
            return contextlib.nullcontext()
        from rlvr.fsdp import gathered

        return gathered(self.sampling_model)

    def _needs_reference(self) -> bool:
        return self.preset.needs_reference

    def _freeze_lower_layers(self, k: int, model: torch.nn.Module | None = None,
                             keep_prefixes: tuple[str, ...] = ()) -> None:
        """Train only the top ``k`` transformer blocks and the final norm (and any LoRA/value head)."""
        model = self.policy if model is None else model
        layers = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 0]
        if not layers:
            raise ConfigError("model.trainable_layers: could not find the transformer block list")
        blocks = max(layers, key=len)
        if k > len(blocks):
            raise ConfigError(f"model.trainable_layers={k} but the model has {len(blocks)} blocks")
        keep = {id(p) for b in list(blocks)[-k:] for p in b.parameters()}
        for name, mod in model.named_modules():
            if name.endswith("norm") and not any(isinstance(c, torch.nn.ModuleList) for c in mod.children()):
                if "layers" not in name:
                    keep |= {id(p) for p in mod.parameters()}
        lora = self.cfg.model.lora_r > 0
        for name, p in model.named_parameters():
            is_adapter = "lora_" in name
            is_head = any(name.startswith(pre) or f".{pre}" in name for pre in keep_prefixes)
            if is_head:
                p.requires_grad_(True)
            elif lora:
                p.requires_grad_(is_adapter and id(p) in keep)
            else:
                p.requires_grad_(id(p) in keep)

    def _build_optimizers(self) -> None:
        t = self.cfg.trainer
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("model: no trainable parameters (check model.trainable_layers / lora)")
        self.optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)
        self.critic_optimizer = self.critic_scheduler = None
        if self.critic is not None:
            head = self.critic if self.shared_critic else self.critic.head
            head_ids = {id(p) for p in head.parameters()}
            trunk = [p for p in self.critic.parameters() if p.requires_grad and id(p) not in head_ids]
            groups = [{"params": list(head.parameters()), "lr": t.value_head_lr or t.critic_lr}]
            if trunk:
                groups.append({"params": trunk, "lr": t.critic_lr})
            self.critic_optimizer = torch.optim.AdamW(groups, lr=t.critic_lr, weight_decay=t.weight_decay)
            self.critic_scheduler = torch.optim.lr_scheduler.LambdaLR(self.critic_optimizer, self._lr_lambda)

    def _lr_lambda(self, step: int) -> float:
        t = self.cfg.trainer
        if t.warmup_steps and step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        frac = min(1.0, (step - t.warmup_steps) / max(1, t.total_steps - t.warmup_steps))
        if t.lr_schedule == "linear":
            return 1.0 - frac
        if t.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * frac))
        return 1.0

    def _build_engine(self):
        """The engine ``rollout.engine`` names, from the table in :mod:`rlvr.rollout`."""
        from rlvr.rollout import ENGINES, EngineContext, build_engine

        r, m = self.cfg.rollout, self.cfg.model
        self.engine_embedded = ENGINES[r.engine].embedded
        engine = build_engine(r, EngineContext(self.sampling_model, self.tokenizer, m.name, m.dtype,
                                               self.cfg.trainer.seed, r.micro_batch_size))
        if not self.engine_embedded:
            engine.sync_weights(self.sampling_model)  # resumed or LoRA-wrapped weights differ from the path
        return engine

    # ------------------------------------------------------------------ data order
    def _step_examples(self, step: int, items: list | None = None) -> list:
        """Prompts (or ``items``, e.g. offline pairs) for ``step`` on this process: a seeded permutation
        per data epoch, so the data position is a pure function of the step (exact resume, no
        iterator state to save)."""
        items = self.train_examples if items is None else items
        n, k = len(items), self.cfg.trainer.prompts_per_step
        start = (step * self.world + self.rank) * k
        out = []
        for g in range(start, start + k):
            epoch, i = divmod(g, n)
            if self.cfg.data.shuffle:
                if (n, epoch) not in self._perm_cache:
                    gen = torch.Generator().manual_seed(self.cfg.trainer.seed * 7919 + epoch)
                    self._perm_cache[n, epoch] = torch.randperm(n, generator=gen).tolist()
                i = self._perm_cache[n, epoch][i]
            out.append(items[i])
        return out

    # ------------------------------------------------------------------ scoring
    def _score(self, examples: list, texts: list[str], n: int,
               completion_ids: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Verifier scores for each sample -> (rewards [N], correct [N], info).

        ``info``: ``reward/<verifier>`` per weighted verifier and ``verifier/{timeout,crash,
        violation}_rate`` (see :mod:`rlvr.scoring`). ``completion_ids`` and the trainer's state go to
        TRL reward functions (their ``completion_ids`` and ``trainer_state``)."""
        from rlvr.scoring import reward_labels, reward_terms, score_examples

        rc, t = self.cfg.reward, self.cfg.trainer
        state = {"global_step": self.step, "max_steps": t.total_steps, "num_input_tokens_seen": self.tokens,
                 "epoch": self.step * t.prompts_per_step * self.world / max(1, len(self.train_examples)),
                 "is_local_process_zero": self.accelerator.is_local_main_process,
                 "is_world_process_zero": self.is_main}
        res = score_examples(examples, texts, n, reward_terms(rc), workers=rc.workers, timeout=rc.timeout_s,
                             completion_ids=completion_ids, state=state)
        rewards = torch.tensor(res.rewards, dtype=torch.float32)
        correct = torch.tensor([float(r.reward >= 1.0) for r in res.primary])
        return rewards, correct, res.metrics(reward_labels(rc, self.train_examples))

    # ------------------------------------------------------------------ forward passes
    def _setup_frozen_prefix(self) -> None:
        """With only the top k of L blocks trainable, every pass over a batch can start from the
        hidden states entering block L-k (the frozen lower stack is computed once per step, or
        captured by the embedded engine while it samples). ``self.top_k`` None: full passes."""
        self.top_k = None
        k = self.cfg.model.trainable_layers
        if k is None or not self.cfg.trainer.frozen_prefix_cache:
            return
        from rlvr.models import block_list

        L = len(block_list(self.policy)[2])
        if k < L:
            self.top_k = k
        self._prefix_checked = False

    def _boundary(self, batch: dict, rows):
        if self.top_k is None or "boundary_hidden" not in batch:
            return None
        return self.top_k, batch["boundary_hidden"][rows]

    def _ensure_boundary(self, batch: dict) -> None:
        """Add ``boundary_hidden [N, T, H]`` to the batch (engine capture or one lower-stack pass),
        and on first use check that top-only passes reproduce full passes (else turn them off)."""
        if self.top_k is None:
            return
        from rlvr.models import boundary_hidden

        if "boundary_hidden" not in batch:
            mb, N = self.cfg.trainer.micro_batch_size, batch["input_ids"].shape[0]
            batch["boundary_hidden"] = torch.cat([
                self._call(self.policy, boundary_hidden, batch["input_ids"][i:i + mb], batch["attention_mask"][i:i + mb],
                           self.top_k)
                for i in range(0, N, mb)], 0)
        if self._prefix_checked:
            return
        self._prefix_checked = True
        rows = slice(0, min(4, batch["input_ids"].shape[0]))
        models = [("policy", self.policy), ("reference", self.reference)]
        if self.critic is not None and not self.shared_critic:
            models.append(("critic", self.critic))
        worst = 0.0
        with torch.no_grad():
            for _, model in models:
                if model is None:
                    continue
                fast = self._forward_for_check(model, batch, rows, self._boundary(batch, rows))
                full = self._forward_for_check(model, batch, rows, None)
                worst = max(worst, float(((fast - full).abs() * batch["response_mask"][rows]).max()))
        if worst > 1e-3:
            import warnings

            warnings.warn(f"trainer.frozen_prefix_cache: top-block passes differ from full passes by {worst:.2g}; "
                          "using full passes", stacklevel=2)
            self.top_k = None
            batch.pop("boundary_hidden")

    def _forward_for_check(self, model, batch, rows, boundary):
        from rlvr.models import sequence_logprobs, sequence_values

        ids, attn = batch["input_ids"][rows], batch["attention_mask"][rows]
        R = batch["response_mask"].shape[1]
        if model is self.critic:
            return self._call(self.critic, sequence_values, ids, attn, R, boundary=boundary)
        return self._call(model, sequence_logprobs, ids, attn, R, boundary=boundary)

    def _logprobs(self, model, batch: dict, rows: torch.Tensor | slice, *, entropy: bool = False,
                  hidden: bool = False):
        """Response log-probs [n, R] (and entropy, hidden states) of ``rows`` under ``model``.

        The log-softmax runs in chunks of about ``trainer.logprob_chunk_size`` tokens (rows x
        positions) only when the full [n, R, V] float32 logits would exceed that many tokens.
        """
        from rlvr.models import sequence_logprobs

        ids, attn = batch["input_ids"][rows], batch["attention_mask"][rows]
        R = batch["response_mask"].shape[1]
        budget = self.cfg.trainer.logprob_chunk_size
        chunk = max(1, budget // ids.shape[0]) if budget and ids.shape[0] * R > budget else None
        return self._call(model, sequence_logprobs, ids, attn, R, temperature=self.cfg.rollout.temperature,
                          chunk_size=chunk, return_entropy=entropy, return_hidden=hidden,
                          boundary=self._boundary(batch, rows))

    def _values(self, batch: dict, rows) -> torch.Tensor:
        """Critic values [n, R]: a separate value model, or a head on the policy's own trunk."""
        if self.shared_critic:
            _, hidden = self._logprobs(self.policy, batch, rows, hidden=True)
            return self.critic(hidden)
        from rlvr.models import sequence_values

        R = batch["response_mask"].shape[1]
        return self._call(self.critic, sequence_values, batch["input_ids"][rows], batch["attention_mask"][rows], R,
                          boundary=self._boundary(batch, rows))

    @torch.no_grad()
    def _no_grad_pass(self, fn, N: int) -> torch.Tensor:
        mb = self.cfg.trainer.micro_batch_size
        return torch.cat([fn(slice(i, min(i + mb, N))) for i in range(0, N, mb)], 0)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, Any]:
        cfg, p, t = self.cfg, self.preset, self.cfg.trainer
        timer = PhaseTimer()
        t_step, c_step = time.perf_counter(), time.process_time()
        rollout, scores, correct, score_info = self._collect(timer)
        batch = rollout.to_tensors(self.tokenizer.pad_token_id, self.device)
        mask = batch["response_mask"]
        N, R = mask.shape
        finished = batch["finished"]
        lengths = mask.sum(1)
        m: dict[str, Any] = {
            "reward/mean": float(scores.mean()), "reward/std": float(scores.std()) if N > 1 else 0.0,
            "accuracy": float(correct.mean()), "response_length/mean": float(lengths.mean()),
            "truncation_rate": float((~finished).float().mean()), **score_info,
        }
        # the overlong penalty changes the scores the estimator (and the zero-std check) sees;
        # "mask" keeps truncated samples' real scores in the group statistics and drops their loss
        if cfg.algorithm.overlong == "penalty":
            scores = torch.where(finished.cpu(), scores, torch.full_like(scores, cfg.algorithm.overlong_penalty))
        if p.overlong_buffer is not None:  # DAPO's soft overlong punishment (Yu et al. 2025, eq. 13)
            budget = cfg.rollout.max_new_tokens
            pen = A.overlong_penalty(lengths.cpu(), budget, p.overlong_cache_len(budget), p.overlong_penalty)
            scores = scores + pen.to(scores.dtype)
            m["overlong/penalty_mean"] = float(pen.mean())
        loss_mask = mask.clone()
        if cfg.algorithm.overlong == "mask":
            loss_mask = loss_mask * finished[:, None].float()
        # groups whose rewards are all equal carry no signal for group baselines
        gid = batch["group_ids"]
        uniq, inv = torch.unique(gid, return_inverse=True)
        gmax = torch.full((len(uniq),), -math.inf).scatter_reduce(0, inv.cpu(), scores, "amax")
        gmin = torch.full((len(uniq),), math.inf).scatter_reduce(0, inv.cpu(), scores, "amin")
        zero_std = gmax == gmin
        m["zero_std_groups"] = float(zero_std.float().mean())
        keep = torch.ones(N, dtype=torch.bool)
        if cfg.algorithm.filter_zero_std_groups:
            keep = ~zero_std[inv.cpu()]
            m["filtered_samples"] = float((~keep).float().mean())
        # one all-gather agrees on the global sample and token counts (every sample any process
        # generated this step, dynamic-sampling refills included: the budgets are checked on them),
        # the rows every process trains on (equal, so every process runs the same number of
        # mini-batches) and whether anyone updates at all
        gen_samples, gen_tokens = self._generated
        agreed = self._gather_floats([float(gen_tokens), float(keep.sum()),
                                      float(loss_mask[keep.to(self.device)].sum()), float(gen_samples)])
        self.samples += int(agreed[:, 3].sum())
        self.tokens += int(agreed[:, 0].sum())

        if agreed[:, 2].sum() > 0:
            rows, self._active_rows = self._learn_rows(keep, int(agreed[:, 1].max()))
            batch = {k: v[rows] for k, v in batch.items()}
            scores, loss_mask = scores[rows.cpu()], loss_mask[rows] * self._active_rows[:, None]
            with timer("trunk"):
                self._ensure_boundary(batch)
            m.update(self._learn(batch, scores, loss_mask, timer))
            with timer("sync"):  # the engine samples the next batch from the updated weights
                self.engine.sync_weights(self.sampling_model)
        else:
            m["skipped_update"] = 1.0
        if t.gradvar_every and self.step % t.gradvar_every == 0:
            c0 = time.process_time()
            with timer("gradvar"):
                self._ensure_boundary(batch)
                m.update(self._gradient_variance(batch, scores, loss_mask))
            m["time/gradvar_cpu"] = time.process_time() - c0
        self.step += 1
        phase = timer.pop()
        step_time = time.perf_counter() - t_step
        m.update(phase)
        m["time/step"] = step_time
        m["time/step_cpu"] = time.process_time() - c_step  # CPU seconds of this process (all threads)
        m["tokens_per_s"] = float(gen_tokens) / max(phase.get("time/generate", step_time), 1e-9)  # all generated
        m["memory/peak_gb"] = _peak_memory_gb(self.device)
        m["lr"] = self.scheduler.get_last_lr()[0]
        return self._reduce(m)

    def _generate(self, examples: list, round_: int, timer: PhaseTimer) -> tuple:
        """Sample ``rollout.n`` completions of each example and score them -> (rollout, scores [N],
        correct [N], info). ``round_`` > 0: a dynamic-sampling refill (its own sampling seed)."""
        from rlvr.data import encode_prompt

        cfg, t = self.cfg, self.cfg.trainer
        prompts = [encode_prompt(self.tokenizer, ex) for ex in examples]
        capture = None
        if self.top_k is not None and self.engine_embedded:  # it can hand back the trainable blocks' input
            from rlvr.models import block_list

            capture = len(block_list(self.policy)[2]) - self.top_k
        seed = t.seed * 1_000_003 + self.step * 1009 + self.rank + round_ * 100_000_007
        params = SamplingParams(n=cfg.rollout.n, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                                max_new_tokens=cfg.rollout.max_new_tokens, seed=seed % (2**31),
                                capture_block=capture)
        with timer("generate"), self._sampling_weights(self.engine_embedded):
            rollout = self.engine.generate(prompts, params)
        self._generated[0] += len(rollout)  # this process's samples/tokens this step (see _collect)
        self._generated[1] += rollout.num_tokens
        with timer("score"):
            scores, correct, info = self._score(examples, rollout.texts, cfg.rollout.n, rollout.response_ids)
        return rollout, scores, correct, info

    def _collect(self, timer: PhaseTimer) -> tuple:
        """This step's scored rollout -> (rollout, scores [N], correct [N], info).

        With the preset's ``dynamic_sampling`` (DAPO, Yu et al. 2025, sec. 3.2 and Algorithm 1) only
        groups whose verifier scores are mixed are kept (``A.mixed_groups``), and more prompts are
        sampled (``A.prompts_to_refill``, drawn from the training set by a generator seeded with the
        step, so a resumed run draws the same) until ``trainer.prompts_per_step`` mixed groups are in
        hand or ``algorithm.dynamic_sampling_max_rounds`` extra rounds were spent; the surplus is
        dropped. Every generated sample counts toward ``samples``/``tokens`` (matched budgets; this
        process's are in ``self._generated``, summed over processes by ``train_step``), and
        reward/mean and accuracy are over all of them. Metrics: dapo/rounds (extra rounds needed),
        dapo/mixed_groups (fraction of generated groups that were mixed), dapo/batch_fill (kept
        groups / prompts_per_step; < 1 when the cap was hit).
        """
        self._generated = [0, 0]
        if self.pairs is not None:
            out = self._pair_rollout(self._step_examples(self.step, self.pairs))
            self._generated = [len(out[0]), out[0].num_tokens]
            return out
        examples = self._step_examples(self.step)
        rollout, scores, correct, info = self._generate(examples, 0, timer)
        if not self.preset.dynamic_sampling:
            return rollout, scores, correct, info
        want, cap = len(examples), self.cfg.algorithm.dynamic_sampling_max_rounds
        parts = [(rollout, scores, correct)]
        rounds = 0
        while True:
            mixed = [sorted(set(torch.as_tensor(ro.group_ids)[A.mixed_groups(s, ro.group_ids)].tolist()))
                     for ro, s, _ in parts]
            have, seen = sum(len(g) for g in mixed), sum(len(set(ro.group_ids)) for ro, _, _ in parts)
            if have >= want or rounds >= cap:
                break
            rounds += 1
            k = A.prompts_to_refill(have, want, have / seen if have else None, max_prompts=4 * want)
            gen = torch.Generator().manual_seed(self.cfg.trainer.seed * 7919 + self.step * 104_729 + rounds * 131
                                                + self.rank * 1_000_003)
            extra = [self.train_examples[i] for i in torch.randint(len(self.train_examples), (k,), generator=gen)]
            parts.append(self._generate(extra, rounds, timer)[:3])
        all_scores, all_correct = torch.cat([s for _, s, _ in parts]), torch.cat([c for _, _, c in parts])
        info = {**info, "reward/mean": float(all_scores.mean()), "accuracy": float(all_correct.mean()),
                "dapo/rounds": float(rounds), "dapo/mixed_groups": have / seen, "dapo/batch_fill": min(have, want) / want}
        if have == 0:  # nothing mixed within the cap: the first round's batch (all advantages 0)
            return rollout, scores, correct, info
        kept, left = [], want
        for (ro, s, c), groups in zip(parts, mixed):
            groups = groups[:left]
            left -= len(groups)
            if groups:
                sub = ro.take_groups(groups)
                rows = [i for g in groups for i, gi in enumerate(ro.group_ids) if gi == g]
                kept.append((sub, s[rows], c[rows]))
        out = Rollout.concat([ro for ro, _, _ in kept])
        return out, torch.cat([s for _, s, _ in kept]), torch.cat([c for _, _, c in kept]), info

    def _pair_rollout(self, pairs: list) -> tuple:
        """Offline pairs as a rollout: one group per pair, (chosen, rejected) scored (1, 0), so the
        pairwise rule pairs exactly them. The prompt is chat-encoded like a training prompt (with
        ``data.system_prompt``); each completion gets the tokenizer's EOS and is cut to
        ``rollout.max_new_tokens`` (then marked unfinished). Sampler log-probs are unknown (0)."""
        from rlvr.data import Example, encode_prompt

        tok, budget, system = self.tokenizer, self.cfg.rollout.max_new_tokens, self.cfg.data.system_prompt
        ro = Rollout([], [], [], [], [], [])
        for g, pair in enumerate(pairs):
            chat = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": pair.prompt}]
            prompt = encode_prompt(tok, Example(pair.where, chat, None, "pairs", ""))
            for text in (pair.chosen, pair.rejected):
                ids = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
                ro.prompt_ids.append(prompt)
                ro.response_ids.append(ids[:budget])
                ro.logprobs.append([0.0] * len(ids[:budget]))
                ro.finished.append(len(ids) <= budget)
                ro.group_ids.append(g)
                ro.texts.append(text)
        scores = torch.tensor([1.0, 0.0] * len(pairs))
        return ro, scores, scores.clone(), {}

    def _learn(self, batch: dict, scores: torch.Tensor, loss_mask: torch.Tensor, timer: PhaseTimer) -> dict[str, Any]:
        """Old/ref log-probs and values, token rewards, advantages, then the update.

        ``batch["response_mask"]`` marks every response token (the estimator sees every sample's
        score); ``loss_mask`` marks the tokens that are trained on (overlong masking removes
        truncated samples from the losses only)."""
        p, t, a = self.preset, self.cfg.trainer, self.cfg.algorithm
        resp = batch["response_mask"]
        N, R = resp.shape
        m: dict[str, Any] = {}
        with timer("logprob"):
            if t.reuse_sampler_logprobs:
                old_logp = batch["sampler_logprobs"] * resp
            else:
                old_logp = self._no_grad_pass(lambda s: self._logprobs(self.policy, batch, s), N)
                m.update(logprob_mismatch(batch["sampler_logprobs"], old_logp, resp))
            ref_logp = None
            if self.reference is not None:
                ref_logp = self._no_grad_pass(lambda s: self._logprobs(self.reference, batch, s), N)
            values = None
            if self.critic is not None:
                self.critic.eval()
                values = self._no_grad_pass(lambda s: self._values(batch, s), N) * resp
                if self.step == 0 and a.value_init_from_returns and not self._critic_initialised:
                    # a value head that starts at the mean outcome, not at 0: the first advantages
                    # then already have a baseline (the head's bias is the value of every state)
                    head = self.critic if self.shared_critic else self.critic.head
                    with torch.no_grad():
                        head.linear.bias.add_(self._value_init_shift(scores, values, resp))
                    values = self._no_grad_pass(lambda s: self._values(batch, s), N) * resp
                    self._critic_initialised = True
        # token rewards: the verifier score at the last response token, KL penalty on every token
        token_rewards = A.outcome_rewards(scores.to(resp.device), resp) * resp
        if ref_logp is not None:
            kl_tok = A.kl_estimate(old_logp, ref_logp, p.kl_kind, clamp=a.kl_clamp) * resp
            m["kl/ref"] = self._global_mean(kl_tok, loss_mask)
            if p.kl_placement == "reward":
                token_rewards = token_rewards - self.kl_ctl.value * kl_tok
        adv, returns = self._advantages(token_rewards, resp, values, batch["group_ids"])
        adv = adv * loss_mask
        valid = adv[loss_mask > 0]
        m["adv/mean"] = float(valid.mean()) if valid.numel() else 0.0
        m["adv/std"] = float(valid.std()) if valid.numel() > 1 else 0.0
        tis = None  # importance weights for the rollout/trainer mismatch: token-level TIS, sequence-level IS
        if a.tis_cap is not None:
            tis = A.truncated_is_weights(old_logp, batch["sampler_logprobs"], loss_mask, a.tis_cap)
        if p.seq_is is not None:
            w = A.sequence_is_weights(old_logp, batch["sampler_logprobs"], loss_mask, p.seq_is,
                                      high=p.seq_is_high, low=p.seq_is_low)
            tis = w if tis is None else tis * w
        warmup = self.step < p.value_warmup_steps and values is not None
        with timer("update"):
            m.update(self._update(UpdateInputs(batch, loss_mask, old_logp, ref_logp, adv, values, returns, tis,
                                               scores.to(resp.device), policy=not warmup)))
        if warmup:
            m["value/warmup"] = 1.0
        if values is not None:
            m["value/explained_variance"] = float(A.explained_variance(values, returns, loss_mask))
            m["value/mean"] = _masked_mean(values, loss_mask)
        if p.adaptive_kl and "kl/ref" in m:  # Ziegler et al. 2019: beta tracks the KL to the reference
            self.kl_ctl.update(m["kl/ref"], N)
        if p.kl_old_target is not None:  # PPO-KL (Schulman 2017 sec. 4, eq. 8) doubling rule, on the KL after the update
            kl_old = self._process_mean(m.get("kl/old_after", float("nan")))
            if not math.isnan(kl_old):
                self.kl_old_ctl.update(kl_old)
        m["kl/coef"] = self.kl_ctl.value
        if p.kl_old_coef:
            m["kl/old_coef"] = self.kl_old_ctl.value
        return m

    def _update(self, inputs: UpdateInputs) -> dict[str, Any]:
        """Run the preset's update rule (``rlvr.updates``) on the batch.

        Dropout stays off in every pass (the ratio pi/pi_old must be exactly 1 on-policy); the models
        go back to eval mode afterwards."""
        _train_without_dropout(self.policy)
        if self.critic is not None:
            _train_without_dropout(self.critic)
        try:
            return self.update_rule(self, inputs)
        finally:
            self.policy.eval()
            if self.critic is not None:
                self.critic.eval()

    def _apply_gradients(self, finite: bool, stats: dict[str, list[float]], *, policy: bool = True) -> bool:
        """All-reduce, clip and step; skip the step (and count it) when the loss was not finite, or
        when a total gradient norm (policy or critic) is not: a finite loss can still give an inf
        gradient, which clipping would turn into NaN weights. Both checks are agreed by every process.

        An FSDP2-sharded model's gradients were already averaged over processes (reduce-scattered
        in the backward pass), the same average the all-reduce takes; they are clipped by the
        global norm over the shards."""
        if not self._agreed(finite):
            return self._skip_step(stats, "nonfinite_loss", "loss")
        t = self.cfg.trainer
        stepping, norms = [], []
        for model, opt, key in ((self.policy, self.optimizer, "grad_norm"),
                                (self.critic, self.critic_optimizer, "value/grad_norm")):
            if model is None or (model is self.policy and not policy):  # value warm-up: the critic alone
                continue
            params = [q for q in model.parameters() if q.requires_grad]
            if self.world > 1 and id(model) not in self._roots:
                for q in params:
                    if q.grad is None:
                        q.grad = torch.zeros_like(q)
                    torch.distributed.all_reduce(q.grad)
                    q.grad /= self.world
            norm = torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
            if hasattr(norm, "full_tensor"):  # a DTensor (sharded gradients): the global norm
                norm = norm.full_tensor()
            stepping.append((opt, key))
            norms.append(float(norm))
        if not self._agreed(all(math.isfinite(n) for n in norms)):
            return self._skip_step(stats, "nonfinite_grad", "gradient norm")
        self.bad_steps = 0
        for (opt, key), norm in zip(stepping, norms):
            stats.setdefault(key, []).append(norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return True

    def _agreed(self, ok: bool) -> bool:
        """``ok`` on every process (a MIN all-reduce): all of them skip a step, or none does."""
        if self.world > 1:
            flag = torch.tensor([1.0 if ok else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            ok = bool(flag.item() > 0)
        return ok

    def _skip_step(self, stats: dict[str, list[float]], key: str, what: str) -> bool:
        """Drop the gradients, count a bad step (``key`` = 1 in the step's metrics) and stop after
        ``trainer.max_bad_steps`` in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.critic_optimizer is not None:
            self.critic_optimizer.zero_grad(set_to_none=True)
        self.bad_steps += 1
        stats.setdefault(key, []).append(1.0)
        if self.is_main:
            print(f"rlvr train: step {self.step + 1}: non-finite {what}; optimizer step skipped "
                  f"({self.bad_steps} in a row, stopping at trainer.max_bad_steps={self.cfg.trainer.max_bad_steps})")
        if self.bad_steps >= self.cfg.trainer.max_bad_steps:
            raise NonFiniteLossError(
                f"{self.bad_steps} consecutive non-finite losses or gradients at step {self.step}; stopping "
                f"(metrics so far are in {self.run_dir / 'metrics.jsonl'}; lower trainer.lr or check rewards)")
        return False

    def _finish_lr_step(self) -> None:
        # The schedules follow trainer steps, also those where an optimizer did not step (a skipped
        # non-finite step; TRPO, whose policy step is not the optimizer's): torch's warning about a
        # scheduler stepping first does not apply.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()
            if self.critic_scheduler is not None:
                self.critic_scheduler.step()

    # ------------------------------------------------------------------ diagnostics
    def _gradient_variance(self, batch: dict, scores: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        """Relative variance of the policy-gradient estimate on this batch under each baseline.

        The batch's groups are split into K disjoint parts; for each baseline b the vanilla PG
        gradient g_k = grad of -(1/|T_k|) sum_t A^b_t log pi(a_t|s_t) is computed on part k, and
        ``A.gradient_variance`` reports tr Var[g] / (K ||mean g||^2): the noise-to-signal ratio of
        the full-batch estimate. Baselines: none (A = R), group (A = R - group mean), critic (GAE
        with the current critic; PPO-family presets only).
        """
        N = mask.shape[0]
        gid = batch["group_ids"]
        uniq = torch.unique(gid)
        K = min(self.cfg.trainer.gradvar_splits, len(uniq))
        if K < 2 or mask.sum() == 0:
            return {}
        s = scores.to(mask.device)
        baselines = {"none": s[:, None] * mask,
                     "group": A.compute_group_advantages(s, gid, "dr_grpo")[:, None] * mask}
        if self.critic is not None:
            values = self._no_grad_pass(lambda r: self._values(batch, r), N) * mask
            rewards = A.outcome_rewards(s, batch["response_mask"]) * mask
            baselines["critic"] = A.compute_gae(rewards, values, mask, self.preset.gamma, self.preset.lam)[0]
        params = [q for q in self.policy.parameters() if q.requires_grad]
        parts = torch.chunk(uniq, K)
        out = {}
        for name, adv in baselines.items():
            grads = []
            for part in parts:
                rows = torch.isin(gid, part).nonzero().squeeze(1)
                for q in params:
                    q.grad = None
                denom = mask[rows].sum().clamp(min=1)
                for u in range(0, len(rows), self.cfg.trainer.micro_batch_size):
                    r = rows[u:u + self.cfg.trainer.micro_batch_size]
                    logp = self._logprobs(self.policy, batch, r)
                    (-(adv[r] * logp * mask[r]).sum() / denom).backward()
                grads.append(torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).flatten()
                                        for q in params]).float().cpu())
            g = A.gradient_variance(grads)
            out[f"gradvar/{name}"] = float(g["relative"])
        for q in params:
            q.grad = None
        return out

    # ------------------------------------------------------------------ agreement across processes
    # Every branch that changes how many collective calls a process makes (update or skip, how many
    # rows and so mini-batches, stop) is taken on values that all processes share; statistics that
    # define the update (advantage baselines, loss normalisers) are those of the global batch.
    def _gather_floats(self, values: list[float]) -> torch.Tensor:
        """[world, len(values)] float64: every process's ``values`` (one all-gather)."""
        x = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world == 1:
            return x[None]
        out = [torch.empty_like(x) for _ in range(self.world)]
        torch.distributed.all_gather(out, x)
        return torch.stack(out).cpu()

    def _gather_objects(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def _learn_rows(self, keep: torch.Tensor, rows_per_process: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows to train on ([n] indices) and which are real ([n] 1.0/0.0), n = ``rows_per_process``.

        Every process trains on the same number of rows, the largest kept count, so all run the
        same mini-batches and optimizer steps. A process that kept fewer pads with rows it filtered
        out (repeated if it has too few); padding has no loss tokens and no part in the batch
        statistics (``_advantages``)."""
        kept = keep.nonzero().squeeze(1)
        src = torch.cat([(~keep).nonzero().squeeze(1), kept])
        need = max(0, rows_per_process - len(kept))
        pad = src[torch.arange(need) % len(src)] if need else src[:0]
        rows = torch.cat([kept, pad]).to(self.device)
        active = torch.cat([torch.ones(len(kept)), torch.zeros(len(pad))]).to(self.device)
        return rows, active

    def _global_mean(self, x: torch.Tensor, weight: torch.Tensor) -> float:
        """sum(w x) / sum(w) over the rows of every process (NaN when the weights sum to 0)."""
        w = weight.to(x.device)
        s, n = self._gather_floats([float((x * w).sum()), float(w.sum())]).sum(0).tolist()
        return s / n if n > 0 else float("nan")

    def _process_mean(self, value: float) -> float:
        """Mean of one number over processes, ignoring NaN (a process that has no value)."""
        col = self._gather_floats([value])[:, 0]
        return float(col.nanmean())

    def _value_init_shift(self, scores: torch.Tensor, values: torch.Tensor, resp: torch.Tensor) -> float:
        """mean outcome - mean value over the real rows of every process: a critic initialised from
        the returns starts identical on every process."""
        act = self._active_rows if self._active_rows is not None else torch.ones(len(scores), device=resp.device)
        return (self._global_mean(scores.float(), act.to(scores.device))
                - self._global_mean(values, resp * act[:, None]))

    def _advantages(self, rewards: torch.Tensor, resp: torch.Tensor, values: torch.Tensor | None,
                    group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The preset's (advantages, returns) [N, R] for this process's rows, computed on the
        global batch: with several processes the real rows of all are gathered in rank order (group
        ids made distinct, responses padded to the longest), so batch-level statistics (batch_mean,
        reinforce_pp, whitening) are exactly those one process computes on the same data."""
        p = self.preset
        if self.world == 1:
            return p.advantages(rewards, resp, values=values, group_ids=group_ids)
        act = self._active_rows.bool()
        parts = self._gather_objects([x.detach().cpu() if x is not None else None
                                      for x in (rewards, resp, values, group_ids, act)])
        R = max(q[0].shape[1] for q in parts)
        padR = lambda x: torch.nn.functional.pad(x, (0, R - x.shape[1]))  # noqa: E731
        offset = 1 + max(int(q[3].max()) for q in parts)
        cat = lambda i: torch.cat([padR(q[i]) if q[i].dim() == 2 else q[i] for q in parts])  # noqa: E731
        rew, msk, ids = cat(0), cat(1), torch.cat([q[3] + r * offset for r, q in enumerate(parts)])
        vals = cat(2) if values is not None else None
        real = cat(4)
        adv, ret = p.advantages(rew[real], msk[real], values=None if vals is None else vals[real],
                                group_ids=ids[real])
        full_adv, full_ret = torch.zeros_like(rew), torch.zeros_like(rew)
        full_adv[real], full_ret[real] = adv.to(rew.dtype), ret.to(rew.dtype)
        start = sum(len(q[4]) for q in parts[:self.rank])
        N, Rl = rewards.shape
        return (full_adv[start:start + N, :Rl].to(rewards.device),
                full_ret[start:start + N, :Rl].to(rewards.device))

    def _minibatch_totals(self, mb_mask: torch.Tensor, norm_len: int) -> dict[str, Any]:
        """Loss normalisers of one mini-batch [n, R]: tokens and sequences with a loss token.

        With W processes these are the global counts divided by W: each process's loss is then W x
        its share of the global mini-batch loss, and the averaged all-reduce in
        ``_apply_gradients`` gives the gradient of the global token mean (not a mean of
        per-process means), exactly as one process would on the union."""
        n_tok, n_seq = mb_mask.sum(), (mb_mask.sum(1) > 0).sum()
        if self.world == 1:
            return {"num_tokens": n_tok.clamp(min=1), "num_seqs": n_seq.clamp(min=1), "norm_len": norm_len}
        tok, seq = self._gather_floats([float(n_tok), float(n_seq)]).sum(0).tolist()
        return {"num_tokens": max(tok, 1.0) / self.world, "num_seqs": max(seq, 1.0) / self.world,
                "norm_len": norm_len}

    # ------------------------------------------------------------------ metrics / eval / checkpoints
    def _reduce(self, m: dict[str, Any]) -> dict[str, Any]:
        """Average metrics over processes (max for *_max, */max and memory, min for */min), over the union of the
        processes' keys: a key a process lacks counts as missing there (NaN-mean)."""
        if self.world == 1:
            return m
        mine = {k: float(v) for k, v in m.items() if isinstance(v, (int, float))}
        parts = self._gather_objects(mine)
        for k in sorted(set().union(*parts)):
            vals = [q[k] for q in parts if k in q and not math.isnan(q[k])]
            if not vals:
                m[k] = float("nan")
            elif k.endswith(("_max", "/max")) or k.startswith("memory"):
                m[k] = max(vals)
            elif k.endswith("/min"):
                m[k] = min(vals)
            else:
                m[k] = sum(vals) / len(vals)
        return m

    def evaluate(self, final: bool = False) -> dict[str, Any] | None:
        """Run the ``evaluator`` given at construction on the main process: ``evaluator(trainer,
        final) -> metrics`` (``rlvr train`` passes the evals harness: greedy pass@1 on the held-out
        items; the final eval also samples ``trainer.final_eval_samples`` per item and writes
        ``eval_items.jsonl``). None without held-out items or without an evaluator."""
        if self.eval_examples is None or self.evaluator is None:
            return None
        # with FSDP2 the evaluator samples from the policy on process 0 alone: gathered (whatever
        # the engine, the harness's own sampler runs the policy's module)
        with self._sampling_weights():
            res = self.evaluator(self, final) if self.is_main else None
        self.accelerator.wait_for_everyone()
        return res

    def _state(self, elapsed: float, policy_full: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Everything a resume needs. With FSDP2 the sharded parts are gathered (``policy_full``: the
        policy's full state dict, already gathered by :meth:`save`): a collective, the same layout
        as one process's, complete on process 0 only."""
        if self.fsdp:
            from rlvr.fsdp import full_model_state, full_optimizer_state

            names = [n for n, q in self.policy.named_parameters() if q.requires_grad]
            policy = {n: policy_full[n] for n in names if n in policy_full}
            optimizer = full_optimizer_state(self.policy, self.optimizer)
            critic = critic_opt = None
            if self.critic is not None and id(self.critic) in self._roots:
                critic, critic_opt = full_model_state(self.critic), full_optimizer_state(self.critic, self.critic_optimizer)
            elif self.critic is not None:
                critic, critic_opt = self.critic.state_dict(), self.critic_optimizer.state_dict()
        else:
            policy, optimizer = trainable_state(self.policy), self.optimizer.state_dict()
            critic = None if self.critic is None else self.critic.state_dict()
            critic_opt = None if self.critic_optimizer is None else self.critic_optimizer.state_dict()
        return {
            "step": self.step, "samples": self.samples, "tokens": self.tokens, "elapsed_s": elapsed,
            "train_s": self.train_s, "train_cpu_s": self.train_cpu_s,
            "policy": policy, "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict(),
            "critic": critic,
            "critic_optimizer": critic_opt,
            "critic_scheduler": None if self.critic_scheduler is None else self.critic_scheduler.state_dict(),
            "kl_coef": self.kl_ctl.value, "kl_old_coef": self.kl_old_ctl.value, "rng": rng_state(), "bad_steps": self.bad_steps,
            "preset": asdict(self.preset), "eval_pending": self._eval_pending,
        }

    def save(self, elapsed: float) -> Path | None:
        """Write ``checkpoints/step_<N>`` (process 0). With FSDP2 every process first takes part in
        gathering the full (consolidated) state, so the checkpoint is the one a single process
        writes: ``rlvr eval`` and a resume with any number of processes read it."""
        path = None
        if self.fsdp:
            from rlvr.fsdp import full_model_state

            full = full_model_state(self.policy)
            state = self._state(elapsed, full)
            if self.is_main:
                path = save_checkpoint(self.run_dir, self.step, state, self.policy, self.tokenizer, weights=full)
            del full, state
        elif self.is_main:
            path = save_checkpoint(self.run_dir, self.step, self._state(elapsed), self.policy, self.tokenizer)
        self.accelerator.wait_for_everyone()
        return path

    def _restore(self, ckpt: Path) -> None:
        st = load_state(ckpt)
        unexpected = sorted(set(st["policy"]) - {n for n, _ in self.policy.named_parameters()})
        if unexpected:
            raise ConfigError(f"checkpoint {ckpt} does not match model.name/lora settings: "
                              f"unexpected keys {unexpected[:3]}")
        if self.fsdp:  # every process reads the full state and keeps its own slices
            from rlvr.fsdp import load_model_state, load_optimizer_state

            load_model_state(self.policy, st["policy"], strict=False)
            load_optimizer_state(self.policy, self.optimizer, st["optimizer"])
        else:
            self.policy.load_state_dict(st["policy"], strict=False)
            self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        if self.critic is not None and st["critic"] is not None:
            self._critic_initialised = True
            if id(self.critic) in self._roots:
                load_model_state(self.critic, st["critic"])
                load_optimizer_state(self.critic, self.critic_optimizer, st["critic_optimizer"])
            else:
                self.critic.load_state_dict(st["critic"])
                self.critic_optimizer.load_state_dict(st["critic_optimizer"])
            self.critic_scheduler.load_state_dict(st["critic_scheduler"])
        self.kl_ctl.value, self.kl_old_ctl.value = st["kl_coef"], st["kl_old_coef"]
        self.step, self.samples, self.tokens = st["step"], st["samples"], st["tokens"]
        self.elapsed_offset, self.bad_steps = st["elapsed_s"], st["bad_steps"]
        self.train_s = st.get("train_s", st["elapsed_s"])
        self.train_cpu_s = st.get("train_cpu_s", 0.0)
        self._eval_pending = bool(st.get("eval_pending", False))
        set_rng_state(st["rng"])
        self._trim_logs_after(self.step)
        if self.is_main:
            print(f"rlvr train: resumed from {ckpt} (step {self.step})")

    # the files of one attempt at a run: a fresh start moves them all to attempts/<k>/ together
    ATTEMPT_FILES = ("metrics.jsonl", "eval.jsonl", "summary.json", "metrics.jsonl.after_checkpoint",
                     "eval.jsonl.after_checkpoint", "tb", "checkpoints", "eval_items.jsonl", "provenance.json",
                     "config.yaml", "resume_forced.jsonl")

    def _lock_run_dir(self) -> None:
        """Process 0 holds the run directory's lock for this trainer's life (:mod:`rlvr.rundir`):
        a second trainer on the same directory is refused (on every process) naming the holder."""
        import weakref

        from rlvr.rundir import lock_run_dir

        self._release_lock: Callable[[], None] = lambda: None
        error = None
        if self.is_main:
            try:
                self._release_lock = lock_run_dir(self.run_dir)
            except RlvrError as e:
                error = e
        if self.world > 1:
            flag = torch.tensor([0.0 if error is None else 1.0], device=self.device)
            torch.distributed.broadcast(flag, src=0)
            if flag.item() and error is None:
                raise RlvrError(f"trainer.output_dir: {self.run_dir} is in use by another process (see process 0)")
        if error is not None:
            raise error
        weakref.finalize(self, self._release_lock)

    def _check_resume_settings(self, ckpt: Path, force: bool) -> dict[str, list[Any]]:
        """The settings that differ between the run's ``config.yaml`` and this config, as
        ``{key: [run's value, this value]}``; a resume may change only those that cannot change the
        run's path (:data:`RESUMABLE_SETTINGS`); any other difference is refused with the keys listed,
        unless ``force`` (then they are returned, to be recorded in ``resume_forced.jsonl``)."""
        import yaml

        from rlvr.config import settings_changed

        path = self.run_dir / "config.yaml"
        if not path.is_file():
            if self.is_main:
                print(f"rlvr train: {path} is missing; cannot check that the resumed run keeps its settings")
            return {}
        try:
            before = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({getattr(e, 'problem', e)}); cannot check the resume") from None
        changed = settings_changed(before, self.cfg)
        t = self.cfg.trainer
        allowed = set(RESUMABLE_SETTINGS)
        if t.lr_schedule != "constant" or t.warmup_steps:
            allowed.discard("trainer.total_steps")  # it sets the learning rate of every later step
        refused = {k: v for k, v in changed.items() if k not in allowed}
        if refused and not force:
            listed = ", ".join(f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in refused.items())
            raise ConfigError(f"--resume: {self.run_dir} was trained with other settings ({listed}); only "
                              "budgets, eval/checkpoint cadence and logging may change on a resume (use another "
                              "trainer.output_dir, or --force-resume to continue anyway)")
        return refused

    def _record_forced_resume(self, ckpt: Path, changes: dict[str, list[Any]]) -> None:
        """Append what a forced resume changed to ``resume_forced.jsonl`` (the run is not one config)."""
        import json
        from datetime import datetime, timezone

        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        row = {"step": self.step, "checkpoint": str(ckpt), "time": datetime.now(timezone.utc).isoformat(),
               "changed": changes}
        with open(self.run_dir / "resume_forced.jsonl", "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        print(f"rlvr train: resume forced with changed settings {', '.join(changes)} "
              f"(recorded in {self.run_dir / 'resume_forced.jsonl'})")

    def _set_aside_earlier_attempt(self) -> None:
        """A fresh start in a directory that already has an attempt (a run stopped before its first
        checkpoint, a finished one being redone, a start without ``--resume``): move its files, its
        checkpoints among them, to ``attempts/<k>/``, so that the new ``metrics.jsonl`` never
        continues an older attempt's steps and neither ``--resume`` nor ``rlvr eval RUN_DIR`` picks
        up the older attempt's checkpoints."""
        if not self.is_main:
            return
        names = self.ATTEMPT_FILES
        found = [self.run_dir / n for n in names if (self.run_dir / n).exists()]
        if not found:
            return
        k = 1
        while (self.run_dir / "attempts" / str(k)).exists():
            k += 1
        dest = self.run_dir / "attempts" / str(k)
        dest.mkdir(parents=True)
        for f in found:
            f.rename(dest / f.name)
        print(f"rlvr train: starting fresh; the earlier attempt's files ({', '.join(f.name for f in found)}) "
              f"moved to {dest}")

    def _trim_logs_after(self, step: int) -> None:
        """Steps logged after the checkpoint will be redone: move their lines aside (not deleted)."""
        import json

        if not self.is_main:
            return
        for name in ("metrics.jsonl", "eval.jsonl"):
            path = self.run_dir / name
            if not path.is_file():
                continue
            keep, moved = [], []
            for line in path.read_text().splitlines():
                try:
                    row_step = json.loads(line).get("step", 0)
                except json.JSONDecodeError:
                    moved.append(line)
                    continue
                (keep if row_step <= step else moved).append(line)
            if moved:
                with open(path.with_suffix(".jsonl.after_checkpoint"), "a") as f:
                    f.write("\n".join(moved) + "\n")
                path.write_text("".join(line + "\n" for line in keep))

    def _stop_reason(self, elapsed: float) -> str | None:
        """Why to stop now, the same answer on every process (one all-gather): a signal received by
        any process first, then the first budget reached, on global counts and the slowest
        process's clock."""
        t = self.cfg.trainer
        sig = self._stop_signal or 0
        if self.world > 1:
            g = self._gather_floats([float(sig), float(elapsed)])
            sig, elapsed = int(g[:, 0].max()), float(g[:, 1].max())
        if sig:
            return signal.Signals(sig).name
        if self.step >= t.total_steps:
            return "total_steps"
        if t.max_samples is not None and self.samples >= t.max_samples:
            return "max_samples"
        if t.max_tokens is not None and self.tokens >= t.max_tokens:
            return "max_tokens"
        if t.max_time_s is not None and elapsed >= t.max_time_s:
            return "max_time_s"
        return None

    def close(self) -> None:
        """Shut the rollout engine down (an engine in other processes stops them; the embedded engine
        has nothing to stop). Metrics and checkpoints are already on disk; the trainer cannot sample
        afterwards."""
        try:
            close = getattr(self.engine, "close", None)  # the embedded engine has none
            if callable(close):
                close()
        finally:
            self._release_lock()

    def train(self, max_steps: int | None = None) -> dict[str, Any]:
        """Run until a budget is reached (or ``max_steps`` more steps, or SIGINT/SIGTERM)."""
        t = self.cfg.trainer
        logger = MetricsLogger(self.run_dir, tensorboard=t.tensorboard, wandb_project=t.wandb_project,
                               wandb_config=self.cfg.to_dict(), progress_total=t.total_steps,
                               progress=t.progress, enabled=self.is_main)
        old_handlers = {}

        def _on_signal(signum, frame):
            # the first signal stops every process at the next step boundary, with a checkpoint; a
            # second one stops this process now (its peers' next collective then fails, within
            # trainer.dist_timeout_s at most, instead of waiting for it)
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old_handlers[sig] = signal.signal(sig, _on_signal)
            except ValueError:  # not in the main thread
                pass
        t0 = time.perf_counter() - self.elapsed_offset
        done = 0
        reason = None
        try:
            if t.eval_at_start and self.step == 0:
                self._log_eval(logger, 0.0)
            elif self._eval_pending:  # stopped at a step due an eval before it ran: run it now
                self._log_eval(logger, self.elapsed_offset)
            self._eval_pending = False
            while True:
                elapsed = time.perf_counter() - t0
                reason = self._stop_reason(elapsed)
                if reason or (max_steps is not None and done >= max_steps):
                    break
                m = self.train_step()
                self._finish_lr_step()
                done += 1
                elapsed = time.perf_counter() - t0
                self.train_s += m["time/step"] - m.get("time/gradvar", 0.0)
                self.train_cpu_s += m["time/step_cpu"] - m.get("time/gradvar_cpu", 0.0)
                m.update(step=self.step, samples=self.samples, tokens=self.tokens, elapsed_s=elapsed,
                         train_s=self.train_s, train_cpu_s=self.train_cpu_s)
                logger.log(m)
                last = self._stop_reason(time.perf_counter() - t0) is not None
                if t.eval_every and self.step % t.eval_every == 0 and not last:  # the final eval covers the last step
                    self._log_eval(logger, time.perf_counter() - t0)
                if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                    self.save(time.perf_counter() - t0)
                # a signal is acted on at the top of the loop, by every process at the same step
            elapsed = time.perf_counter() - t0
            # stopped before the run's end at a step due an eval (skipped above, as the final eval
            # would cover it): the checkpoint says so, and the resumed run evaluates first
            self._eval_pending = bool((reason is None or reason in ("SIGINT", "SIGTERM")) and t.eval_every
                                      and self.step % t.eval_every == 0 and done > 0
                                      and (self._last_eval or {}).get("step") != self.step)
            self.save(elapsed)
            summary: dict[str, Any] = {"preset": self.preset.name, "seed": t.seed, "steps": self.step,
                                       "samples": self.samples, "tokens": self.tokens, "stop_reason": reason}
            if reason is None or reason in ("SIGINT", "SIGTERM"):
                # interrupted (or a partial max_steps call): checkpointed, but the run is not finished,
                # so no summary.json (`rlvr compare` treats its presence as "done")
                summary["stop_reason"] = reason or "max_steps"
                if self.is_main and reason:
                    print(f"rlvr train: stopped by {reason} at step {self.step}; "
                          f"continue with --resume (checkpoint in {self.run_dir / 'checkpoints'})")
                return summary
            if self.eval_examples is not None:
                ev = self._log_eval(logger, elapsed, final=True)
                summary["final_eval/pass@1"] = ev.get("eval/pass@1") if ev else None
                summary.update({f"final_eval/{k[5:]}": v for k, v in (ev or {}).items()
                                if k.startswith("eval/sampled/") or k in ("eval/timeouts", "eval/crashes", "eval/violations")})
            summary["elapsed_s"] = time.perf_counter() - t0
            summary["peak_memory_gb"] = _peak_memory_gb(self.device)
            if self.is_main:
                import json

                (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            return summary
        finally:
            logger.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)

    def _log_eval(self, logger: MetricsLogger, elapsed: float, final: bool = False) -> dict[str, Any] | None:
        res = self.evaluate(final=final)
        if res is None:
            return None
        row = {"step": self.step, "samples": self.samples, "elapsed_s": elapsed, "train_s": self.train_s,
               "train_cpu_s": self.train_cpu_s,
               "eval/pass@1": res.get("greedy/pass@1", res["pass@1"]), "eval/n": res["n"]}
        row.update({f"eval/{k}": res[k] for k in ("timeouts", "crashes", "violations") if k in res})
        row.update({f"eval/{k}": v for k, v in res.items()
                    if k.startswith("sampled/") and isinstance(v, (int, float))})
        self._last_eval = logger.log(row, stream="eval")
        return self._last_eval
