"""Update rules: how the policy moves on one batch of scored rollouts.

The trainer prepares the batch (pi_old and reference log-probs, values, advantages, importance
weights) and calls the rule the preset names, ``UPDATES[preset.update_rule](learner, inputs)``; it
never branches on the rule's name, only on its declaration (``NEEDS[name]``: e.g. whether it runs
under FSDP2). A rule is one module with one decorated function:

    first_order   K epochs x mini-batches of ``objective.micro_batch_loss``, backprop, optimizer step
    trpo          natural-gradient step in a KL(pi_old || pi) trust region (``algorithms.trpo``);
                  a critic still takes first-order value-loss steps
    dpo           pairwise preference loss on verifier pairs inside each group (``algorithms.dpo``)

The pure mathematics of each rule lives in :mod:`rlvr.algorithms` (registered there in
``UPDATE_RULES`` with what it needs: groups, critic, reference); these modules drive the model passes.
"""
from .base import NEEDS, UPDATES, RuleNeeds, UpdateInputs, register
from . import dpo, first_order, trpo  # noqa: E402,F401  (each module registers its rule)

__all__ = ["NEEDS", "UPDATES", "RuleNeeds", "UpdateInputs", "register"]
