"""The rollout protocol: prompts (token ids) in, sampled responses with sampler logprobs out.

Every engine (embedded ``hf``, ``vllm``) implements :class:`RolloutEngine`. The trainer only sees
:class:`Rollout` and packs it into tensors with :meth:`Rollout.to_tensors`.

Tensor layout produced by ``to_tensors`` (N = number of samples, P = longest prompt,
R = longest response)::

    input_ids      [N, P+R]  prompt left-padded to P, then response right-padded to R
    attention_mask [N, P+R]  1 on real tokens
    response_mask  [N, R]    1 on real response tokens (incl. the EOS token if one was sampled)
    sampler_logprobs [N, R]  the engine's log pi_rollout(token) for each response token, 0 on pads

The logits that predict response token j sit at position P-1+j of the full sequence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch


@dataclass
class SamplingParams:
    """Sampling settings shared by all engines."""

    n: int = 1  # samples per prompt (group size for group baselines)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None
    stop_token_ids: list[int] = field(default_factory=list)  # in addition to the model's EOS
    # Engines that run the trainer's own module may also return the hidden states entering block
    # ``capture_block`` for every fed token (Rollout.hidden), so the trainer can skip the frozen
    # lower blocks in its own passes; engines that cannot simply return hidden=None.
    capture_block: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"rollout.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"rollout.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"rollout.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"rollout.max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Rollout:
    """Samples for a batch of prompts; sample i belongs to prompt ``group_ids[i]``.

    Samples of the same prompt are contiguous: sample i = prompt i // n, draw i % n.
    """

    prompt_ids: list[list[int]]  # [N] token ids of the prompt of each sample
    response_ids: list[list[int]]  # [N] sampled token ids (EOS included when sampled)
    logprobs: list[list[float]]  # [N] sampler log-prob of each response token
    finished: list[bool]  # [N] True when the response ended on EOS/stop, False when truncated
    group_ids: list[int]  # [N] index of the prompt in the request
    texts: list[str] = field(default_factory=list)  # [N] decoded responses (special tokens skipped)
    # [N] hidden states entering block ``SamplingParams.capture_block`` for each fed token: the
    # prompt, then every response token but the last ([len(prompt) + len(response) - 1, H]); or None
    hidden: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        n = len(self.prompt_ids)
        for name in ("response_ids", "logprobs", "finished", "group_ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Rollout.{name} has {len(getattr(self, name))} items, expected {n}")
        for i, (r, lp) in enumerate(zip(self.response_ids, self.logprobs)):
            if len(r) != len(lp):
                raise ValueError(f"Rollout sample {i}: {len(r)} tokens but {len(lp)} logprobs")

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def num_tokens(self) -> int:
        """Generated tokens in this rollout."""
        return sum(len(r) for r in self.response_ids)

    def take_groups(self, groups: list[int]) -> "Rollout":
        """The samples of the given prompts (``group_ids`` values), in that order, renumbered 0..G-1."""
        new_id = {g: k for k, g in enumerate(groups)}
        rows = sorted((i for i, g in enumerate(self.group_ids) if g in new_id),
                      key=lambda i: (new_id[self.group_ids[i]], i))
        pick = lambda xs: [xs[i] for i in rows]  # noqa: E731
        return Rollout(pick(self.prompt_ids), pick(self.response_ids), pick(self.logprobs), pick(self.finished),
                       [new_id[self.group_ids[i]] for i in rows], pick(self.texts) if self.texts else [],
                       pick(self.hidden) if self.hidden is not None else None)

    @staticmethod
    def concat(parts: list["Rollout"]) -> "Rollout":
        """One rollout of several, group ids offset so that groups stay distinct and contiguous."""
        out = Rollout([], [], [], [], [], [], [] if all(r.hidden is not None for r in parts) else None)
        for r in parts:
            base = max(out.group_ids) + 1 if out.group_ids else 0
            out.prompt_ids += r.prompt_ids
            out.response_ids += r.response_ids
            out.logprobs += r.logprobs
            out.finished += r.finished
            out.group_ids += [base + g - min(r.group_ids) for g in r.group_ids] if r.group_ids else []
            out.texts += r.texts
            if out.hidden is not None:
                out.hidden += r.hidden
        return out

    def to_tensors(self, pad_token_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Pack into padded tensors (layout in the module docstring)."""
        N = len(self)
        P = max(len(p) for p in self.prompt_ids)
        R = max(1, max(len(r) for r in self.response_ids))
        input_ids = torch.full((N, P + R), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((N, P + R), dtype=torch.long)
        response_mask = torch.zeros((N, R), dtype=torch.float32)
        sampler_logprobs = torch.zeros((N, R), dtype=torch.float32)
        for i, (p, r, lp) in enumerate(zip(self.prompt_ids, self.response_ids, self.logprobs)):
            input_ids[i, P - len(p) : P] = torch.tensor(p, dtype=torch.long)
            attention_mask[i, P - len(p) : P + len(r)] = 1
            if r:
                input_ids[i, P : P + len(r)] = torch.tensor(r, dtype=torch.long)
                sampler_logprobs[i, : len(r)] = torch.tensor(lp, dtype=torch.float32)
                response_mask[i, : len(r)] = 1.0
        out = {}
        if self.hidden is not None:
            H = self.hidden[0].shape[-1]
            hid = torch.zeros((N, P + R, H), dtype=self.hidden[0].dtype)
            for i, (p, h) in enumerate(zip(self.prompt_ids, self.hidden)):
                hid[i, P - len(p) : P - len(p) + h.shape[0]] = h
            out["boundary_hidden"] = hid
        out |= {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "response_mask": response_mask,
            "sampler_logprobs": sampler_logprobs,
            "finished": torch.tensor(self.finished, dtype=torch.bool),
            "group_ids": torch.tensor(self.group_ids, dtype=torch.long),
        }
        return {k: v.to(device) for k, v in out.items()}


@runtime_checkable
class RolloutEngine(Protocol):
    """What the trainer needs from a rollout engine."""

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> Rollout:
        """Sample ``params.n`` responses for each prompt (token ids, no padding)."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from ``model``'s current weights (no-op if it shares them)."""
        ...


@runtime_checkable
class ContinuationEngine(RolloutEngine, Protocol):
    """An engine that can also continue partial responses (Monte-Carlo state values, VinePPO)."""

    def generate_continuations(self, prompts: list[list[int]], partials: list[list[int]],
                               params: SamplingParams) -> Rollout:
        """Sample ``params.n`` continuations of each ``prompts[i] + partials[i]``; see
        :func:`continuation_limits` for the budget and the layout of the answer."""
        ...


def continuation_limits(prompts: list[list[int]], partials: list[list[int]], params: SamplingParams) -> list[int]:
    """Check a continuation request; the most tokens each prefix's continuations may sample.

    ``prompts[i]`` (non-empty) + ``partials[i]`` (a partial response, possibly empty) is prefix i;
    ``params.max_new_tokens`` is the budget of a whole response, as in :meth:`RolloutEngine.generate`,
    so a continuation of prefix i samples at most ``max_new_tokens - len(partials[i])`` tokens, and
    ``partials[i] + continuation`` is never longer than a rollout's response. The answer is a
    :class:`Rollout` with ``params.n`` samples per prefix, contiguous (``group_ids[j]`` = i), where
    ``prompt_ids[j]`` is the whole prefix (prompt + partial: what the continuation is conditioned on),
    ``response_ids[j]``/``logprobs[j]`` the continuation alone (the prefix is not sampled again),
    ``finished[j]`` whether it ended on EOS/stop, ``texts[j]`` the decoded continuation.
    """
    if not prompts or len(prompts) != len(partials):
        raise ValueError(f"generate_continuations needs one partial response per prompt, got {len(prompts)} "
                         f"prompts and {len(partials)} partials")
    limits = []
    for i, (p, q) in enumerate(zip(prompts, partials)):
        if len(p) == 0:
            raise ValueError(f"generate_continuations: prompt {i} is empty")
        if len(q) >= params.max_new_tokens:
            raise ValueError(f"generate_continuations: partial {i} has {len(q)} tokens, no room left under "
                             f"rollout.max_new_tokens={params.max_new_tokens}")
        limits.append(params.max_new_tokens - len(q))
    return limits
