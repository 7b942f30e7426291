"""The critic's passes from the frozen-prefix boundary compute what full passes compute.

One training step of a critic preset on the tiny random model (top block of 2 trainable) is run
twice from the same seed: with ``trainer.frozen_prefix_cache`` (the critic runs its top block from
the boundary states the engine captured) and without it (every pass runs the whole critic over
every row, the straightforward computation). Values, value loss, the gradients handed to the critic
optimizer and the critic's parameters after the step agree to float32 rounding.
"""
import pytest
import torch

from rlvr.models import ValueModel, block_list, boundary_hidden, sequence_values
from rlvr.trainer import Trainer
from tiny import tiny_cfg


def _one_step(tmp_path, preset: str, cache: bool, init: bool = False) -> dict:
    cfg = tiny_cfg(tmp_path, **{"algorithm.preset": preset, "model.trainable_layers": 1, "trainer.total_steps": 1,
                                "trainer.prompts_per_step": 3, "trainer.micro_batch_size": 5,
                                "trainer.frozen_prefix_cache": cache, "algorithm.value_init_from_returns": init,
                                "trainer.output_dir": str(tmp_path / f"{preset}{cache}{init}")})
    tr = Trainer(cfg)
    assert (tr.learner.top_k == 1) == cache
    values, full_values, grads = [], [], []
    plain_values = tr.learner.values

    def spy_values(batch, rows):  # records what the trainer's value pass returns, and the full pass
        v = plain_values(batch, rows)
        R = batch["response_mask"].shape[1]
        with torch.no_grad():
            T = batch["input_ids"].shape[1]
            full = ValueModel.forward(tr.critic, batch["input_ids"][rows], batch["attention_mask"][rows])
        values.append((len(grads), v.detach().clone() * batch["response_mask"][rows]))
        full_values.append(full[:, T - R - 1:T - 1] * batch["response_mask"][rows])
        return v

    tr.learner.values = spy_values
    params = [q for q in tr.critic.parameters() if q.requires_grad]
    tr.learner.critic_optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: grads.append([q.grad.detach().clone() for q in params]))
    m = tr.train_step()
    return {"m": m, "values": values, "full_values": full_values, "grads": grads,
            "critic": {n: q.detach().clone() for n, q in tr.critic.named_parameters()},
            "trainable": {n for n, q in tr.critic.named_parameters() if q.requires_grad}}


# value_init_from_returns leaves the head bias with a gradient that is zero up to rounding, which
# AdamW's first step scales up to ~lr (see below): kept off where a second step (ppo) follows
@pytest.mark.parametrize("preset,init", [("ppo", False), ("ctrl_critic", False), ("ctrl_critic", True)])
def test_critic_step_from_the_boundary_equals_full_passes(tmp_path, preset, init):
    fast, slow = _one_step(tmp_path, preset, True, init), _one_step(tmp_path, preset, False, init)
    # every value pass of the fast step equals the full critic on the same rows at that moment
    assert len(fast["values"]) == len(slow["values"]) > 0
    for (_, v), full in zip(fast["values"], fast["full_values"]):
        torch.testing.assert_close(v, full, rtol=1e-5, atol=1e-5)
    # and, up to the first optimizer step (same parameters in both runs), the other run's values
    for (k, a), (_, b) in zip(fast["values"], slow["values"]):
        if k == 0:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert abs(fast["m"]["loss/value"] - slow["m"]["loss/value"]) <= 1e-5 * max(1.0, abs(slow["m"]["loss/value"]))
    assert fast["m"]["value/mean"] == pytest.approx(slow["m"]["value/mean"], rel=1e-5, abs=1e-6)
    # the gradients of every critic optimizer step (ppo: two epochs), then the parameters
    assert len(fast["grads"]) == len(slow["grads"]) == {"ppo": 2, "ctrl_critic": 1}[preset]
    for ga, gb in zip(fast["grads"], slow["grads"]):
        scale = max(float(g.abs().max()) for g in gb)
        assert scale > 0
        for a, b in zip(ga, gb):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)
    # AdamW's first step moves each weight by about lr * g / (|g| + eps): where a gradient is zero
    # up to rounding (the value head's bias right after its initialisation from the returns), that
    # step is rounding noise scaled up to as much as lr; everywhere else the weights agree closely
    lr = 1e-3
    names = [n for n in slow["critic"] if n in slow["trainable"]]
    noisy = {n: torch.zeros_like(slow["critic"][n], dtype=torch.bool) for n in names}
    for step in slow["grads"]:
        top = max(float(g.abs().max()) for g in step)
        for n, g in zip(names, step):
            noisy[n] |= g.abs() <= 1e-6 * top
    for n, q in slow["critic"].items():
        a = fast["critic"][n]
        if n in noisy:
            noise = noisy[n]
            assert float(((a - q).abs() * noise).max()) <= lr * len(slow["grads"]), n
            a, q = a[~noise], q[~noise]
        torch.testing.assert_close(a, q, rtol=1e-5, atol=1e-6, msg=n)


def _grouped_batch(tr, n_prompts: int = 3, n: int = 4):
    from rlvr.data import encode_prompt
    from rlvr.rollout.base import SamplingParams

    prompts = [encode_prompt(tr.tokenizer, ex) for ex in tr.train_examples[:n_prompts]]
    ro = tr.engine.generate(prompts, SamplingParams(n=n, temperature=1.0, max_new_tokens=6, seed=0, capture_block=1))
    return ro.to_tensors(tr.tokenizer.pad_token_id)


def test_critic_top_blocks_see_each_prompt_once(tmp_path):
    """Rows that share a prompt share its states in the trainable blocks: the critic's top block
    runs over each distinct prompt once (plus every row's own response), not over every row's copy,
    and the values and their gradients are the full critic's."""
    tr = Trainer(tiny_cfg(tmp_path, **{"algorithm.preset": "ppo", "model.trainable_layers": 1}))
    b = _grouped_batch(tr)
    ids, attn = b["input_ids"], b["attention_mask"]
    N, T = ids.shape
    R = b["response_mask"].shape[1]
    seen = []
    top = block_list(tr.critic.trunk)[2][-1]
    handle = top.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs.get("hidden_states", args[0] if args else None).shape[:2]),
                                           with_kwargs=True)
    with torch.no_grad():
        torch.nn.init.normal_(tr.critic.head.linear.weight, std=0.5)  # non-zero values to compare
    fast = sequence_values(tr.critic, ids, attn, R, boundary=(1, b["boundary_hidden"]))
    handle.remove()
    tokens = sum(s[0] * s[1] for s in seen)
    assert tokens < 0.75 * N * T, (tokens, N * T)
    full = ValueModel.forward(tr.critic, ids, attn)[:, T - R - 1:T - 1]
    m = b["response_mask"]
    torch.testing.assert_close(fast * m, full * m, rtol=1e-5, atol=1e-5)
    # gradients of a value loss reach the same parameters with the same values
    params = [q for q in tr.critic.parameters() if q.requires_grad]
    w = torch.linspace(-1, 1, N * R).reshape(N, R) * m
    g_fast = torch.autograd.grad((fast * w).sum(), params, allow_unused=True)
    g_full = torch.autograd.grad((full * w).sum(), params, allow_unused=True)
    for a, c in zip(g_fast, g_full):
        assert (a is None) == (c is None)
        if a is not None:
            torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)


def test_shared_prompt_states_follow_each_rows_padding(tmp_path):
    """Rows with different prompts (and so different left padding) are not merged; a batch of
    distinct prompts gives the full critic's values."""
    tr = Trainer(tiny_cfg(tmp_path, **{"algorithm.preset": "ppo", "model.trainable_layers": 1}))
    b = _grouped_batch(tr, n_prompts=5, n=1)
    ids, attn = b["input_ids"], b["attention_mask"]
    R = b["response_mask"].shape[1]
    with torch.no_grad():
        torch.nn.init.normal_(tr.critic.head.linear.weight, std=0.5)
        hb = boundary_hidden(tr.critic, ids, attn, 1)
        fast = sequence_values(tr.critic, ids, attn, R, boundary=(1, hb))
        full = ValueModel.forward(tr.critic, ids, attn)[:, ids.shape[1] - R - 1:-1]
    m = b["response_mask"]
    torch.testing.assert_close(fast * m, full * m, rtol=1e-5, atol=1e-5)


def test_shared_prompt_states_with_responses_of_different_lengths(tmp_path):
    """Responses that end early (right padding) pack only their real tokens; every read value and
    its gradient are the full critic's."""
    tr = Trainer(tiny_cfg(tmp_path, **{"algorithm.preset": "ppo", "model.trainable_layers": 1}))
    b = _grouped_batch(tr)
    ids, attn, m = b["input_ids"].clone(), b["attention_mask"].clone(), b["response_mask"].clone()
    N, T = ids.shape
    R = m.shape[1]
    P = T - R
    for r in range(N):  # row r keeps r % R + 1 response tokens, the rest is padding
        keep = r % R + 1
        ids[r, P + keep:] = tr.tokenizer.pad_token_id
        attn[r, P + keep:] = 0
        m[r, keep:] = 0
    with torch.no_grad():
        torch.nn.init.normal_(tr.critic.head.linear.weight, std=0.5)
    fast = sequence_values(tr.critic, ids, attn, R, boundary=(1, b["boundary_hidden"]))
    full = ValueModel.forward(tr.critic, ids, attn)[:, T - R - 1:T - 1]
    torch.testing.assert_close(fast * m, full * m, rtol=1e-5, atol=1e-5)
    params = [q for q in tr.critic.parameters() if q.requires_grad]
    w = torch.linspace(-1, 1, N * R).reshape(N, R) * m
    for a, c in zip(torch.autograd.grad((fast * w).sum(), params), torch.autograd.grad((full * w).sum(), params)):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)


def test_policy_top_blocks_see_each_prompt_once(tmp_path):
    """The policy's log-probs from the boundary run each distinct prompt once in the trainable
    blocks too: log-probs, entropies and the gradients of a policy loss are the full model's at every
    real response token."""
    from rlvr.models import sequence_logprobs

    tr = Trainer(tiny_cfg(tmp_path, **{"algorithm.preset": "grpo", "model.trainable_layers": 1}))
    b = _grouped_batch(tr)
    ids, attn, m = b["input_ids"].clone(), b["attention_mask"].clone(), b["response_mask"].clone()
    N, T = ids.shape
    R = m.shape[1]
    for row, cut in ((0, 2), (3, 4), (5, 1), (10, 5)):  # responses that ended early, right-padded
        ids[row, T - cut:] = tr.tokenizer.pad_token_id
        attn[row, T - cut:] = 0
        m[row, R - cut:] = 0
    assert 0 < int(m.sum()) < N * R
    seen = []
    top = block_list(tr.policy.base_model)[2][-1]
    handle = top.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs.get("hidden_states", args[0] if args else None).shape[:2]),
        with_kwargs=True)
    fast, fast_ent = sequence_logprobs(tr.policy, ids, attn, R, temperature=0.7, return_entropy=True,
                                       boundary=(1, b["boundary_hidden"]))
    handle.remove()
    assert sum(s[0] * s[1] for s in seen) < 0.75 * N * T
    full, full_ent = sequence_logprobs(tr.policy, ids, attn, R, temperature=0.7, return_entropy=True)
    torch.testing.assert_close(fast * m, full * m, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_ent * m, full_ent * m, rtol=1e-5, atol=1e-5)
    params = [q for q in tr.policy.parameters() if q.requires_grad]
    w = torch.linspace(-1, 1, N * R).reshape(N, R) * m
    g_fast = torch.autograd.grad((fast * w).sum(), params, allow_unused=True)
    g_full = torch.autograd.grad((full * w).sum(), params, allow_unused=True)
    assert any(g is not None for g in g_fast)
    for a, c in zip(g_fast, g_full):
        assert (a is None) == (c is None)
        if a is not None:
            torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("preset", ["grpo", "ctrl_critic"])
def test_policy_step_from_the_boundary_equals_full_passes(tmp_path, preset):
    """One step with the frozen-prefix cache (packed prompts in the policy's and critic's top block)
    and one without: the same policy loss, gradient norm and policy weights to float32 rounding."""
    def step(cache):
        cfg = tiny_cfg(tmp_path, **{"algorithm.preset": preset, "model.trainable_layers": 1, "trainer.total_steps": 1,
                                    "trainer.prompts_per_step": 3, "trainer.micro_batch_size": 12,
                                    "trainer.frozen_prefix_cache": cache,
                                    "trainer.output_dir": str(tmp_path / f"{preset}{cache}")})
        tr = Trainer(cfg)
        assert (tr.learner.top_k == 1) == cache
        before = {n: q.detach().clone() for n, q in tr.policy.named_parameters() if q.requires_grad}
        m = tr.train_step()
        return m, before, {n: q.detach().clone() for n, q in tr.policy.named_parameters() if q.requires_grad}

    (fm, fb, fa), (sm, sb, sa) = step(True), step(False)
    assert fm["loss/policy"] == pytest.approx(sm["loss/policy"], rel=1e-5, abs=1e-6)
    assert fm["grad_norm"] == pytest.approx(sm["grad_norm"], rel=1e-4)
    moved = max(float((sa[n] - sb[n]).abs().max()) for n in sa)
    assert moved > 1e-4
    for n in sa:  # Adam's first step: about lr where |g| >> eps; rounding may flip a few near-zero entries
        torch.testing.assert_close(fb[n], sb[n], rtol=0, atol=0, msg=n)  # the same starting weights
        torch.testing.assert_close(fa[n], sa[n], rtol=0, atol=1e-3 * 1.0, msg=n)
        assert float(((fa[n] - sa[n]).abs() > 1e-6).float().mean()) < 5e-3, n
