"""Cheap input checks shared by the algorithm functions.

Each check costs at most one host sync (``bool(tensor)``) and raises ``ValueError`` naming the
argument, so a bad batch fails at the function boundary instead of as a NaN loss much later.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def check_choice(value: str, choices: Iterable[str], name: str) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")


def check_shape(x: Tensor, shape: torch.Size | tuple[int, ...], name: str, like: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(x.shape)} but {like} has shape {tuple(shape)}")


def check_2d(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [B, T], got shape {tuple(x.shape)}")


def bool_mask(mask: Tensor, like: Tensor, name: str = "mask", like_name: str = "input") -> Tensor:
    """Shape-check ``mask`` against ``like`` and return it as a bool tensor [B, T]."""
    check_shape(mask, like.shape, name, like_name)
    return mask if mask.dtype == torch.bool else mask != 0


def check_nonempty(mask: Tensor, name: str = "mask") -> None:
    """Raise if the bool ``mask`` selects no element (one host sync)."""
    if mask.numel() == 0 or not bool(mask.any()):
        raise ValueError(f"{name} has no valid tokens (all zeros); nothing to average over")


def check_finite(x: Tensor, name: str, mask: Tensor | None = None) -> None:
    """Raise if ``x`` has NaN/Inf (only at ``mask`` positions when a bool mask is given)."""
    if not x.is_floating_point():
        return
    if mask is not None:
        x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf")
