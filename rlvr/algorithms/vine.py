"""VinePPO's value estimates without a critic (Kazemnejad et al. 2024, arXiv 2410.01679).

A language environment can be restarted from any intermediate state: the state after ``p`` response
tokens is just ``s_p = prompt + response[:p]``. VinePPO replaces PPO's value network by Monte-Carlo
estimates of the values of such states (sec. 4, "Accurate credit assignment with VinePPO"):

    V_hat(s_p) = (1/K) sum_k R(prompt + response[:p] + eta_k),   eta_k ~ pi(. | s_p)   (the MC value estimate)

with K continuations ``eta_k`` sampled from the current policy and scored by the verifier, and
advantages from those values in the usual one-step form (sec. 3, the advantage used by PPO):

    A(s_t, a_t) = r(s_t, a_t) + gamma * V(s_{t+1}) - V(s_t)

Values are estimated only at chosen positions ``p_0 = 0 < p_1 < ... < p_J < L`` of a response of
``L`` tokens (every ``m`` tokens, or at the ends of reasoning steps: after every token that contains
a newline); the paper's experiments split at step boundaries. Tokens ``[p_j, p_{j+1})`` form step
``j`` and the step is the action: every token of step ``j`` gets the step's advantage

    A_j = sum_{t in step j} gamma^(t - p_j) r_t + gamma^(p_{j+1} - p_j) V(s_{p_{j+1}}) - V(s_{p_j})

with ``p_{J+1} = L`` and ``V(s_L) = 0``: the episode has ended and the verifier's score is the reward
``r_{L-1}`` on the last token (``advantages.outcome_rewards``). With gamma = 1 and only that terminal
reward this is ``V(s_{p_{j+1}}) - V(s_{p_j})`` for every step but the last, and ``R - V(s_{p_J})``
for the last one -- the same as taking ``V(s_L) = R`` with no reward term; the reward is not counted
twice. Token-level rewards (a per-token KL penalty in the reward) are summed over the step, so the
formula is the multi-token action's TD residual.

Convention: the step advantage is given to every token of the step, not only to its last token
(which the token-level residual with values held constant inside a step would do). A step's tokens
are one action whose value is only known at its ends; spreading the advantage over them is the
paper's per-step credit assignment, and with one split (``p_0 = 0`` only) it gives ``R - V_hat(s_0)``
on every token: REINFORCE with a Monte-Carlo baseline of the prompt's value. Summed once per step,
the advantages telescope to ``R - V(s_0)`` (gamma = 1).

Shapes: N responses, R = the longest response (right-padded, as ``Rollout.to_tensors`` lays them
out); masks are ``[N, R]``; the M states to estimate are the True entries of ``splits [N, R]`` in
row-major order (sample, then position), which is the order of every list and tensor over states here.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import bool_mask, check_2d, check_finite


def _right_padded(mask: Tensor, name: str = "response_mask") -> Tensor:
    """``mask`` as bool after checking that each row is a prefix of ones (right padding); lengths [N]."""
    check_2d(mask, name)
    m = mask if mask.dtype == torch.bool else mask != 0
    lengths = m.sum(dim=1)
    pos = torch.arange(m.shape[1], device=m.device)
    if not bool(torch.equal(m, pos[None, :] < lengths[:, None])):
        raise ValueError(f"{name} must be right-padded (each row: ones, then zeros)")
    return lengths


def split_positions(
    response_mask: Tensor,
    *,
    every: int | None = None,
    response_ids: Tensor | None = None,
    boundary_ids: Iterable[int] | Tensor | None = None,
) -> Tensor:
    """Where to estimate values: ``splits [N, R]`` bool, True at position ``p`` for the state
    ``s_p = prompt + response[:p]`` (the state before response token ``p``).

    Position 0 (the prompt's end, ``V(s_0)``) is always chosen for a non-empty response. Then
    ``every = m``: positions m, 2m, ... below the response length; ``boundary_ids`` (token ids whose
    text contains a newline, ``newline_token_ids``) with ``response_ids [N, R]``: the position after
    every such token, unless the response ends there (the terminal state's value is its reward, not an
    estimate). Both may be given (the union); with neither, only position 0.
    response_mask [N, R] (right-padded) -> splits [N, R] bool, a subset of the mask.
    """
    lengths = _right_padded(response_mask)
    N, R = response_mask.shape
    device = response_mask.device
    pos = torch.arange(R, device=device).expand(N, R)
    valid = pos < lengths[:, None]
    splits = (pos == 0) & valid
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1 (tokens per step), got {every!r}")
        splits |= (pos % every == 0) & valid
    if (response_ids is None) != (boundary_ids is None):
        raise ValueError("step boundaries need both response_ids and boundary_ids")
    if response_ids is not None:
        check_2d(response_ids, "response_ids")
        if tuple(response_ids.shape) != (N, R):
            raise ValueError(f"response_ids has shape {tuple(response_ids.shape)} but response_mask has {(N, R)}")
        ids = torch.as_tensor(list(boundary_ids) if not isinstance(boundary_ids, Tensor) else boundary_ids,
                              dtype=torch.long, device=device)
        ends = torch.isin(response_ids.long(), ids) & valid  # token i ends a step: split at i + 1
        after = torch.zeros_like(ends)
        after[:, 1:] = ends[:, :-1]
        splits |= after & valid
    return splits


def newline_token_ids(tokenizer) -> list[int]:
    """Ids of the tokens whose decoded text contains a newline (step ends for ``split_positions``)."""
    vocab = tokenizer.get_vocab()
    ids = sorted(set(vocab.values()))
    texts = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False)
    return [i for i, t in zip(ids, texts) if "\n" in t]


@dataclass(frozen=True)
class ContinuationRequests:
    """The states to estimate, one per True entry of ``splits`` (row-major): state ``i`` is sample
    ``sample[i]`` cut at ``position[i]``; its prefix is ``prompts[i] + partials[i]``; ``k``
    continuations are sampled from each."""

    sample: list[int]  # [M] index of the response the state belongs to
    position: list[int]  # [M] p: the number of response tokens in the state
    prompts: list[list[int]]  # [M] the sample's prompt token ids
    partials: list[list[int]]  # [M] response[:p]
    k: int

    def __len__(self) -> int:
        return len(self.sample)

    def prefixes(self) -> list[list[int]]:
        """[M] prompt + response[:p]: the token ids a continuation is sampled after."""
        return [p + q for p, q in zip(self.prompts, self.partials)]

    def repeated(self) -> list[list[int]]:
        """[M * K] each prefix K times, contiguous (the layout of the engine's answer)."""
        return [x for x in self.prefixes() for _ in range(self.k)]


def continuation_requests(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    splits: Tensor,
    k: int,
) -> ContinuationRequests:
    """The prefixes to continue: for each True ``splits[n, p]`` (row-major), ``prompt_ids[n]`` and
    ``response_ids[n][:p]``, each to be continued ``k`` times (``ContinuationRequests.repeated``
    lists them K times). prompt_ids, response_ids: [N] token id lists; splits [N, R] bool."""
    check_2d(splits, "splits")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (continuations per state), got {k!r}")
    if not (len(prompt_ids) == len(response_ids) == splits.shape[0]):
        raise ValueError(f"prompt_ids ({len(prompt_ids)}), response_ids ({len(response_ids)}) and splits "
                         f"({splits.shape[0]} rows) must have one entry per sample")
    sample, position, prompts, partials = [], [], [], []
    for n, p in (splits != 0).nonzero().tolist():
        if p >= len(response_ids[n]):
            raise ValueError(f"splits[{n}, {p}]: sample {n} has only {len(response_ids[n])} response tokens "
                             f"(a state must leave at least one token to act on)")
        sample.append(n)
        position.append(p)
        prompts.append(list(prompt_ids[n]))
        partials.append(list(response_ids[n][:p]))
    return ContinuationRequests(sample, position, prompts, partials, k)


def completed_responses(requests: ContinuationRequests, continuation_ids: Sequence[Sequence[int]]) -> list[list[int]]:
    """[M * K] the full responses to score: ``response[:p] + continuation``, the continuations in the
    order of ``requests.repeated()`` (state-major, K per state)."""
    if len(continuation_ids) != len(requests) * requests.k:
        raise ValueError(f"{len(continuation_ids)} continuations for {len(requests)} states x k={requests.k}")
    return [requests.partials[i // requests.k] + list(c) for i, c in enumerate(continuation_ids)]


def mc_values(continuation_rewards: Tensor, k: int) -> Tensor:
    """The MC value estimate V_hat(s) = (1/K) sum_k R(eta_k) (VinePPO sec. 4) of each state.

    continuation_rewards: [M * K] (state-major, K contiguous per state, as ``repeated``) or [M, K]
    verifier scores of the completed responses -> [M].
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    r = continuation_rewards
    if r.dim() == 1:
        if r.numel() % k:
            raise ValueError(f"continuation_rewards has {r.numel()} entries, not a multiple of k={k}")
        r = r.reshape(-1, k)
    elif r.dim() != 2 or r.shape[1] != k:
        raise ValueError(f"continuation_rewards must be [M * K] or [M, K={k}], got shape {tuple(r.shape)}")
    check_finite(r, "continuation_rewards")
    return r.float().mean(dim=1) if not r.is_floating_point() else r.mean(dim=1)


def values_at_splits(splits: Tensor, estimates: Tensor) -> Tensor:
    """Place the M state values (row-major order of ``splits``) at their positions: [N, R], 0 elsewhere."""
    check_2d(splits, "splits")
    s = splits != 0
    M = int(s.sum())
    if estimates.dim() != 1 or estimates.numel() != M:
        raise ValueError(f"estimates must be [M={M}] (one per split), got shape {tuple(estimates.shape)}")
    dtype = estimates.dtype if estimates.is_floating_point() else torch.float32
    out = torch.zeros(s.shape, dtype=dtype, device=s.device)
    out[s] = estimates.to(dtype=dtype, device=s.device)
    return out


def vine_advantages(
    rewards: Tensor, mask: Tensor, values: Tensor, splits: Tensor, gamma: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Per-step advantages from values at the split positions (module docstring; VinePPO sec. 3-4).

    A_j = sum_{t in step j} gamma^(t - p_j) r_t + gamma^(p_{j+1} - p_j) V(s_{p_{j+1}}) - V(s_{p_j}),
    V after the last valid token = 0, given to every token of step j.

    rewards [N, R] token rewards (the score on the last valid token: ``outcome_rewards``); mask [N, R];
    values [N, R]: V_hat(s_p) read only where ``splits`` is True (``values_at_splits``); splits [N, R]
    bool, within the mask, and True at each row's first valid token (the state s_0).
    -> (advantages [N, R], returns [N, R]): returns = A_j + V(s_{p_j}) on step j's tokens (the
    step's bootstrapped return); both 0 at masked positions. A split at every valid token gives the
    one-step TD residual (``compute_gae`` with lambda = 0).
    """
    check_2d(rewards, "rewards")
    m = bool_mask(mask, rewards, like_name="rewards")
    s = bool_mask(splits, rewards, "splits", "rewards")
    if values.shape != rewards.shape:
        raise ValueError(f"values has shape {tuple(values.shape)} but rewards has shape {tuple(rewards.shape)}")
    if not (0 <= gamma <= 1):
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    if bool((s & ~m).any()):
        raise ValueError("splits must lie within the mask (a state before a token the policy generated)")
    pos = torch.arange(rewards.shape[1], device=m.device).expand_as(m)
    first_valid = torch.where(m, pos, rewards.shape[1]).amin(dim=1)  # [N]
    start = torch.where(s, pos, -1).cummax(dim=1).values  # [N, R] the step's first position
    if bool((m & (start < first_valid[:, None])).any()):
        raise ValueError("splits must include each response's first token (position 0: the state s_0)")
    check_finite(rewards, "rewards", m)
    check_finite(values, "values", s)
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    r = torch.where(m, rewards, zero)
    v = torch.where(s, values.to(rewards.dtype), zero)
    boot = torch.zeros_like(r[:, 0])  # [N] what token t bootstraps from: V of a split next, else the running return
    step_return = []
    for t in reversed(range(r.shape[1])):
        g = r[:, t] + gamma * boot  # return from t to the step's end, bootstrapped with the next step's value
        boot = torch.where(m[:, t], torch.where(s[:, t], v[:, t], g), boot)
        step_return.append(g)
    G = torch.stack(step_return[::-1], dim=1)  # [N, R]: at a split p_j, the step's return
    idx = start.clamp(min=0)
    returns = torch.where(m, G.gather(1, idx), zero)
    advantages = torch.where(m, (G - v).gather(1, idx), zero)
    return advantages, returns


@dataclass(frozen=True)
class ContinuationBudget:
    """What the MC value estimates cost (add them up over steps with ``+``).

    states: prefixes continued (M); samples: continuations sampled (M * K); generated_tokens: tokens
    sampled in them; prefix_tokens: tokens of the prefixes (prompt + partial), once per state (the
    prefill an engine that shares a prefix's cache among its K samples pays).
    """

    states: int = 0
    samples: int = 0
    generated_tokens: int = 0
    prefix_tokens: int = 0

    def __add__(self, other: "ContinuationBudget") -> "ContinuationBudget":
        return ContinuationBudget(self.states + other.states, self.samples + other.samples,
                                  self.generated_tokens + other.generated_tokens,
                                  self.prefix_tokens + other.prefix_tokens)


def continuation_budget(requests: ContinuationRequests,
                        continuation_ids: Sequence[Sequence[int]]) -> ContinuationBudget:
    """Count the continuations actually sampled for ``requests`` ([M * K] token id lists, in the order
    of ``requests.repeated()``), every one of them: matched-budget comparisons count these samples
    and tokens on top of the rollouts the policy is trained on."""
    if len(continuation_ids) != len(requests) * requests.k:
        raise ValueError(f"{len(continuation_ids)} continuations for {len(requests)} states x k={requests.k}")
    return ContinuationBudget(states=len(requests), samples=len(continuation_ids),
                              generated_tokens=sum(len(c) for c in continuation_ids),
                              prefix_tokens=sum(len(p) + len(q) for p, q in zip(requests.prompts, requests.partials)))


def max_continuation_tokens(requests: ContinuationRequests, max_new_tokens: int) -> int:
    """Upper bound on the tokens the continuations can sample before any is drawn: K per state, each
    at most ``max_new_tokens - p`` (a completed response is no longer than a rollout's)."""
    return requests.k * sum(max(0, max_new_tokens - p) for p in requests.position)
