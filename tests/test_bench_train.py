"""`rlvr bench train` runs a real update on the tiny model and writes its JSON."""
import json

import pytest

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


def test_bench_task_writes_group_and_trace_numbers(tmp_path, tiny_model_path):
    """`rlvr bench task`: per task and setting, accuracy, mixed groups, lengths, truncation (also at
    smaller caps) and, for the chain tasks, how the running totals relate to the outcome; earlier
    entries of the file are kept."""
    out = tmp_path / "probe.json"
    out.write_text(json.dumps({"tasks": {"earlier [hf]": {"items": 1}}}))
    rc = main(["bench", "task", "--tasks", "arithmetic:chain4d1@5,arithmetic:add2", "--model", tiny_model_path,
               "--prompts", "2", "--n", "3", "--temperatures", "1.0", "--max-new-tokens", "6", "--caps", "4,64",
               "--threads", "1", "--out", str(out)])
    assert rc == 0
    tasks = json.loads(out.read_text())["tasks"]
    assert set(tasks) == {"earlier [hf]", "arithmetic:chain4d1@5 [hf]", "arithmetic:add2 [hf]"}
    chain = tasks["arithmetic:chain4d1@5 [hf]"]
    assert chain["items"] == 2 and chain["settings"]["n"] == 3 and chain["settings"]["threads"] == 1
    g, s = chain["greedy"], chain["T=1"]
    assert g["samples"] == 2 and s["samples"] == 6 and "mixed" in s and "mixed" not in g
    assert s["mixed"] + s["all_right"] + s["all_wrong"] == 1.0 and s["tokens"]["max"] <= 6
    assert set(s["truncated_at"]) == {"4"} and s["truncated_at"]["4"] >= s["truncated"]
    assert "steps" in s and "steps" not in tasks["arithmetic:add2 [hf]"]["T=1"]


def test_bench_task_summary_counts_groups_and_traces():
    from types import SimpleNamespace

    from rlvr.bench.task import summarize, trace_stats
    from rlvr.data import Example, chain_worked

    assert trace_stats([9, 7, 2, 9], chain_worked([9, 7, 2, 9])) == (True, 3, 3)
    # a line adding three numbers is read as its last "b + c = s" and counts as a wrong line
    assert trace_stats([9, 7, 2, 9], "Step 1: 9 + 7 + 2 = 18\nStep 2: 18 + 9 = 27") == (False, 1, 2)
    assert trace_stats([9, 7, 2, 9], "Step 1: 9 + 7 = 15\nStep 2: 15 + 2 = 17\nStep 3: 17 + 9 = 26") == (False, 2, 3)
    ex = [Example(str(i), [], "27", "t", "math", {"terms": [9, 7, 2, 9]}) for i in range(2)]
    texts = [chain_worked([9, 7, 2, 9]), "The answer is 26.", "x", "y"]
    rollout = SimpleNamespace(texts=texts, response_ids=[[0] * 50, [0] * 8, [0] * 64, [0] * 64],
                              finished=[True, True, False, True])
    s = summarize(ex, rollout, [1.0, 0.0, 0.0, 0.0], 2, [48], keep=1)
    assert (s["accuracy"], s["pass@2"], s["mixed"], s["all_wrong"], s["truncated"]) == (0.25, 0.5, 0.5, 0.5, 0.25)
    assert s["truncated_at"] == {"48": 0.75} and s["tokens"]["median"] == 57
    assert s["steps"]["trace_right"] == 0.25 and s["steps"]["accuracy_if_trace_right"] == 1.0
    assert s["steps"]["accuracy_if_trace_wrong"] == 0.0 and len(s["examples"]) == 1


def test_bench_step_runs_presets_round_robin_and_reports_paired_ratios(tmp_path, tiny_model_path, monkeypatch):
    """`rlvr bench step --ratios a/b`: step k of every preset runs before step k+1 of any (a load change
    hits both alike), and each pair's ratio is the one the per-step CPU seconds give."""
    import statistics

    import rlvr.bench.step as bench

    order, head_lr = [], {}
    real = bench.timed_step

    def spy(trainer):
        order.append(trainer.preset.name)
        head_lr[trainer.cfg.arm or trainer.preset.name] = trainer.cfg.trainer.value_head_lr
        return real(trainer)

    monkeypatch.setattr(bench, "timed_step", spy)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("model: {name: tiny-random}\ndata: {train: 'arithmetic:add2', train_limit: 32}\n"
                      "rollout: {n: 2, max_new_tokens: 4}\nreward: {workers: 0, verifier: test_len_parity}\n"
                      "trainer: {prompts_per_step: 2, micro_batch_size: 4}\n"
                      "arms: {critic_slow_head: {preset: ctrl_critic, trainer.value_head_lr: 1.0e-5}}\n")
    out = tmp_path / "step.json"
    rc = main(["bench", "step", str(recipe), "--presets", "grpo,ctrl_critic,critic_slow_head", "--steps", "3",
               "--warmup", "1", "--threads", "1", "--ratios", "ctrl_critic/grpo", "--out", str(out)])
    assert rc == 0
    assert order == ["grpo", "ctrl_critic", "ctrl_critic"] * 3  # the arm trains the ctrl_critic preset
    assert head_lr["critic_slow_head"] == 1e-5 and head_lr["ctrl_critic"] != 1e-5  # with its own setting
    r = json.loads(out.read_text())
    assert r["order"] == "round-robin"
    assert [x["preset"] for x in r["results"]] == ["grpo", "ctrl_critic", "critic_slow_head"]
    a, b = r["results"][1]["steps"], r["results"][0]["steps"]
    (pair,) = r["ratios"]
    assert pair["pair"] == "ctrl_critic/grpo"
    assert pair["cpu_s_median_of_rounds"] == statistics.median(x["cpu_s"] / y["cpu_s"] for x, y in zip(a, b))
    assert pair["cpu_s_of_medians"] == (statistics.median(x["cpu_s"] for x in a)
                                        / statistics.median(y["cpu_s"] for y in b))
    assert "time/logprob" in r["results"][1]["median"]  # the critic's value pass is timed


def test_bench_logprobs_times_both_variants_on_one_sampled_batch(tmp_path):
    """`rlvr bench logprobs`: one batch sampled with the boundary states, forward + backward timed with
    the rows as they are and with each prompt once; the JSON describes the batch."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("model: {name: tiny-random, trainable_layers: 1}\ndata: {train: 'arithmetic:add2', train_limit: 32}\n"
                      "rollout: {n: 4, max_new_tokens: 6}\nreward: {workers: 0, verifier: test_len_parity}\n"
                      "trainer: {prompts_per_step: 2, micro_batch_size: 4}\n")
    out = tmp_path / "lp.json"
    rc = main(["bench", "logprobs", str(recipe), "--prompts", "3", "--repeats", "1", "--threads", "1", "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["batch"]["rows"] == 12 and r["batch"]["prompts"] == 3 and r["batch"]["micro_batch_size"] == 4
    assert r["batch"]["trainable_blocks"] == 1 and 0 < r["batch"]["real_response_tokens"] <= 12 * 6
    assert set(r["fwd_bwd_cpu_s"]) == {"rows", "each_prompt_once"} and all(v > 0 for v in r["fwd_bwd_cpu_s"].values())
    import rlvr.models as M
    assert M._shared_prompt_plan.__name__ == "_shared_prompt_plan"  # restored after the run


def test_bench_logprobs_refuses_a_run_without_the_frozen_prefix(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("model: {name: tiny-random}\ndata: {train: 'arithmetic:add2', train_limit: 32}\n"
                      "rollout: {n: 2, max_new_tokens: 4}\nreward: {workers: 0, verifier: test_len_parity}\n")
    rc = main(["bench", "logprobs", str(recipe), "--prompts", "1", "--repeats", "1", "--out", str(tmp_path / "x.json")])
    assert rc != 0 and "frozen-prefix path" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_write_result_moves_earlier_runs_to_history(tmp_path):
    from rlvr.bench import write_result

    out = tmp_path / "r.json"
    for i in range(3):
        write_result(out, {"run": i})
    assert json.loads(out.read_text()) == {"run": 2, "history": [{"run": 0}, {"run": 1}]}
    write_result(out, {"run": 3}, keep=1)  # weightpush keeps its last 10 this way
    assert json.loads(out.read_text()) == {"run": 3, "history": [{"run": 2}]}


def test_bench_rollout_times_two_prefix_sharing_settings_side_by_side(tmp_path, tiny_model_path):
    """``rlvr bench rollout --share-prefix-min A,B``: both settings timed in every repeat, the same
    samples (the JSON's consistency check is of setting A's), each median and the ratio recorded."""
    import json

    from rlvr.cli import main

    out = tmp_path / "r.json"
    assert main(["bench", "rollout", "--engine", "hf", "--model", tiny_model_path, "--data", "arithmetic:chain4d1",
                 "--prompts", "4", "--max-new-tokens", "4", "--repeats", "2", "--threads", "1",
                 "--share-prefix-min", "16,0", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["share_prefix_min"] == 16 and r["share_prefix_min_b"] == 0
    assert len(r["wall_s_each"]) == len(r["wall_s_each_b"]) == 2
    assert r["wall_ratio_b_over_a"] == pytest.approx(r["wall_s_b"] / r["wall_s"], rel=0.05)  # of unrounded medians
    assert main(["bench", "rollout", "--engine", "vllm", "--share-prefix-min", "16"]) == 2
    assert main(["bench", "rollout", "--engine", "hf", "--share-prefix-min", "16,x"]) == 2
