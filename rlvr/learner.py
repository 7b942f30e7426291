"""The learner: the models, their optimizers and every pass through them.

It owns the policy (with its tokenizer), the critic (a separate value model or a value head on the
policy's trunk), the frozen reference, their optimizers and learning-rate schedules, the KL
coefficients, FSDP2 sharding, and the frozen-prefix fast path (with only the top k blocks trainable,
every pass starts from the hidden states entering block L-k). Update rules (:mod:`rlvr.updates`)
move the models through this public interface alone:

    logprobs(model, batch, rows, entropy=, hidden=)   response log-probs [n, R] (+ entropy, hidden)
    values(batch, rows)                                critic values [n, R]
    no_grad_pass(fn, N)                                fn over micro-batches of N rows, no graph
    minibatch_totals(mask, norm_len), global_mean(x, w)   global-batch normalisers and means
    apply_gradients(finite, stats, policy=)            agreed skip, all-reduce, clip, optimizer step
    skip_step(stats, key, what)                        drop the gradients, count a bad step
"""
from __future__ import annotations

import contextlib
import math
import os
import warnings
from typing import Any, Callable

import torch

from rlvr import algorithms as A
from rlvr.algorithms.presets import Preset
from rlvr.checkpoint import trainable_state
from rlvr.collective import Collective, register_teardown
from rlvr.config import Config
from rlvr.errors import ConfigError, RlvrError

# preset fields beyond the core that the learner and the update rules run (Preset.extensions())
EXTENSIONS = frozenset({"policy_loss", "update_rule", "lam_critic", "lam_length_alpha", "value_warmup_steps", "seq_is"})


class NonFiniteLossError(RlvrError):
    """Raised after ``trainer.max_bad_steps`` consecutive steps skipped for a non-finite loss or gradient norm."""


def train_without_dropout(model: torch.nn.Module) -> None:
    """Train mode (gradient checkpointing engages) with every dropout layer off: pi_old is taken
    without dropout, so the update must be too, or an on-policy ratio is not 1."""
    model.train()
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout) or type(mod).__name__.endswith("Dropout"):
            mod.eval()
        if isinstance(getattr(mod, "attention_dropout", None), float):  # functional dropout in attention
            mod.attention_dropout = 0.0


def resolve_fsdp(cfg: Config, preset: Preset, device: torch.device) -> bool:
    """``trainer.distributed`` resolved: "auto" follows accelerate's launch config (``accelerate
    launch --config_file recipes/accelerate/fsdp2.yaml`` sets ACCELERATE_USE_FSDP and
    FSDP_VERSION). FSDP2 with one process shards over a group of one (same code path). The update
    rule's declaration (:data:`rlvr.updates.NEEDS`) says whether it runs sharded."""
    from rlvr.updates import NEEDS

    t, m = cfg.trainer, cfg.model
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
    needs = NEEDS[preset.update_rule]
    if not needs.fsdp:
        raise ConfigError(f"algorithm.update_rule={preset.update_rule} is not supported with "
                          f"trainer.distributed=fsdp2 ({needs.fsdp_why}); use ddp")
    if t.gradvar_every:
        raise ConfigError("trainer.gradvar_every is not supported with trainer.distributed=fsdp2 (per-part "
                          "gradients would be averaged over processes); set it to 0 or use ddp")
    if not torch.distributed.is_initialized():  # one process: a group of one
        torch.distributed.init_process_group("gloo" if device.type == "cpu" else "nccl",
                                             store=torch.distributed.HashStore(), rank=0, world_size=1)
        register_teardown()  # its threads, too, must be done before the interpreter finalizes
    return True


class Learner:
    """Policy, critic and reference with their optimizers, built from a :class:`Config`."""

    def __init__(self, cfg: Config, preset: Preset, collective: Collective, *, fsdp: bool):
        self.cfg, self.preset, self.collective, self.fsdp = cfg, preset, collective, fsdp
        self.device = collective.device
        self.bad_steps = 0
        self.step = 0  # the trainer step being updated (the trainer sets it; messages name it)
        self.critic_initialised = False
        self._build_models()
        collective.broadcast_parameters([self.policy, self.critic, self.reference])
        self._shard_models()
        self._setup_frozen_prefix()
        if cfg.trainer.reuse_sampler_logprobs and next(self.policy.parameters()).dtype != torch.float32:
            raise ConfigError("trainer.reuse_sampler_logprobs needs a float32 policy (model.dtype=float32): in "
                              f"{next(self.policy.parameters()).dtype} the sampler's log-probs are not the "
                              "trainer's, so pi_old must be recomputed")
        self._build_optimizers()
        self.kl_ctl = A.make_kl_controller(preset)  # reference KL coefficient
        self.kl_old_ctl = A.make_old_kl_controller(preset)  # trust-region KL(pi_old || pi) coefficient

    @property
    def world(self) -> int:
        return self.collective.world

    # ------------------------------------------------------------------ models
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
            self._freeze_lower_layers(self.policy, m.trainable_layers)
        self.shared_critic = bool(self.preset.critic and m.critic_shared_trunk)
        self.critic = None
        if self.preset.critic:
            self.critic = build_critic(self.policy, shared_trunk=self.shared_critic).to(self.device)
        if self.critic is not None and m.trainable_layers is not None and not self.shared_critic:
            self._freeze_lower_layers(self.critic, m.trainable_layers, keep_prefixes=("value_head", "head"))
        self.reference = None
        if self.preset.needs_reference:
            self.reference = build_reference(self.policy).to(self.device)

    def _freeze_lower_layers(self, model: torch.nn.Module, k: int, keep_prefixes: tuple[str, ...] = ()) -> None:
        """Train only the top ``k`` transformer blocks and the final norm (and any LoRA/value head)."""
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

    def _shard_models(self) -> None:
        """``trainer.distributed=fsdp2``: shard policy, separate critic and reference (every process
        holds process 0's parameters by now); ``self._roots`` maps each to the root every pass goes
        through (:meth:`call`). A shared-trunk value head stays whole (its gradients all-reduced)."""
        self._roots: dict[int, torch.nn.Module] = {}
        if not self.fsdp:
            return
        from rlvr.fsdp import shard

        reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() != "false"
        for model in [self.policy, self.reference] + ([self.critic] if not self.shared_critic else []):
            if model is not None:
                self._roots[id(model)] = shard(model, self.device, reshard_after_forward=reshard)

    def is_sharded(self, model: torch.nn.Module) -> bool:
        return id(model) in self._roots

    def call(self, model: torch.nn.Module, fn: Callable, *args, **kwargs):
        """``fn(model, *args, **kwargs)``; for a sharded model inside its FSDP root's forward (which
        gathers the parameters outside the blocks and registers the gradient reduction)."""
        root = self._roots.get(id(model))
        return fn(model, *args, **kwargs) if root is None else root(*args, fn=fn, **kwargs)

    @property
    def sampling_model(self) -> torch.nn.Module:
        """The policy as a module to call (generate, probe): its FSDP root when sharded."""
        return self._roots.get(id(self.policy), self.policy)

    def sampling_weights(self, embedded: bool = True):
        """Context in which the policy's own module samples: with FSDP2 (and an ``embedded``
        engine) all of its units are gathered once (:func:`rlvr.fsdp.gathered`), so decoding, whose
        length differs between processes, makes no collective."""
        if not (self.fsdp and embedded):
            return contextlib.nullcontext()
        from rlvr.fsdp import gathered

        return gathered(self.sampling_model)

    @contextlib.contextmanager
    def training(self):
        """The models in train mode with dropout off (the ratio pi/pi_old must be exactly 1
        on-policy) for an update; back in eval mode afterwards."""
        train_without_dropout(self.policy)
        if self.critic is not None:
            train_without_dropout(self.critic)
        try:
            yield
        finally:
            self.policy.eval()
            if self.critic is not None:
                self.critic.eval()

    # ------------------------------------------------------------------ frozen prefix
    def _setup_frozen_prefix(self) -> None:
        """With only the top k of L blocks trainable, every pass over a batch can start from the
        hidden states entering block L-k (the frozen lower stack is computed once per step, or
        captured by the embedded engine while it samples). ``self.top_k`` None: full passes."""
        self.top_k = None
        self._prefix_checked = False
        k = self.cfg.model.trainable_layers
        if k is None or not self.cfg.trainer.frozen_prefix_cache:
            return
        from rlvr.models import block_list

        if k < len(block_list(self.policy)[2]):
            self.top_k = k

    def capture_block(self) -> int | None:
        """The block whose input an embedded engine can hand back while it samples (None: no fast path)."""
        if self.top_k is None:
            return None
        from rlvr.models import block_list

        return len(block_list(self.policy)[2]) - self.top_k

    def _boundary(self, batch: dict, rows):
        if self.top_k is None or "boundary_hidden" not in batch:
            return None
        return self.top_k, batch["boundary_hidden"][rows]

    def ensure_boundary(self, batch: dict) -> None:
        """Add ``boundary_hidden [N, T, H]`` to the batch (engine capture or one lower-stack pass),
        and on first use check that top-only passes reproduce full passes (else turn them off)."""
        if self.top_k is None:
            return
        from rlvr.models import boundary_hidden

        if "boundary_hidden" not in batch:
            mb, N = self.cfg.trainer.micro_batch_size, batch["input_ids"].shape[0]
            batch["boundary_hidden"] = torch.cat([
                self.call(self.policy, boundary_hidden, batch["input_ids"][i:i + mb], batch["attention_mask"][i:i + mb],
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
            warnings.warn(f"trainer.frozen_prefix_cache: top-block passes differ from full passes by {worst:.2g}; "
                          "using full passes", stacklevel=2)
            self.top_k = None
            batch.pop("boundary_hidden")

    def _forward_for_check(self, model, batch, rows, boundary):
        from rlvr.models import sequence_logprobs, sequence_values

        ids, attn = batch["input_ids"][rows], batch["attention_mask"][rows]
        R = batch["response_mask"].shape[1]
        if model is self.critic:
            return self.call(self.critic, sequence_values, ids, attn, R, boundary=boundary)
        return self.call(model, sequence_logprobs, ids, attn, R, boundary=boundary)

    # ------------------------------------------------------------------ forward passes
    def logprobs(self, model, batch: dict, rows: torch.Tensor | slice, *, entropy: bool = False,
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
        return self.call(model, sequence_logprobs, ids, attn, R, temperature=self.cfg.rollout.temperature,
                         chunk_size=chunk, return_entropy=entropy, return_hidden=hidden,
                         boundary=self._boundary(batch, rows))

    def values(self, batch: dict, rows) -> torch.Tensor:
        """Critic values [n, R]: a separate value model, or a head on the policy's own trunk."""
        if self.shared_critic:
            _, hidden = self.logprobs(self.policy, batch, rows, hidden=True)
            return self.critic(hidden)
        from rlvr.models import sequence_values

        R = batch["response_mask"].shape[1]
        return self.call(self.critic, sequence_values, batch["input_ids"][rows], batch["attention_mask"][rows], R,
                         boundary=self._boundary(batch, rows))

    @torch.no_grad()
    def no_grad_pass(self, fn: Callable[[slice], torch.Tensor], N: int) -> torch.Tensor:
        """``fn(rows)`` over micro-batches of ``trainer.micro_batch_size`` of N rows, concatenated."""
        mb = self.cfg.trainer.micro_batch_size
        return torch.cat([fn(slice(i, min(i + mb, N))) for i in range(0, N, mb)], 0)

    def old_passes(self, batch: dict, scores: torch.Tensor, active: torch.Tensor | None, step: int,
                   *, sampler_logprobs: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Before any update: (log pi_old, log pi_ref or None, values or None) [N, R], masked to the
        response. ``sampler_logprobs``: pi_old is the sampler's. On the first step a critic with
        ``algorithm.value_init_from_returns`` gets its head's bias shifted to the mean outcome of the
        global batch (the first advantages then already have a baseline)."""
        resp = batch["response_mask"]
        N = resp.shape[0]
        if sampler_logprobs:
            old_logp = batch["sampler_logprobs"] * resp
        else:
            old_logp = self.no_grad_pass(lambda s: self.logprobs(self.policy, batch, s), N)
        ref_logp = None
        if self.reference is not None:
            ref_logp = self.no_grad_pass(lambda s: self.logprobs(self.reference, batch, s), N)
        values = None
        if self.critic is not None:
            self.critic.eval()
            values = self.no_grad_pass(lambda s: self.values(batch, s), N) * resp
            if step == 0 and self.cfg.algorithm.value_init_from_returns and not self.critic_initialised:
                head = self.critic if self.shared_critic else self.critic.head
                act = active if active is not None else torch.ones(N, device=resp.device)
                shift = (self.collective.global_mean(scores.float(), act.to(scores.device))
                         - self.collective.global_mean(values, resp * act[:, None]))
                with torch.no_grad():
                    head.linear.bias.add_(shift)
                values = self.no_grad_pass(lambda s: self.values(batch, s), N) * resp
                self.critic_initialised = True
        return old_logp, ref_logp, values

    # ------------------------------------------------------------------ global-batch statistics
    def minibatch_totals(self, mb_mask: torch.Tensor, norm_len: int) -> dict[str, Any]:
        return self.collective.minibatch_totals(mb_mask, norm_len)

    def global_mean(self, x: torch.Tensor, weight: torch.Tensor) -> float:
        return self.collective.global_mean(x, weight)

    # ------------------------------------------------------------------ optimizers
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

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def apply_gradients(self, finite: bool, stats: dict[str, list[float]], *, policy: bool = True) -> bool:
        """All-reduce, clip and step; skip the step (and count it) when the loss was not finite, or
        when a total gradient norm (policy or critic) is not: a finite loss can still give an inf
        gradient, which clipping would turn into NaN weights. Both checks are agreed by every process.

        An FSDP2-sharded model's gradients were already averaged over processes (reduce-scattered
        in the backward pass), the same average the all-reduce takes; they are clipped by the
        global norm over the shards."""
        if not self.collective.agreed(finite):
            return self.skip_step(stats, "nonfinite_loss", "loss")
        stepping, norms = [], []
        for model, opt, key in ((self.policy, self.optimizer, "grad_norm"),
                                (self.critic, self.critic_optimizer, "value/grad_norm")):
            if model is None or (model is self.policy and not policy):  # value warm-up: the critic alone
                continue
            params = [q for q in model.parameters() if q.requires_grad]
            if not self.is_sharded(model):
                self.collective.average_gradients(params)
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.trainer.max_grad_norm)
            if hasattr(norm, "full_tensor"):  # a DTensor (sharded gradients): the global norm
                norm = norm.full_tensor()
            stepping.append((opt, key))
            norms.append(float(norm))
        if not self.collective.agreed(all(math.isfinite(n) for n in norms)):
            return self.skip_step(stats, "nonfinite_grad", "gradient norm")
        self.bad_steps = 0
        for (opt, key), norm in zip(stepping, norms):
            stats.setdefault(key, []).append(norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return True

    def skip_step(self, stats: dict[str, list[float]], key: str, what: str) -> bool:
        """Drop the gradients, count a bad step (``key`` = 1 in the step's metrics) and stop after
        ``trainer.max_bad_steps`` in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.critic_optimizer is not None:
            self.critic_optimizer.zero_grad(set_to_none=True)
        self.bad_steps += 1
        stats.setdefault(key, []).append(1.0)
        step, t = self.step, self.cfg.trainer
        if self.collective.rank == 0:
            print(f"rlvr train: step {step + 1}: non-finite {what}; optimizer step skipped "
                  f"({self.bad_steps} in a row, stopping at trainer.max_bad_steps={t.max_bad_steps})")
        if self.bad_steps >= t.max_bad_steps:
            raise NonFiniteLossError(
                f"{self.bad_steps} consecutive non-finite losses or gradients at step {step}; stopping "
                f"(metrics so far are in {t.output_dir}/metrics.jsonl; lower trainer.lr or check rewards)")
        return False

    def finish_lr_step(self) -> None:
        """Advance the schedules one trainer step. They follow trainer steps, also those where an
        optimizer did not step (a skipped non-finite step; a rule whose policy step is not the
        optimizer's): torch's warning about a scheduler stepping first does not apply."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()
            if self.critic_scheduler is not None:
                self.critic_scheduler.step()

    def update_kl_coefficients(self, m: dict[str, Any], n_samples: int) -> None:
        """After an update: an adaptive reference-KL coefficient tracks its target (Ziegler et al.
        2019), and the trust-region coefficient on KL(pi_old || pi) follows the doubling rule
        (Schulman et al. 2017, sec. 4, eq. 8) on the KL measured after the update."""
        p = self.preset
        if p.adaptive_kl and "kl/ref" in m:
            self.kl_ctl.update(m["kl/ref"], n_samples)
        if p.kl_old_target is not None:
            kl_old = self.collective.process_mean(m.get("kl/old_after", float("nan")))
            if not math.isnan(kl_old):
                self.kl_old_ctl.update(kl_old)
        m["kl/coef"] = self.kl_ctl.value
        if p.kl_old_coef:
            m["kl/old_coef"] = self.kl_old_ctl.value

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, policy_full: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Models, optimizers, schedules and KL coefficients. With FSDP2 the sharded parts are gathered
        (``policy_full``: the policy's full state dict, already gathered): a collective, the same
        layout as one process's, complete on process 0 only."""
        if self.fsdp:
            from rlvr.fsdp import full_model_state, full_optimizer_state

            names = [n for n, q in self.policy.named_parameters() if q.requires_grad]
            policy = {n: policy_full[n] for n in names if n in policy_full}
            optimizer = full_optimizer_state(self.policy, self.optimizer)
            critic = critic_opt = None
            if self.critic is not None and self.is_sharded(self.critic):
                critic, critic_opt = full_model_state(self.critic), full_optimizer_state(self.critic, self.critic_optimizer)
            elif self.critic is not None:
                critic, critic_opt = self.critic.state_dict(), self.critic_optimizer.state_dict()
        else:
            policy, optimizer = trainable_state(self.policy), self.optimizer.state_dict()
            critic = None if self.critic is None else self.critic.state_dict()
            critic_opt = None if self.critic_optimizer is None else self.critic_optimizer.state_dict()
        return {"policy": policy, "optimizer": optimizer, "scheduler": self.scheduler.state_dict(),
                "critic": critic, "critic_optimizer": critic_opt,
                "critic_scheduler": None if self.critic_scheduler is None else self.critic_scheduler.state_dict(),
                "kl_coef": self.kl_ctl.value, "kl_old_coef": self.kl_old_ctl.value, "bad_steps": self.bad_steps}

    def load_state_dict(self, st: dict[str, Any], where: str) -> None:
        """Restore what :meth:`state_dict` wrote (``where``: the checkpoint, for errors)."""
        unexpected = sorted(set(st["policy"]) - {n for n, _ in self.policy.named_parameters()})
        if unexpected:
            raise ConfigError(f"checkpoint {where} does not match model.name/lora settings: "
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
            self.critic_initialised = True
            if self.is_sharded(self.critic):
                load_model_state(self.critic, st["critic"])
                load_optimizer_state(self.critic, self.critic_optimizer, st["critic_optimizer"])
            else:
                self.critic.load_state_dict(st["critic"])
                self.critic_optimizer.load_state_dict(st["critic_optimizer"])
            self.critic_scheduler.load_state_dict(st["critic_scheduler"])
        self.kl_ctl.value, self.kl_old_ctl.value = st["kl_coef"], st["kl_old_coef"]
        self.bad_steps = st["bad_steps"]
