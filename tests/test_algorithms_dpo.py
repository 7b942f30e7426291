"""DPO: loss identities, pair formation from verifier scores, and the offline pairs loader."""
import gzip
import json
import math

import pytest
import torch

from rlvr.algorithms import UPDATE_RULES, dpo_loss, sequence_logp, verifier_pairs
from rlvr.errors import DataError
from rlvr.pairs import load_preference_pairs


def test_dpo_loss_is_log2_when_policy_equals_reference():
    g = torch.Generator().manual_seed(0)
    ref_w, ref_l = torch.randn(5, generator=g) * 10, torch.randn(5, generator=g) * 10
    loss, stats = dpo_loss(ref_w.clone(), ref_l.clone(), ref_w, ref_l, beta=0.1)
    assert float(loss) == pytest.approx(math.log(2))
    assert float(stats["dpo/margin"]) == 0.0 and float(stats["dpo/pairs"]) == 5


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    ref_w = torch.tensor([-12.0, -7.0], dtype=torch.float64)
    ref_l = torch.tensor([-9.0, -15.0], dtype=torch.float64)
    w = ref_w.clone().requires_grad_(True)
    l = ref_l.clone().requires_grad_(True)
    loss, _ = dpo_loss(w, l, ref_w, ref_l, beta=0.5)
    gw, gl = torch.autograd.grad(loss, (w, l))
    # at h = 0: dL/dlogpi(y_w) = -beta sigmoid(0) / P = -0.125, and +0.125 for y_l
    torch.testing.assert_close(gw, torch.full_like(gw, -0.125))
    torch.testing.assert_close(gl, torch.full_like(gl, 0.125))
    # a gradient-descent step raises log pi(y_w), lowers log pi(y_l), and the loss falls below log 2
    loss2, stats = dpo_loss((w - gw).detach(), (l - gl).detach(), ref_w, ref_l, beta=0.5)
    assert float(loss2) < math.log(2) and float(stats["dpo/accuracy"]) == 1.0


def test_dpo_loss_matches_formula_off_reference():
    w, l = torch.tensor([-3.0]), torch.tensor([-5.0])
    rw, rl = torch.tensor([-4.0]), torch.tensor([-4.5])
    loss, stats = dpo_loss(w, l, rw, rl, beta=0.2)
    h = 0.2 * ((-3 + 4) - (-5 + 4.5))  # 0.3
    assert float(loss) == pytest.approx(-math.log(1 / (1 + math.exp(-h))))
    assert float(stats["dpo/chosen_reward"]) == pytest.approx(0.2)
    assert float(stats["dpo/rejected_reward"]) == pytest.approx(-0.1)


def test_sequence_logp_sums_valid_tokens():
    logp = torch.tensor([[-1.0, -2.0, float("nan")], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(sequence_logp(logp, mask), torch.tensor([-3.0, -1.5]))


def test_verifier_pairs_on_a_known_layout():
    #            group 7: 1 correct of 3 | group 3: all wrong | group 5: 2 correct of 4 | group 9: singleton
    scores = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    gids = torch.tensor([7, 7, 7, 3, 3, 5, 5, 5, 5, 9])
    p = verifier_pairs(scores, gids)
    # group 7: best = 1, worst (ties by index, reversed) = 2; group 5: (5, 8), (7, 6)
    assert p.chosen.tolist() == [1, 5, 7] and p.rejected.tolist() == [2, 8, 6]
    assert (p.groups, p.groups_without_pair) == (4, 2)
    assert all(scores[c] > scores[r] and gids[c] == gids[r] for c, r in zip(p.chosen, p.rejected))
    capped = verifier_pairs(scores, gids, max_pairs_per_group=1)
    assert capped.chosen.tolist() == [1, 5] and capped.rejected.tolist() == [2, 8]


def test_verifier_pairs_graded_scores_and_margin():
    scores = torch.tensor([0.2, 0.9, 0.5, 0.6])
    p = verifier_pairs(scores, [0, 0, 0, 0])
    assert list(zip(p.chosen.tolist(), p.rejected.tolist())) == [(1, 0), (3, 2)]  # best-worst, then inner
    p = verifier_pairs(scores, [0, 0, 0, 0], margin=0.2)  # inner gap 0.1 is too small
    assert list(zip(p.chosen.tolist(), p.rejected.tolist())) == [(1, 0)]
    assert UPDATE_RULES.needs["dpo"].groups and UPDATE_RULES.needs["dpo"].reference


# ---------------------------------------------------------------- offline pairs


def write(path, rows, gz=False):
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    (gzip.open(path, "wt") if gz else open(path, "w")).write(text)
    return path


def test_load_preference_pairs(tmp_path):
    path = write(tmp_path / "p.jsonl.gz", [{"prompt": "1+1=", "chosen": "2", "rejected": "3"}, "",
                                           {"prompt": "2+2=", "chosen": "4", "rejected": "5", "extra": 1}], gz=True)
    pairs = load_preference_pairs(path)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("1+1=", "2", "3"), ("2+2=", "4", "5")]
    assert pairs[1].where == f"{path}:3"
    assert len(load_preference_pairs(path, limit=1)) == 1


@pytest.mark.parametrize(
    "row,message",
    [
        ({"prompt": "p", "chosen": "a"}, "p.jsonl:2: missing field 'rejected'"),
        ({"prompt": "p", "chosen": 3, "rejected": "b"}, "p.jsonl:2: field 'chosen' must be a non-empty string"),
        ({"prompt": "p", "chosen": "a", "rejected": "a"}, "p.jsonl:2: 'chosen' and 'rejected' are identical"),
        ("{not json", "p.jsonl:2: invalid JSON"),
    ],
)
def test_load_preference_pairs_errors_name_file_and_line(tmp_path, row, message):
    path = write(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(DataError, match=message):
        load_preference_pairs(path)


def test_load_preference_pairs_missing_or_empty_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_preference_pairs(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no preference pairs"):
        load_preference_pairs(write(tmp_path / "e.jsonl", [""]))
