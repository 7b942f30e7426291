"""The RLVR training loop: the only module that knows the order of things.

One step, top to bottom (CleanRL style); each line is a call into the module that owns it::

    collect         prompts -> engine samples (n per prompt) -> verifier scores      rlvr.collect
                    (+ Monte-Carlo values of intermediate states, for estimators that take them)
    shape rewards   overlong penalty / mask, soft punishment, zero-variance groups  rlvr.shaping
    agree           global sample/token counts, rows every process trains on         rlvr.collective
    old passes      log pi_old, log pi_ref, critic values                            rlvr.learner
    advantages      token rewards (KL in the reward) -> the preset's estimator       rlvr.shaping, preset
    update          the preset's update rule on the learner                          rlvr.updates
    log             metrics, periodic eval, checkpoint                               rlvr.metrics, rlvr.rundir

Algorithms are data (:mod:`rlvr.algorithms.presets`): the loop never branches on an algorithm's
name, only on what a preset declares (a critic, Monte-Carlo values, its collection strategy, its
update rule's needs).

Distributed: under ``accelerate launch`` each process generates for its own slice of the prompts
(whole groups stay on one process, so group baselines are exact) and gradients are averaged with
an all-reduce before every optimizer step (``trainer.distributed=ddp``), or policy, critic and
reference are sharded with FSDP2 and their gradients reduce-scattered (``fsdp2``, :mod:`rlvr.fsdp`).
"""
from __future__ import annotations

import resource
import signal
import time
import weakref
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from rlvr import algorithms as A
from rlvr import collect, learner, shaping
from rlvr.algorithms.presets import Preset, get_preset
from rlvr.checkpoint import latest_checkpoint, load_state, rng_state, save_checkpoint, set_rng_state
from rlvr.collective import Collective
from rlvr.config import Config
from rlvr.errors import ConfigError
from rlvr.learner import Learner, NonFiniteLossError  # noqa: F401  (re-exported: callers catch it here)
from rlvr.metrics import MetricsLogger, PhaseTimer
from rlvr.rollout.consistency import logprob_mismatch
from rlvr.rundir import RunDir
from rlvr.stopping import EvalInterrupted, StopSignals
from rlvr.updates import UPDATES, UpdateInputs

# preset fields beyond the core that the loop's modules run (Preset.extensions())
SUPPORTED_EXTENSIONS = collect.EXTENSIONS | shaping.EXTENSIONS | learner.EXTENSIONS


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    n = mask.sum()
    return float((x * mask).sum() / n) if n > 0 else float("nan")


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


class Trainer:
    """Compose data, learner, engine, verifiers and algorithms according to a :class:`Config`."""

    def __init__(self, cfg: Config, *, resume: bool = False, force_resume: bool = False,
                 evaluator: Callable[[Trainer, bool], dict[str, Any] | None] | None = None):
        from datetime import timedelta

        from accelerate import Accelerator
        from accelerate.utils import InitProcessGroupKwargs, set_seed

        from rlvr.data import load_eval_examples, load_prompts
        from rlvr.scoring import check_reward

        self.cfg, t, d = cfg, cfg.trainer, cfg.data
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
        cpu = t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available())
        # a bounded wait in every collective: a dead or hung peer is an error, never a hang
        self.accelerator = Accelerator(cpu=cpu, kwargs_handlers=[
            InitProcessGroupKwargs(timeout=timedelta(seconds=t.dist_timeout_s))])
        self.device = self.accelerator.device
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.collective = Collective(self.world, self.rank, self.device)
        self.run_dir = Path(t.output_dir)
        self.rundir = RunDir(self.run_dir, self.is_main)
        fsdp = learner.resolve_fsdp(cfg, self.preset, self.device)
        set_seed(t.seed + self.rank)
        self.train_examples = load_prompts(d.train, split=d.train_split or "train", limit=d.train_limit,
                                           system_prompt=d.system_prompt, seed=t.seed, format=d.format,
                                           reference_column=d.reference_column)
        if not self.train_examples:
            raise ConfigError(f"data.train: '{d.train}' has no examples")
        self.pairs = None  # offline preference pairs (data.pairs): they replace sampling
        if d.pairs:
            from rlvr.pairs import load_preference_pairs

            self.pairs = load_preference_pairs(d.pairs)
        self.eval_examples = load_eval_examples(cfg) if d.eval else None
        if d.eval and self.evaluator is None:
            import warnings

            warnings.warn("data.eval is set but no evaluator was given, so nothing is evaluated; "
                          "`rlvr train` passes the evals harness (rlvr.commands.train.harness_evaluator)",
                          stacklevel=2)
        check_reward(cfg.reward, self.train_examples)  # a bad verifier: one line, before any model loads
        # the run directory: locked, and a resume checked against the run's settings, before any model loads
        self.rundir.lock(self.collective.main_failed)
        weakref.finalize(self, self.rundir.release)
        resuming = resume or force_resume
        ckpt = latest_checkpoint(self.run_dir) if resuming else None
        resume_changes = self.rundir.check_resume_settings(cfg, force_resume) if ckpt is not None else {}
        self.learner = Learner(cfg, self.preset, self.collective, fsdp=fsdp)
        self.step = self.samples = self.tokens = 0
        self.elapsed_offset = 0.0
        self.train_s = 0.0  # wall seconds spent training (no evals, no diagnostics, no checkpoints)
        self.train_cpu_s = 0.0  # the same in CPU seconds of this process (robust to a shared machine)
        self.stops = StopSignals()  # SIGINT/SIGTERM: stop at the next step boundary (rlvr.stopping)
        self._active_rows: torch.Tensor | None = None  # [N] 1.0 = real row, 0.0 = padding (Collective.learn_rows)
        self._last_eval: dict[str, Any] | None = None
        self._eval_pending = False  # the eval due at this step was not run (a stop came first)
        if resuming and ckpt is None and self.is_main:
            print(f"rlvr train: no checkpoint under {self.run_dir}/checkpoints; starting fresh")
        if ckpt is not None:
            self._restore(ckpt)
            if resume_changes:
                self.rundir.record_forced_resume(self.step, ckpt, resume_changes)
        else:
            self.rundir.set_aside_earlier_attempt()
        self.rundir.record_start(cfg, self.step)  # config.yaml, provenance.json
        self.collector = collect.Collector(cfg, self.preset, self.learner, *self._build_engine(),
                                           self.train_examples, self.pairs, self.rank, self.world)

    def _build_engine(self) -> tuple[Any, bool]:
        """The engine ``rollout.engine`` names, from the table in :mod:`rlvr.rollout`, and whether it
        runs the trainer's own module (embedded)."""
        from rlvr.rollout import ENGINES, EngineContext, build_engine

        r, m = self.cfg.rollout, self.cfg.model
        embedded = ENGINES[r.engine].embedded
        engine = build_engine(r, EngineContext(self.sampling_model, self.tokenizer, m.name, m.dtype,
                                               self.cfg.trainer.seed, r.micro_batch_size))
        if not embedded:
            engine.sync_weights(self.sampling_model)  # resumed or LoRA-wrapped weights differ from the path
        return engine, embedded

    # the learner's models and the collector's engine, as callers (evals, tests, benches) name them
    policy = property(lambda self: self.learner.policy)
    critic = property(lambda self: self.learner.critic)
    reference = property(lambda self: self.learner.reference)
    tokenizer = property(lambda self: self.learner.tokenizer)
    sampling_model = property(lambda self: self.learner.sampling_model)
    fsdp = property(lambda self: self.learner.fsdp)
    engine_embedded = property(lambda self: self.collector.embedded)

    @property
    def engine(self):
        return self.collector.engine

    @engine.setter
    def engine(self, engine) -> None:  # e.g. a recording or replaying wrapper (tests)
        self.collector.engine = engine

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, Any]:
        """collect -> shape rewards -> agree -> learn (advantages, update) -> metrics."""
        cfg, t, ln = self.cfg, self.cfg.trainer, self.learner
        timer = PhaseTimer()
        t_step, c_step = time.perf_counter(), time.process_time()
        self.collector.progress = {"global_step": self.step, "num_input_tokens_seen": self.tokens,
                                   "is_local_process_zero": self.accelerator.is_local_main_process}
        got = self.collector.collect(self.step, timer)
        rollout_tokens = got.tokens
        batch = got.rollout.to_tensors(self.tokenizer.pad_token_id, self.device)
        mask, finished = batch["response_mask"], batch["finished"]
        m: dict[str, Any] = {**shaping.step_metrics(got.scores, got.correct, mask, finished), **got.info}
        scores, shaped = shaping.shape_scores(cfg, self.preset, got.scores, finished, mask.sum(1))
        m.update(shaped)
        mc = None  # values of intermediate states from continuations (estimators that take them)
        if self.preset.mc_values:
            shape = lambda s, f, n: shaping.shape_scores(cfg, self.preset, s, f, n)[0]  # noqa: E731
            *mc, mc_info = self.collector.mc_values(got, batch, self.step, timer, shape)
            m.update(mc_info)
        loss_mask = shaping.loss_mask(cfg, mask, finished)
        keep, kept_info = shaping.zero_std_filter(cfg, scores, batch["group_ids"])
        m.update(kept_info)
        # one all-gather agrees on the global sample and token counts (every sample any process
        # generated this step, refills and continuations included: the budgets are checked on them),
        # the rows every process trains on (equal, so every process runs the same number of
        # mini-batches) and whether anyone updates at all
        agreed = self.collective.gather_floats([float(got.tokens), float(keep.sum()),
                                                float(loss_mask[keep.to(self.device)].sum()), float(got.samples)])
        self.samples += int(agreed[:, 3].sum())
        self.tokens += int(agreed[:, 0].sum())
        if agreed[:, 2].sum() > 0:
            rows, self._active_rows = self.collective.learn_rows(keep, int(agreed[:, 1].max()), self.device)
            batch = {k: v[rows] for k, v in batch.items()}
            scores, loss_mask = scores[rows.cpu()], loss_mask[rows] * self._active_rows[:, None]
            mc = None if mc is None else (mc[0][rows], mc[1][rows])
            with timer("trunk"):
                ln.ensure_boundary(batch)
            m.update(self._learn(batch, scores, loss_mask, timer, mc=mc))
            with timer("sync"):  # the engine samples the next batch from the updated weights
                self.engine.sync_weights(self.sampling_model)
        else:
            m["skipped_update"] = 1.0
        if t.gradvar_every and self.step % t.gradvar_every == 0:
            from rlvr.gradvar import gradient_variance

            c0 = time.process_time()
            with timer("gradvar"):
                ln.ensure_boundary(batch)
                m.update(gradient_variance(ln, batch, scores, loss_mask))
            m["time/gradvar_cpu"] = time.process_time() - c0
        self.step += 1
        phase = timer.pop()
        step_time = time.perf_counter() - t_step
        m.update(phase)
        m["time/step"] = step_time
        m["time/step_cpu"] = time.process_time() - c_step  # CPU seconds of this process (all threads)
        m["tokens_per_s"] = float(rollout_tokens) / max(phase.get("time/generate", step_time), 1e-9)  # all sampled
        m["memory/peak_gb"] = _peak_memory_gb(self.device)
        m["lr"] = ln.lr
        return self.collective.reduce_metrics(m)

    def _learn(self, batch: dict, scores: torch.Tensor, loss_mask: torch.Tensor, timer: PhaseTimer,
               mc: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
        """Old/ref log-probs and values, token rewards, advantages, then the update rule.

        ``batch["response_mask"]`` marks every response token (the estimator sees every sample's
        score); ``loss_mask`` marks the tokens that are trained on (overlong masking removes
        truncated samples from the losses only). ``mc``: (values, splits) [N, R] estimated from
        continuations, in place of a critic's values."""
        p, t, a, ln = self.preset, self.cfg.trainer, self.cfg.algorithm, self.learner
        resp = batch["response_mask"]
        m: dict[str, Any] = {}
        ln.step = self.step
        with timer("logprob"):
            old_logp, ref_logp, values = ln.old_passes(batch, scores, self._active_rows, self.step,
                                                       sampler_logprobs=t.reuse_sampler_logprobs)
        if not t.reuse_sampler_logprobs:
            m.update(logprob_mismatch(batch["sampler_logprobs"], old_logp, resp))
        splits = None
        if mc is not None:
            values, splits = mc[0] * resp, mc[1]
        kl_tok = None
        if ref_logp is not None:
            kl_tok = A.kl_estimate(old_logp, ref_logp, p.kl_kind, clamp=a.kl_clamp) * resp
            m["kl/ref"] = self.collective.global_mean(kl_tok, loss_mask)
        rewards = shaping.token_rewards(p, scores, resp, kl_tok, ln.kl_ctl.value)
        adv, returns = self.collective.advantages(p.advantages, rewards, resp, values, batch["group_ids"],
                                                  self._active_rows, splits)
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
        warmup = self.step < p.value_warmup_steps and ln.critic is not None
        inputs = UpdateInputs(batch, loss_mask, old_logp, ref_logp, adv, None if mc else values,
                              None if mc else returns, tis, scores.to(resp.device), policy=not warmup, step=self.step)
        with timer("update"), ln.training():
            m.update(self.update_rule(ln, inputs))
        if warmup:
            m["value/warmup"] = 1.0
        if values is not None:  # Monte-Carlo values exist only at the split positions
            at = loss_mask if splits is None else loss_mask * splits
            m["value/explained_variance"] = float(A.explained_variance(values, returns, at))
            m["value/mean"] = _masked_mean(values, at)
            if bool((at[:, 0] > 0).any()):  # the prompt's own value against what it returned
                m["value/bias"] = float(A.value_bias(values, returns, at))
        ln.update_kl_coefficients(m, resp.shape[0])
        return m

    # ------------------------------------------------------------------ eval / checkpoints
    def evaluate(self, final: bool = False) -> dict[str, Any] | None:
        """Run the ``evaluator`` given at construction on the main process: ``evaluator(trainer,
        final) -> metrics`` (``rlvr train`` passes the evals harness: greedy pass@1 on the held-out
        items; the final eval also samples ``trainer.final_eval_samples`` per item and writes
        ``eval_items.jsonl``). None without held-out items or without an evaluator."""
        if self.eval_examples is None or self.evaluator is None:
            return None
        # with FSDP2 the evaluator samples from the policy on process 0 alone: gathered (whatever
        # the engine, the harness's own sampler runs the policy's module)
        res, cut = None, False
        with self.learner.sampling_weights():
            try:
                self.stops.in_eval = self.is_main and self.stops.active
                if self.stops.in_eval and self.stops.signum is not None:  # arrived before the eval began
                    raise EvalInterrupted
                res = self.evaluator(self, final) if self.is_main else None
            except EvalInterrupted:
                cut = True
            finally:
                self.stops.in_eval = False
        self.accelerator.wait_for_everyone()
        # process 0 says whether a signal cut its eval short, and which one: every process then
        # stops at this same point (the others wait in the barrier above meanwhile)
        sig, _ = self.collective.stop_inputs((self.stops.signum or 0) if cut else 0, 0.0)
        if sig:
            self.stops.signum = self.stops.signum or sig
            raise EvalInterrupted
        return res

    def _state(self, elapsed: float, policy_full: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Everything a resume needs: the learner's state and the loop's counters."""
        return {"step": self.step, "samples": self.samples, "tokens": self.tokens, "elapsed_s": elapsed,
                "train_s": self.train_s, "train_cpu_s": self.train_cpu_s, **self.learner.state_dict(policy_full),
                "rng": rng_state(), "preset": asdict(self.preset), "eval_pending": self._eval_pending}

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
                path = save_checkpoint(self.run_dir, self.step, state, self.policy, self.tokenizer, weights=full,
                                       keep=self.cfg.trainer.keep_checkpoints)
            del full, state
        elif self.is_main:
            path = save_checkpoint(self.run_dir, self.step, self._state(elapsed), self.policy, self.tokenizer,
                                   keep=self.cfg.trainer.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        return path

    def _restore(self, ckpt: Path) -> None:
        st = load_state(ckpt)
        self.learner.load_state_dict(st, str(ckpt))
        self.step, self.samples, self.tokens = st["step"], st["samples"], st["tokens"]
        self.elapsed_offset = st["elapsed_s"]
        self.train_s = st.get("train_s", st["elapsed_s"])
        self.train_cpu_s = st.get("train_cpu_s", 0.0)
        self._eval_pending = bool(st.get("eval_pending", False))
        set_rng_state(st["rng"])
        self.rundir.trim_logs_after(self.step)
        if self.is_main:
            print(f"rlvr train: resumed from {ckpt} (step {self.step})")

    def _stop_reason(self, elapsed: float) -> str | None:
        """Why to stop now, the same answer on every process: a signal received by any process
        first, then the first budget reached, on global counts and the slowest process's clock."""
        t = self.cfg.trainer
        sig, elapsed = self.collective.stop_inputs(self.stops.signum or 0, elapsed)
        if sig:
            return signal.Signals(sig).name
        for reason, count, budget in (("total_steps", self.step, t.total_steps), ("max_samples", self.samples, t.max_samples),
                                      ("max_tokens", self.tokens, t.max_tokens), ("max_time_s", elapsed, t.max_time_s)):
            if budget is not None and count >= budget:
                return reason
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
            self.rundir.release()

    # ------------------------------------------------------------------ the loop
    def train(self, max_steps: int | None = None) -> dict[str, Any]:
        """Run until a budget is reached (or ``max_steps`` more steps, or SIGINT/SIGTERM)."""
        t = self.cfg.trainer
        logger = MetricsLogger(self.run_dir, tensorboard=t.tensorboard, wandb_project=t.wandb_project,
                               wandb_config=self.cfg.to_dict(), progress_total=t.total_steps,
                               progress=t.progress, enabled=self.is_main)
        t0 = time.perf_counter() - self.elapsed_offset
        done, reason, eval_cut = 0, None, False  # eval_cut: a signal cut this step's periodic eval short
        with self.stops, closing(logger):
            try:
                if t.eval_at_start and self.step == 0:
                    self._log_eval(logger, 0.0)
                elif self._eval_pending:  # stopped at a step due an eval before it ran: run it now
                    self._log_eval(logger, self.elapsed_offset)
                self._eval_pending = False
            except EvalInterrupted:  # not run: the checkpoint below says it is still due
                reason, eval_cut = self.stops.name, True
            while reason is None:
                reason = self._stop_reason(time.perf_counter() - t0)
                if reason or (max_steps is not None and done >= max_steps):
                    break
                m = self.train_step()
                self.learner.finish_lr_step()
                done += 1
                self.train_s += m["time/step"] - m.get("time/gradvar", 0.0)
                self.train_cpu_s += m["time/step_cpu"] - m.get("time/gradvar_cpu", 0.0)
                m.update(step=self.step, samples=self.samples, tokens=self.tokens, elapsed_s=time.perf_counter() - t0,
                         train_s=self.train_s, train_cpu_s=self.train_cpu_s)
                logger.log(m)
                last = self._stop_reason(time.perf_counter() - t0) is not None
                if t.eval_every and self.step % t.eval_every == 0 and not last:  # the final eval covers the last step
                    try:
                        self._log_eval(logger, time.perf_counter() - t0)
                    except EvalInterrupted:  # not run: due again at the resume (eval_pending below)
                        reason, eval_cut = self.stops.name, True
                        break
                if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                    self.save(time.perf_counter() - t0)
                # a signal is acted on at the top of the loop, by every process at the same step
            elapsed = time.perf_counter() - t0
            interrupted = reason is None or reason in ("SIGINT", "SIGTERM")
            # stopped before the run's end at a step due an eval (skipped above, as the final eval
            # would cover it): the checkpoint says so, and the resumed run evaluates first
            self._eval_pending = bool(interrupted and (eval_cut or (
                t.eval_every and self.step % t.eval_every == 0 and done > 0
                and (self._last_eval or {}).get("step") != self.step)))
            self.save(elapsed)
            summary: dict[str, Any] = {"preset": self.preset.name, "seed": t.seed, "steps": self.step,
                                       "samples": self.samples, "tokens": self.tokens, "stop_reason": reason}
            if self.cfg.arm:  # a named variant of the preset (the recipe's arms): reports label it so
                summary["arm"] = self.cfg.arm
            if interrupted:
                # interrupted (or a partial max_steps call): checkpointed, but the run is not finished,
                # so no summary.json (`rlvr compare` treats its presence as "done")
                summary["stop_reason"] = reason or "max_steps"
                if self.is_main and reason:
                    print(f"rlvr train: stopped by {reason} at step {self.step}; "
                          f"continue with --resume (checkpoint in {self.run_dir / 'checkpoints'})")
                return summary
            if self.eval_examples is not None:
                try:
                    ev = self._log_eval(logger, elapsed, final=True)
                except EvalInterrupted:  # the checkpoint above is the run's end: a resume runs this eval
                    summary["stop_reason"] = self.stops.name
                    if self.is_main:
                        print(f"rlvr train: stopped by {summary['stop_reason']} during the final eval at step "
                              f"{self.step}; continue with --resume (it runs only that eval)")
                    return summary
                summary["final_eval/pass@1"] = ev.get("eval/pass@1") if ev else None
                summary.update({f"final_eval/{k[5:]}": v for k, v in (ev or {}).items()
                                if k.startswith("eval/sampled/") or k in ("eval/timeouts", "eval/crashes", "eval/violations")})
            summary["elapsed_s"] = time.perf_counter() - t0
            summary["peak_memory_gb"] = _peak_memory_gb(self.device)
            self.rundir.write_summary(summary)
            return summary

    def _log_eval(self, logger: MetricsLogger, elapsed: float, final: bool = False) -> dict[str, Any] | None:
        """Evaluate and log one eval row. A signal that cuts the eval short raises EvalInterrupted
        (on every process) with the RNG as it was before the eval, so the checkpoint that follows is
        the one a stop just before the eval would have written."""
        rng = rng_state()
        try:
            res = self.evaluate(final=final)
        except EvalInterrupted:
            set_rng_state(rng)
            raise
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
