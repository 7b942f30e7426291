"""TRPO: conjugate gradient, Fisher-vector products, the max-KL step, and the guarded line search."""
import pytest
import torch
from torch import nn

from rlvr.algorithms import UPDATE_RULES, conjugate_gradient, fisher_vector_product, natural_step, trpo_step
from rlvr.algorithms.trpo import flat_grad


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A = M @ M.T + 0.5 * torch.eye(6, dtype=torch.float64)  # SPD
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, iters=6)  # exact in D iterations
    torch.testing.assert_close(A @ x, b)
    torch.testing.assert_close(x, torch.linalg.solve(A, b))
    x1 = conjugate_gradient(lambda v: A @ v, b, iters=1)  # one step = steepest descent on the quadratic
    alpha = (b @ b) / (b @ A @ b)
    torch.testing.assert_close(x1, alpha * b)


def test_fisher_vector_product_of_categorical_kl_is_softmax_fisher():
    """KL(p_old || softmax(theta)) has Hessian diag(p) - p p^T at theta = theta_old."""
    theta_old = torch.tensor([0.3, -1.0, 2.0, 0.0], dtype=torch.float64)
    theta = theta_old.clone().requires_grad_(True)
    p_old = torch.softmax(theta_old, 0)

    def kl():
        return (p_old * (p_old.log() - torch.log_softmax(theta, 0))).sum()

    v = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    fvp = fisher_vector_product(kl, [theta], damping=0.1)
    F = torch.diag(p_old) - torch.outer(p_old, p_old)
    torch.testing.assert_close(fvp(v), F @ v + 0.1 * v)
    torch.testing.assert_close(fvp(2 * v), 2 * (F @ v + 0.1 * v))  # the cached graph is reused correctly


def test_natural_step_lands_on_the_trust_region_boundary():
    """0.5 s^T F s = delta for the max-KL step s = sqrt(2 delta / x^T F x) x."""
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    g = torch.tensor([1.0, -1.0], dtype=torch.float64)
    s, xFx = natural_step(g, lambda v: A @ v, max_kl=0.02, cg_iters=2)
    assert float(0.5 * s @ A @ s) == pytest.approx(0.02)
    torch.testing.assert_close(s / s.norm(), torch.linalg.solve(A, g) / torch.linalg.solve(A, g).norm())
    assert float(xFx) > 0


class Policy(nn.Module):
    """A 2-layer categorical policy over 5 actions."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 5))

    def forward(self, s):
        return torch.log_softmax(self.net(s), -1)


def setup_problem(seed=0):
    torch.manual_seed(seed)
    pi = Policy().double()
    states = torch.randn(64, 4, dtype=torch.float64)
    with torch.no_grad():
        old_logits = pi(states)
        actions = torch.distributions.Categorical(logits=old_logits).sample()
    adv = torch.randn(64, dtype=torch.float64)
    old_logp_a = old_logits.gather(1, actions[:, None])[:, 0]

    def surrogate():  # L = mean r A
        return (torch.exp(pi(states).gather(1, actions[:, None])[:, 0] - old_logp_a) * adv).mean()

    def kl():  # exact mean KL(pi_old || pi) over states
        return (old_logits.exp() * (old_logits - pi(states))).sum(-1).mean()

    return pi, surrogate, kl


def flat(pi):
    return torch.cat([p.detach().reshape(-1) for p in pi.parameters()])


def test_trpo_step_improves_surrogate_within_kl():
    pi, surrogate, kl = setup_problem()
    with torch.no_grad():
        before = float(surrogate())
    stats = trpo_step(list(pi.parameters()), surrogate, kl, max_kl=0.01, cg_iters=10, damping=0.01)
    with torch.no_grad():
        after, kl_after = float(surrogate()), float(kl())
    assert stats.accepted and 0 < stats.step_frac <= 1
    assert 0 < kl_after <= 0.01
    assert after > before
    assert stats.kl == pytest.approx(kl_after) and stats.improvement == pytest.approx(after - before)
    assert stats.expected_improvement > 0
    # the quadratic model is good at this radius: the full step is taken and lands near the boundary
    assert stats.backtracks == 0 and kl_after > 0.005


def test_fisher_products_are_freed_before_the_line_search():
    """What the products keep (the trainer's kept Fisher graphs) is not held while the line search runs."""
    import gc
    import weakref

    pi, surrogate, kl = setup_problem()
    inner = fisher_vector_product(kl, list(pi.parameters()), damping=0.01)
    refs, calls, alive = [], [], []

    class Products:  # stands for a product that holds graphs; only trpo_step holds it
        def __init__(self):
            refs.append(weakref.ref(self))

        def __call__(self, v):
            calls.append(1)
            return inner(v)

    def kl_seen_by_the_line_search():
        gc.collect()
        alive.append(refs[0]() is not None)
        return kl()

    stats = trpo_step(list(pi.parameters()), surrogate, kl_seen_by_the_line_search, max_kl=0.01, damping=0.01,
                      fvp=Products())
    assert stats.accepted and calls  # the products were used (CG), then
    assert alive and not any(alive)  # gone at every trial point of the line search


def test_trpo_step_rejects_when_kl_cannot_be_met_and_restores_params():
    pi, surrogate, kl = setup_problem(1)
    before = flat(pi).clone()

    def kl_offset():  # same Fisher (constant shift), but every trial point violates KL <= delta
        return kl() + 0.02

    stats = trpo_step(list(pi.parameters()), surrogate, kl_offset, max_kl=0.01, max_backtracks=3)
    assert not stats.accepted and stats.step_frac == 0.0 and stats.backtracks == 3
    assert torch.equal(flat(pi), before)  # bit-identical


def test_trpo_step_rejects_when_surrogate_never_improves():
    """A surrogate whose linear model predicts improvement but that falls at every tried step size."""
    w = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)

    def surrogate():  # slope 1e-3 at 0, curvature 1e4: falls for any step longer than 2e-7
        return 1e-3 * w.sum() - 1e4 * (w**2).sum()

    def kl():
        return 0.5 * (w**2).sum()  # F = I

    stats = trpo_step([w], surrogate, kl, max_kl=0.01, damping=0.0, max_backtracks=2)
    assert not stats.accepted and stats.expected_improvement > 0 and stats.improvement < 0
    assert torch.equal(w.detach(), torch.zeros(2, dtype=torch.float64))


def test_trpo_step_with_zero_gradient_is_a_no_op():
    pi, _, kl = setup_problem(2)
    before = flat(pi).clone()
    zero = lambda: sum(p.sum() for p in pi.parameters()) * 0.0  # noqa: E731
    stats = trpo_step(list(pi.parameters()), zero, kl)
    assert not stats.accepted and stats.grad_norm == 0.0 and torch.equal(flat(pi), before)


def test_flat_grad_gives_zeros_for_unused_params_and_trpo_is_registered():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    torch.testing.assert_close(flat_grad((2 * a).sum(), [a, b]), torch.tensor([2.0, 2.0, 0.0, 0.0, 0.0]))
    assert UPDATE_RULES["trpo"] is trpo_step and not UPDATE_RULES.needs["trpo"].reference


def test_trpo_step_composes_with_token_losses():
    """The trainer's composition: surrogate = -policy_loss (unclipped), kl = aggregated k3 of KL(pi_old || pi)
    on the sampled tokens (its Hessian at theta_old is the empirical Fisher). A per-position logits table
    stands in for the LM."""
    from rlvr.algorithms import aggregate, kl_estimate, policy_loss

    torch.manual_seed(0)
    B, T, V = 16, 6, 7
    logits = torch.randn(T, V, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        tokens = torch.distributions.Categorical(logits=logits.expand(B, T, V)).sample()  # [B, T]
    mask = torch.arange(T)[None] < torch.randint(2, T + 1, (B,))[:, None]
    adv = torch.randn(B, dtype=torch.float64)

    def logp():
        return torch.log_softmax(logits, -1).expand(B, T, V).gather(2, tokens[..., None])[..., 0]  # [B, T]

    old_logp = logp().detach()
    surrogate = lambda: -policy_loss(logp(), old_logp, adv, mask, None, None)[0]  # noqa: E731
    kl = lambda: aggregate(kl_estimate(old_logp, logp(), "k3"), mask)  # noqa: E731
    with torch.no_grad():
        before = float(surrogate())
    stats = trpo_step([logits], surrogate, kl, max_kl=0.005, damping=0.01)
    with torch.no_grad():
        after = float(surrogate())
        assert stats.accepted and 0 < float(kl()) <= 0.005
        assert after > before and stats.improvement == pytest.approx(after - before)


def test_trpo_step_with_given_gradient_and_fvp_matches_the_default():
    """The micro-batching hooks: a precomputed flat gradient and Fisher-vector product give the same step."""
    pi, surrogate, kl = setup_problem(3)
    params = list(pi.parameters())
    g = flat_grad(surrogate(), params).detach()
    fvp = fisher_vector_product(kl, params, damping=0.1)
    start = flat(pi).clone()
    a = trpo_step(params, surrogate, kl, max_kl=0.01, grad=g, fvp=fvp)
    after_a = flat(pi).clone()
    with torch.no_grad():
        for p, x in zip(params, torch.split(start, [p.numel() for p in params])):
            p.copy_(x.view_as(p))
    b = trpo_step(params, surrogate, kl, max_kl=0.01)
    assert a.accepted and b.accepted and a.step_frac == b.step_frac
    torch.testing.assert_close(after_a, flat(pi))
