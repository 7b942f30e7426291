"""`rlvr bench train` runs a real update on the tiny model and writes its JSON."""
import json

from rlvr.cli import main


def test_bench_train_writes_json(tmp_path, tiny_model_path):
    out = tmp_path / "train.json"
    rc = main(["bench", "train", "--model", tiny_model_path, "--batch", "2", "--prompt-len", "8",
               "--response-len", "8", "--steps", "2", "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["batch"] == 2 and r["prompt_len"] == 8 and len(r["ms_per_step_all"]) == 2
    assert r["tokens_per_s"] > 0 and r["ms_per_step"] > 0 and r["trainable_params"] == r["total_params"]
    assert r["mfu"] is None  # no known peak on CPU


def test_bench_arguments_accept_overrides_after_options():
    """Every benchmark parses; `rlvr bench step RECIPE --presets ... key=value` keeps the override."""
    from rlvr.commands.bench import TARGETS, parse

    args = parse("step", ["recipes/quickstart.yaml", "--presets", "ppo,trpo", "--steps", "1", "trainer.lr=1e-5",
                          "--threads", "2", "rollout.n=4"])
    assert args.recipe == "recipes/quickstart.yaml" and args.presets == "ppo,trpo" and args.threads == 2
    assert args.overrides == ["trainer.lr=1e-5", "rollout.n=4"]
    for target in TARGETS:  # no benchmark's parser is one that intermixed parsing refuses
        try:
            parse(target, [])
        except SystemExit:  # a required argument is missing: argparse's own message, not a TypeError
            pass
