"""Rollout collection: this step's prompts, sampled and scored.

A collection strategy turns a step number into a scored rollout (:class:`Collected`). The preset
declares which one it uses (``Preset.collection``); offline preference pairs (``data.pairs``) replace
sampling altogether. Strategies are registered in :data:`COLLECTIONS`:

    single             ``trainer.prompts_per_step`` prompts, ``rollout.n`` samples each
    dynamic_sampling   only groups with mixed scores are kept; more prompts are sampled until the
                       batch is full or the round cap is hit (Yu et al. 2025, sec. 3.2, Algorithm 1)
    pairs              the file's (chosen, rejected) pairs as a rollout, scored (1, 0)

Presets whose estimator takes Monte-Carlo values (``Preset.mc_values``) also get, after
collection, the values of intermediate states from continuations sampled by the engine and scored
by the same verifiers (:meth:`Collector.mc_values`, VinePPO sec. 4). Every sample any of this
generates counts toward the step's ``samples`` and ``tokens`` (matched budgets).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from rlvr import algorithms as A
from rlvr.algorithms import vine
from rlvr.metrics import PhaseTimer
from rlvr.rollout.base import Rollout, SamplingParams

# preset fields beyond the core that this module runs (Preset.extensions())
EXTENSIONS = frozenset({"dynamic_sampling", "vine_k", "vine_split", "vine_every"})


@dataclass
class Collected:
    """One step's scored samples: ``rollout`` (N samples in G groups), ``scores`` [N] rewards,
    ``correct`` [N] 0/1 by the first verifier, ``info`` metrics, ``examples`` [G] the prompt of each
    group, and what this process generated to get them (``samples``, ``tokens``: refills and
    continuations included)."""

    rollout: Rollout
    scores: torch.Tensor
    correct: torch.Tensor
    info: dict[str, Any]
    examples: list
    samples: int = 0
    tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


Strategy = Callable[["Collector", int, PhaseTimer], Collected]
COLLECTIONS: dict[str, Strategy] = {}


def register(name: str) -> Callable[[Strategy], Strategy]:
    """Decorator: ``@register("name")`` makes the function a collection strategy."""

    def deco(fn: Strategy) -> Strategy:
        if COLLECTIONS.get(name, fn) is not fn:
            raise ValueError(f"collection strategy {name!r} is already registered")
        COLLECTIONS[name] = fn
        return fn

    return deco


class Collector:
    """Samples and scores for the trainer: the engine, the data order and the verifiers."""

    def __init__(self, cfg, preset, learner, engine, embedded: bool, train_examples: list, pairs: list | None,
                 rank: int, world: int):
        self.cfg, self.preset, self.learner = cfg, preset, learner
        self.engine, self.embedded = engine, embedded
        self.train_examples, self.pairs = train_examples, pairs
        self.rank, self.world = rank, world
        self.strategy = "pairs" if pairs is not None else preset.collection
        self.progress: dict[str, Any] = {}  # global_step, num_input_tokens_seen, is_local_process_zero
        self._perm_cache: dict[tuple[int, int], list[int]] = {}
        self._step_ends: list[int] | None = None

    def collect(self, step: int, timer: PhaseTimer) -> Collected:
        """This step's scored rollout, by the strategy in use."""
        return COLLECTIONS[self.strategy](self, step, timer)

    # ------------------------------------------------------------------ data order
    def step_examples(self, step: int, items: list | None = None) -> list:
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

    # ------------------------------------------------------------------ sampling and scoring
    def _seed(self, step: int, round_: int) -> int:
        seed = self.cfg.trainer.seed * 1_000_003 + step * 1009 + self.rank + round_ * 100_000_007
        return seed % (2**31)

    def score(self, examples: list, texts: list[str], n: int,
              completion_ids: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Verifier scores of ``n`` texts per example -> (rewards [N], correct [N], info).

        ``info``: ``reward/<verifier>`` per weighted verifier and ``verifier/{timeout,crash,
        violation}_rate`` (see :mod:`rlvr.scoring`). ``completion_ids`` and the run's progress
        (:attr:`progress`, set by the trainer each step) go to TRL reward functions (their
        ``completion_ids`` and ``trainer_state``)."""
        from rlvr.scoring import reward_labels, reward_terms, score_examples

        rc, t = self.cfg.reward, self.cfg.trainer
        step = self.progress.get("global_step", 0)
        state = {**self.progress, "max_steps": t.total_steps,
                 "epoch": step * t.prompts_per_step * self.world / max(1, len(self.train_examples)),
                 "is_world_process_zero": self.rank == 0}
        res = score_examples(examples, texts, n, reward_terms(rc), workers=rc.workers, timeout=rc.timeout_s,
                             completion_ids=completion_ids, state=state)
        rewards = torch.tensor(res.rewards, dtype=torch.float32)
        correct = torch.tensor([float(r.reward >= 1.0) for r in res.primary])
        return rewards, correct, res.metrics(reward_labels(rc, self.train_examples))

    def generate(self, examples: list, step: int, round_: int, timer: PhaseTimer) -> Collected:
        """Sample ``rollout.n`` completions of each example and score them. ``round_`` > 0: a
        dynamic-sampling refill (its own sampling seed)."""
        from rlvr.data import encode_prompt

        r = self.cfg.rollout
        prompts = [encode_prompt(self.learner.tokenizer, ex) for ex in examples]
        capture = self.learner.capture_block() if self.embedded else None  # the trainable blocks' input
        params = SamplingParams(n=r.n, temperature=r.temperature, top_p=r.top_p, max_new_tokens=r.max_new_tokens,
                                seed=self._seed(step, round_), capture_block=capture)
        with timer("generate"), self.learner.sampling_weights(self.embedded):
            rollout = self.engine.generate(prompts, params)
        with timer("score"):
            scores, correct, info = self.score(examples, rollout.texts, r.n, rollout.response_ids)
        return Collected(rollout, scores, correct, info, list(examples), len(rollout), rollout.num_tokens)

    # ------------------------------------------------------------------ Monte-Carlo values
    def mc_values(self, c: Collected, batch: dict, step: int, timer: PhaseTimer,
                  shape: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Values of intermediate states from ``vine_k`` continuations each (VinePPO sec. 4:
        V_hat(s_p) = (1/K) sum_k R(prompt + response[:p] + eta_k), eta_k ~ pi(. | s_p)).

        The states are the preset's split positions of every response (``vine.split_positions``:
        position 0 and the start of every line, or every ``vine_every`` tokens); each prefix is
        continued K times by the engine (``generate_continuations``: the completed response is no
        longer than a rollout's), ``response[:p] + continuation`` is scored by the rollouts' verifiers
        and shaped as they are (``shape(scores, finished, lengths)``). The continuations count toward
        ``c.samples`` / ``c.tokens``. -> (values [N, R], splits [N, R] bool, metrics)."""
        p, r = self.preset, self.cfg.rollout
        resp = batch["response_mask"]
        R = resp.shape[1]
        boundary = None
        if p.vine_split == "lines":
            if self._step_ends is None:
                self._step_ends = vine.newline_token_ids(self.learner.tokenizer)
            boundary = self._step_ends
        splits = vine.split_positions(resp.cpu(), every=p.vine_every,
                                      response_ids=batch["input_ids"][:, -R:].cpu() if boundary is not None else None,
                                      boundary_ids=boundary)
        ro = c.rollout
        req = vine.continuation_requests(ro.prompt_ids, ro.response_ids, splits, p.vine_k)
        params = SamplingParams(n=p.vine_k, temperature=r.temperature, top_p=r.top_p, max_new_tokens=r.max_new_tokens,
                                seed=self._seed(step, 7))
        with timer("continue"), self.learner.sampling_weights(self.embedded):
            cont = self.engine.generate_continuations(req.prompts, req.partials, params)
        completed = vine.completed_responses(req, cont.response_ids)
        texts = self.learner.tokenizer.batch_decode(completed, skip_special_tokens=True)
        examples = [c.examples[ro.group_ids[s]] for s in req.sample]
        with timer("score"):
            raw, _, _ = self.score(examples, texts, p.vine_k, completed)
        scores = shape(raw, torch.tensor(cont.finished, dtype=torch.bool),
                       torch.tensor([len(x) for x in completed]))
        values = vine.values_at_splits(splits, vine.mc_values(scores, p.vine_k)).to(resp.device)
        spent = vine.continuation_budget(req, cont.response_ids)
        c.samples += spent.samples
        c.tokens += spent.generated_tokens
        m = {"mc/states": float(spent.states), "mc/continuations": float(spent.samples),
             "mc/continuation_tokens": float(spent.generated_tokens)}
        return values, splits.to(resp.device), m


@register("single")
def collect_single(co: Collector, step: int, timer: PhaseTimer) -> Collected:
    """``trainer.prompts_per_step`` prompts of this step, ``rollout.n`` samples each."""
    return co.generate(co.step_examples(step), step, 0, timer)


@register("dynamic_sampling")
def collect_dynamic(co: Collector, step: int, timer: PhaseTimer) -> Collected:
    """Only groups whose verifier scores are mixed are kept (``A.mixed_groups``), and more prompts
    are sampled (``A.prompts_to_refill``, drawn from the training set by a generator seeded with the
    step, so a resumed run draws the same) until ``trainer.prompts_per_step`` mixed groups are in hand
    or ``algorithm.dynamic_sampling_max_rounds`` extra rounds were spent; the surplus is dropped
    (DAPO, Yu et al. 2025, sec. 3.2 and Algorithm 1). reward/mean and accuracy are over every
    generated sample. Metrics: dapo/rounds (extra rounds needed), dapo/mixed_groups (fraction of
    generated groups that were mixed), dapo/batch_fill (kept groups / prompts_per_step; < 1 when the
    cap was hit)."""
    examples = co.step_examples(step)
    first = co.generate(examples, step, 0, timer)
    want, cap = len(examples), co.cfg.algorithm.dynamic_sampling_max_rounds
    parts = [first]
    rounds = 0
    while True:
        mixed = [sorted(set(torch.as_tensor(q.rollout.group_ids)[A.mixed_groups(q.scores, q.rollout.group_ids)].tolist()))
                 for q in parts]
        have, seen = sum(len(g) for g in mixed), sum(len(set(q.rollout.group_ids)) for q in parts)
        if have >= want or rounds >= cap:
            break
        rounds += 1
        k = A.prompts_to_refill(have, want, have / seen if have else None, max_prompts=4 * want)
        gen = torch.Generator().manual_seed(co.cfg.trainer.seed * 7919 + step * 104_729 + rounds * 131
                                            + co.rank * 1_000_003)
        extra = [co.train_examples[i] for i in torch.randint(len(co.train_examples), (k,), generator=gen)]
        parts.append(co.generate(extra, step, rounds, timer))
    all_scores, all_correct = torch.cat([q.scores for q in parts]), torch.cat([q.correct for q in parts])
    info = {**first.info, "reward/mean": float(all_scores.mean()), "accuracy": float(all_correct.mean()),
            "dapo/rounds": float(rounds), "dapo/mixed_groups": have / seen, "dapo/batch_fill": min(have, want) / want}
    samples, tokens = sum(q.samples for q in parts), sum(q.tokens for q in parts)
    if have == 0:  # nothing mixed within the cap: the first round's batch (all advantages 0)
        return Collected(first.rollout, first.scores, first.correct, info, first.examples, samples, tokens)
    kept, kept_examples, left = [], [], want
    for q, groups in zip(parts, mixed):
        groups = groups[:left]
        left -= len(groups)
        if groups:
            ro = q.rollout
            rows = [i for g in groups for i, gi in enumerate(ro.group_ids) if gi == g]
            kept.append((ro.take_groups(groups), q.scores[rows], q.correct[rows]))
            kept_examples += [q.examples[g] for g in groups]
    out = Rollout.concat([ro for ro, _, _ in kept])
    return Collected(out, torch.cat([s for _, s, _ in kept]), torch.cat([c for _, _, c in kept]), info,
                     kept_examples, samples, tokens)


@register("pairs")
def collect_pairs(co: Collector, step: int, timer: PhaseTimer) -> Collected:
    """Offline pairs as a rollout: one group per pair, (chosen, rejected) scored (1, 0), so the
    pairwise rule pairs exactly them. The prompt is chat-encoded like a training prompt (with
    ``data.system_prompt``); each completion gets the tokenizer's EOS and is cut to
    ``rollout.max_new_tokens`` (then marked unfinished). Sampler log-probs are unknown (0)."""
    from rlvr.data import Example, encode_prompt

    tok, budget, system = co.learner.tokenizer, co.cfg.rollout.max_new_tokens, co.cfg.data.system_prompt
    pairs = co.step_examples(step, co.pairs)
    ro = Rollout([], [], [], [], [], [])
    examples = []
    for g, pair in enumerate(pairs):
        chat = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": pair.prompt}]
        ex = Example(pair.where, chat, None, "pairs", "")
        examples.append(ex)
        prompt = encode_prompt(tok, ex)
        for text in (pair.chosen, pair.rejected):
            ids = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
            ro.prompt_ids.append(prompt)
            ro.response_ids.append(ids[:budget])
            ro.logprobs.append([0.0] * len(ids[:budget]))
            ro.finished.append(len(ids) <= budget)
            ro.group_ids.append(g)
            ro.texts.append(text)
    scores = torch.tensor([1.0, 0.0] * len(pairs))
    return Collected(ro, scores, scores.clone(), {}, examples, len(ro), ro.num_tokens)
