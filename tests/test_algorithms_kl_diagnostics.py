"""KL estimators and controllers; explained variance, clip table, gradient variance."""
import math

import pytest
import torch

from rlvr.algorithms import (
    AdaptiveKLController,
    DoublingKLController,
    FixedKLController,
    clip_table,
    explained_variance,
    gradient_variance,
    kl_estimate,
    value_bias,
)


def test_kl_estimators_formulas_and_k3_nonnegative():
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(1000, generator=g, dtype=torch.float64) * 5
    ref = torch.randn(1000, generator=g, dtype=torch.float64) * 5
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), logp - ref)
    torch.testing.assert_close(kl_estimate(logp, ref, "k2"), 0.5 * (logp - ref) ** 2)
    k3 = kl_estimate(logp, ref, "k3")
    assert (k3 >= 0).all() and torch.isfinite(k3).all()
    r = torch.tensor([0.5, 2.0], dtype=torch.float64)  # k3 = (r - 1) - log r with r = ref/pi
    torch.testing.assert_close(kl_estimate(torch.zeros(2, dtype=torch.float64), r.log(), "k3"), (r - 1) - r.log())
    assert float(kl_estimate(torch.tensor(-100.0), torch.tensor(0.0), "k3")) < math.inf  # clamped log-ratio


def test_k3_monte_carlo_expectation_is_kl():
    """E_{x~pi}[k3] = KL(pi || ref) (and k1 too); k3 has lower variance when pi and ref are close.

    200k samples from a fixed generator; tolerance 5 standard errors of the sample mean
    (standard error estimated from the samples themselves).
    """
    g = torch.Generator().manual_seed(7)
    pi = torch.softmax(torch.tensor([0.2, -1.0, 1.3, 0.0, 0.5], dtype=torch.float64), 0)
    ref = torch.softmax(torch.tensor([0.0, 0.4, 1.0, -0.5, 0.9], dtype=torch.float64), 0)
    exact = float((pi * (pi / ref).log()).sum())
    N = 200_000
    x = torch.multinomial(pi, N, replacement=True, generator=g)
    for kind in ("k1", "k3"):
        k = kl_estimate(pi.log()[x], ref.log()[x], kind)
        se = float(k.std()) / math.sqrt(N)
        assert abs(float(k.mean()) - exact) < 5 * se, (kind, float(k.mean()), exact, se)
    close = torch.softmax(pi.log() + 0.05 * torch.randn(5, generator=g, dtype=torch.float64), 0)
    k1 = kl_estimate(pi.log()[x], close.log()[x], "k1")
    k3 = kl_estimate(pi.log()[x], close.log()[x], "k3")
    assert float(k3.var()) < 0.1 * float(k1.var())


def test_kl_unknown_kind_and_shape_mismatch():
    with pytest.raises(ValueError, match="unknown kind 'k4'"):
        kl_estimate(torch.zeros(3), torch.zeros(3), "k4")
    with pytest.raises(ValueError, match="ref_logp"):
        kl_estimate(torch.zeros(3), torch.zeros(4), "k1")


def test_adaptive_kl_controller_moves_toward_target():
    c = AdaptiveKLController(init=0.1, target=6.0, horizon=10000)
    c.update(current_kl=9.0, n_steps=256)  # above target -> coefficient up (error clipped to +0.2)
    assert c.value == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000))
    up = c.value
    c.update(current_kl=5.7, n_steps=256)  # error -0.05
    assert c.value == pytest.approx(up * (1 - 0.05 * 256 / 10000)) and c.value < up
    c.update(current_kl=0.0, n_steps=100)  # clipped at -0.2
    assert c.value < up
    v = c.value
    c.update(current_kl=6.0, n_steps=100)
    assert c.value == v
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, 0.0, 100)


def test_fixed_and_doubling_controllers():
    f = FixedKLController(0.05)
    f.update(100.0, 10)
    assert f.value == 0.05
    d = DoublingKLController(init=1.0, target=0.01)
    d.update(0.1)  # > 1.5 target
    assert d.value == 2.0
    d.update(0.001)  # < target / 1.5
    d.update(0.001)
    assert d.value == 0.5
    d.update(0.012)  # within [target/1.5, 1.5 target]
    assert d.value == 0.5


def test_explained_variance():
    R = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    m = torch.tensor([[1, 1, 1, 0]])
    assert float(explained_variance(R.clone(), R, m)) == pytest.approx(1.0)
    const = torch.full_like(R, 2.0)  # the mean of the valid returns: explains nothing
    assert float(explained_variance(const, R, m)) == pytest.approx(0.0)
    junk = torch.tensor([[1.0, 2.0, 3.0, 1e9]])  # masked position ignored
    assert float(explained_variance(junk, R, m)) == pytest.approx(1.0)
    # 1 - Var[R - V]/Var[R]: R = [1,2,3], V = [1,1,1] -> R - V = [0,1,2], Var ratio = 1
    assert float(explained_variance(torch.ones_like(R), R, m)) == pytest.approx(0.0)
    assert math.isnan(float(explained_variance(R, torch.ones_like(R), m)))  # Var[R] = 0
    with pytest.raises(ValueError, match="no valid tokens"):
        explained_variance(R, R, torch.zeros_like(m))


def test_explained_variance_is_undefined_when_the_returns_differ_only_by_rounding():
    """Every sample scored alike: lambda-returns built in float32 as A + V (GAE) equal the reward up to
    rounding, so their variance is ~1e-16 and 1 - Var[R - V]/Var[R] would be about -1e13 (seen in a
    study's log, where it dragged the plotted mean). Returns constant to float32 precision: nan."""
    g = torch.Generator().manual_seed(0)
    v = torch.rand(8, 16, generator=g) * 0.6
    r = torch.zeros_like(v)
    r[:, -1] = 0.5  # every sample scored 0.5
    adv, nxt, nxt_v = torch.zeros_like(v), torch.zeros(8), torch.zeros(8)
    for t in reversed(range(16)):  # GAE with gamma = lambda = 1 in float32, returns = A + V
        nxt = r[:, t] + nxt_v - v[:, t] + nxt
        adv[:, t], nxt_v = nxt, v[:, t]
    returns = adv + v  # 0.5 everywhere, up to float32 rounding
    m = torch.ones_like(v, dtype=torch.long)
    assert float(returns.double().var()) > 0  # not exactly constant
    assert math.isnan(float(explained_variance(v, returns, m)))
    # a real spread just above the rounding floor is still measured
    spread = returns + 1e-4 * torch.arange(16.0)
    assert math.isfinite(float(explained_variance(v, spread, m)))


def test_clip_table_cells():
    ratio = torch.tensor([[1.3, 0.7, 1.3, 0.7, 1.0, 1.3, 5.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0, 0.0, 1.0]])
    m = torch.tensor([[1, 1, 1, 1, 1, 1, 0]])
    t = clip_table(ratio, adv, m, 0.2, 0.2)
    n = 6
    assert {k: round(float(v) * n) for k, v in t.items()} == {
        "clip/pos_high": 1, "clip/pos_low": 1, "clip/neg_high": 1, "clip/neg_low": 1, "clip/inside": 1,
    }
    t = clip_table(ratio, adv[:, 0].expand(1), m, 0.2, 0.35)  # [B] advantages; wider upper band
    assert float(t["clip/pos_high"]) == 0 and float(t["clip/inside"]) == pytest.approx(4 / 6)


def test_gradient_variance_hand_and_statistical():
    out = gradient_variance([torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])])
    # mean [2, 0]; unbiased variance of (1, 3) = 2; relative = 2 / (2 * 4)
    assert float(out["trace_var"]) == pytest.approx(2.0)
    assert float(out["mean_sq_norm"]) == pytest.approx(4.0)
    assert float(out["relative"]) == pytest.approx(0.25)
    # K noisy estimates g_k = mu + sigma * eps: E trace_var = D sigma^2 and
    # E ||mean||^2 = |mu|^2 + D sigma^2 / K, so relative ~ D sigma^2 / (K |mu|^2 + D sigma^2)
    g = torch.Generator().manual_seed(0)
    K, D, sigma = 8, 20000, 0.5
    mu = torch.ones(D)
    grads = mu + sigma * torch.randn(K, D, generator=g)
    out = gradient_variance(grads)
    assert float(out["trace_var"]) == pytest.approx(D * sigma**2, rel=0.02)
    assert float(out["relative"]) == pytest.approx(D * sigma**2 / (K * D + D * sigma**2), rel=0.02)
    with pytest.raises(ValueError, match="K >= 2"):
        gradient_variance([torch.ones(3)])


def test_value_bias_is_the_mean_error_of_the_first_state_value():
    """value_bias = mean over rows (whose first response token counts) of V(s_0) - G_0: how far the
    critic's value of the prompt sits from what the prompt returned. A critic whose values swing
    around the batch's score shows it even when explained variance is 0."""
    V = torch.tensor([[0.9, 0.5, 0.1], [0.8, 0.8, 0.0], [0.2, 0.2, 0.2]])
    R = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    m = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]])  # row 3 has no valid token: left out
    assert float(value_bias(V, R, m)) == pytest.approx(((0.9 - 1.0) + (0.8 - 0.0)) / 2)
    const = torch.full((4, 5), 0.7)  # a constant value: explained variance 0, bias = 0.7 - mean score
    G = torch.tensor([1.0, 0.0, 1.0, 0.0])[:, None].expand(4, 5)
    ones = torch.ones(4, 5)
    assert float(explained_variance(const, G, ones)) == pytest.approx(0.0, abs=1e-6)
    assert float(value_bias(const, G, ones)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no valid"):
        value_bias(V, R, torch.zeros(3, 3))
