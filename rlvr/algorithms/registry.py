"""Small registries of named choices, each entry carrying what it needs from the run.

A registry is a ``dict`` from name to function (so ``for name in ESTIMATORS`` and ``ESTIMATORS[name]``
keep working); ``register`` is the decorator that adds an entry and records its ``Needs``:

    @ESTIMATORS.register("gae", critic=True)
    def _est_gae(...): ...

Adding an estimator, a policy loss or an update rule is then one function plus its decorator line;
``Preset`` validation and ``check_rollout`` read the needs instead of parallel lists of names.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class Needs:
    """What an entry needs from the run.

    groups     several completions per prompt (rollout.n >= 2); ``why`` names the reason in errors
    critic     a value model (values [B, T])
    reference  a frozen reference policy (ref_logp [B, T])
    mc_values  values of intermediate states estimated from continuations sampled there (no critic)
    """

    groups: bool = False
    critic: bool = False
    reference: bool = False
    why: str = ""
    mc_values: bool = False


class Registry(dict):
    """name -> function, plus ``needs[name]``. Registering a different function under a taken name raises."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.needs: dict[str, Needs] = {}

    def register(
        self, name: str, *, groups: bool = False, critic: bool = False, reference: bool = False, why: str = "",
        mc_values: bool = False,
    ) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            if name in self and self[name] is not fn:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = fn
            self.needs[name] = Needs(groups, critic, reference, why, mc_values)
            return fn

        return deco

    def names_needing(self, what: str) -> tuple[str, ...]:
        """Names whose needs include ``what`` ("groups", "critic" or "reference"), in registration order."""
        return tuple(n for n in self if getattr(self.needs[n], what))


# How the policy moves each step. Entries: "first_order" (``losses.first_order_loss``), "trpo"
# (``trpo.trpo_step``), "dpo" (``dpo.dpo_loss``); each module registers its own.
UPDATE_RULES = Registry("update rule")
