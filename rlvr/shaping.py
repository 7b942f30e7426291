"""Reward shaping: from the verifiers' scores to what the estimator and the losses see.

Pure functions of one step's tensors, in the order the loop applies them:

    shape_scores      a truncated sample's score replaced (``algorithm.overlong: penalty``), then the
                      preset's soft overlong punishment added (Yu et al. 2025, eq. 13)
    loss_mask         the tokens trained on: every response token, or (``algorithm.overlong: mask``)
                      only those of samples that finished
    zero_std_filter   groups whose scores are all equal carry no signal for a group baseline;
                      ``algorithm.filter_zero_std_groups`` drops them from the update
    token_rewards     the score at the last response token, minus beta x KL(pi_old || pi_ref) on every
                      token when the preset puts the KL in the reward (Ziegler et al. 2019, eq. 2)
"""
from __future__ import annotations

from typing import Any

import torch

from rlvr import algorithms as A
from rlvr.algorithms.presets import Preset
from rlvr.config import Config

# preset fields beyond the core that this module runs (Preset.extensions())
EXTENSIONS = frozenset({"overlong_buffer"})


def shape_scores(cfg: Config, preset: Preset, scores: torch.Tensor, finished: torch.Tensor,
                 lengths: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """[N] scores -> ([N] shaped scores, metrics). ``finished`` [N] bool (ended on EOS/stop),
    ``lengths`` [N] response tokens. The shaped scores are what the estimator (and the zero-std
    check) sees; ``overlong: mask`` keeps truncated samples' real scores in the group statistics."""
    m: dict[str, float] = {}
    finished, lengths = finished.cpu(), lengths.cpu()
    if cfg.algorithm.overlong == "penalty":
        scores = torch.where(finished, scores, torch.full_like(scores, cfg.algorithm.overlong_penalty))
    if preset.overlong_buffer is not None:
        budget = cfg.rollout.max_new_tokens
        pen = A.overlong_penalty(lengths, budget, preset.overlong_cache_len(budget), preset.overlong_penalty)
        scores = scores + pen.to(scores.dtype)
        m["overlong/penalty_mean"] = float(pen.mean())
    return scores, m


def loss_mask(cfg: Config, response_mask: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
    """[N, R] the tokens the losses train on (``algorithm.overlong: mask`` drops truncated samples)."""
    mask = response_mask.clone()
    if cfg.algorithm.overlong == "mask":
        mask = mask * finished[:, None].float()
    return mask


def zero_std_filter(cfg: Config, scores: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """([N] bool rows kept, metrics): ``zero_std_groups`` is the fraction of groups whose scores are
    all equal; with ``algorithm.filter_zero_std_groups`` their rows are dropped (``filtered_samples``)."""
    inv, spread = A.group_spread(scores.cpu(), group_ids.cpu())
    zero_std = spread == 0
    m = {"zero_std_groups": float(zero_std.float().mean())}
    keep = torch.ones(len(scores), dtype=torch.bool)
    if cfg.algorithm.filter_zero_std_groups:
        keep = ~zero_std[inv]
        m["filtered_samples"] = float((~keep).float().mean())
    return keep, m


def token_rewards(preset: Preset, scores: torch.Tensor, response_mask: torch.Tensor,
                  kl_tokens: torch.Tensor | None, kl_coef: float) -> torch.Tensor:
    """[N, R] r_t: the score on the last response token; with the preset's ``kl_placement`` "reward"
    also -beta k(pi_old, pi_ref)_t on every token (``kl_tokens`` [N, R], None without a reference)."""
    r = A.outcome_rewards(scores.to(response_mask.device), response_mask) * response_mask
    if kl_tokens is not None and preset.kl_placement == "reward":
        r = r - kl_coef * kl_tokens
    return r


def step_metrics(scores: torch.Tensor, correct: torch.Tensor, response_mask: torch.Tensor,
                 finished: torch.Tensor) -> dict[str, Any]:
    """Reward, accuracy, length and truncation of the step's samples (before any shaping)."""
    N = response_mask.shape[0]
    lengths = response_mask.sum(1)
    return {"reward/mean": float(scores.mean()), "reward/std": float(scores.std()) if N > 1 else 0.0,
            "accuracy": float(correct.mean()), "response_length/mean": float(lengths.float().mean()),
            "truncation_rate": float((~finished).float().mean())}
