"""`attrpipe plan`: the arithmetic of a round, by hand, and the printed table."""

import argparse

import pytest

from attrpipe.plan import add_plan_parser, format_plan, image_tokens, plan_round

BASE = dict(listings=5000, attributes_per_listing=5, chains=7, tokens_per_chain=120, prompt_tokens=342, gpus=4,
            tokens_per_s=2500, prefill_tokens_per_s=20000, keep_rate=0.6, pairs_per_kept=2, dpo_epochs=1,
            train_tokens_per_s=6000, eval_listings=120, eval_tokens=200, startup_s=120)


def test_image_tokens_match_qwen2_5_vl():
    assert image_tokens(224) == 64  # (224 / 28)^2, the tiny model's measured count
    assert image_tokens(448) == 256
    assert image_tokens(230) == 81  # a partial patch rounds up


def test_pseudolabel_arithmetic():
    p = plan_round(**BASE)["stages"]["pseudolabel"]
    assert p["requests"] == 25_000 and p["chains"] == 175_000
    assert p["generated_tokens"] == 25_000 * 7 * 120 == 21_000_000
    assert p["prompt_tokens"] == 25_000 * 342  # once per request, not per chain
    gpu_s = 21_000_000 / 2500 + 25_000 * 342 / 20000
    assert p["gpu_hours"] == pytest.approx(gpu_s / 3600)
    assert p["wall_hours"] == pytest.approx((gpu_s / 4 + 120) / 3600)


def test_dpo_and_evaluation_arithmetic():
    s = plan_round(**BASE)["stages"]
    assert s["dpo"]["kept_examples"] == pytest.approx(15_000)
    assert s["dpo"]["requests"] == pytest.approx(30_000)
    trained = 30_000 * 2 * (342 + 120)
    assert s["dpo"]["generated_tokens"] == pytest.approx(trained)
    assert s["dpo"]["gpu_hours"] == pytest.approx(trained / 6000 / 3600)
    e = s["evaluation"]
    assert e["requests"] == 600 and e["generated_tokens"] == 600 * 200
    assert e["gpu_hours"] == pytest.approx((600 * 200 / 2500 + 600 * 342 / 20000) / 3600)


def test_scaling_rules():
    one = plan_round(**{**BASE, "startup_s": 0})
    # twice the GPUs: same GPU-hours, half the wall time
    two = plan_round(**{**BASE, "startup_s": 0, "gpus": 8})
    assert two["round"]["gpu_hours"] == pytest.approx(one["round"]["gpu_hours"])
    assert two["round"]["wall_hours"] == pytest.approx(one["round"]["wall_hours"] / 2)
    # efficiency stretches wall time only; rounds multiply everything
    half = plan_round(**{**BASE, "startup_s": 0, "efficiency": 0.5})
    assert half["round"]["wall_hours"] == pytest.approx(2 * one["round"]["wall_hours"])
    three = plan_round(**{**BASE, "rounds": 3})
    assert three["total"]["gpu_hours"] == pytest.approx(3 * three["round"]["gpu_hours"])
    # 9 chains instead of 7: generation scales, prefill does not
    nine = plan_round(**{**BASE, "chains": 9})["stages"]["pseudolabel"]
    assert nine["generated_tokens"] == pytest.approx(21_000_000 * 9 / 7)
    assert nine["prompt_tokens"] == 25_000 * 342
    # the round is the sum of its stages
    r = one["round"]
    assert r["gpu_hours"] == pytest.approx(sum(s["gpu_hours"] for s in one["stages"].values()))


def test_missing_throughputs_are_reported_not_guessed():
    p = plan_round(**{**BASE, "train_tokens_per_s": None, "prefill_tokens_per_s": None})
    assert p["stages"]["dpo"]["gpu_hours"] is None and p["round"]["gpu_hours"] is None
    assert p["stages"]["pseudolabel"]["gpu_hours"] == pytest.approx(21_000_000 / 2500 / 3600)
    text = format_plan(p)
    assert "n/a" in text and "not counted" in text and "DPO time is n/a" in text


@pytest.mark.parametrize("bad", [{"gpus": 0}, {"tokens_per_s": 0}, {"keep_rate": 1.5}, {"efficiency": 0},
                                 {"chains": 0}, {"rounds": 0}])
def test_out_of_range_inputs_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        plan_round(**{**BASE, **bad})


def test_table_prints_stages_and_assumptions():
    text = format_plan(plan_round(**{**BASE, "rounds": 3}))
    lines = text.splitlines()
    assert lines[0].startswith("| stage |") and set(lines[1]) <= set("|-")
    assert any(l.startswith("| pseudo-labeling | 25.00k | 8.55M | 21.00M | 2.45 | 0h39m |") for l in lines)
    assert any(l.startswith("| 3 rounds |") for l in lines)
    assert "assumptions:" in text and "5,000 listings x 5 attributes" in text and "4 GPUs at 100% efficiency" in text


def test_plan_command_reads_the_config(capsys):
    parser = argparse.ArgumentParser()
    add_plan_parser(parser.add_subparsers())
    args = parser.parse_args(["plan", "conf/paper.yaml", "generation.num_chains=9", "--listings", "100",
                              "--tokens-per-s", "1000", "--tokens-per-chain", "100",
                              "--attributes-per-listing", "5"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    # paper.yaml: 4 vLLM actors x TP 1 = 4 GPUs; images 224 -> 64 tokens x 3 + 150 text = 342 prompt tokens
    assert "9 chains each" in out and "4 GPUs" in out and "342 prompt tokens" in out
    assert "| pseudo-labeling | 500 | 171.00k | 450.00k |" in out


def test_attributes_per_listing_default_comes_from_the_taxonomy():
    from attrpipe.config import load_config
    from attrpipe.plan import asked_per_listing
    from attrpipe.taxonomy import load_taxonomy

    tax = load_taxonomy("conf/taxonomy", ["suitcase", "watch"])
    inferable = [len(tax.vertical(v).inferable_attributes()) for v in ("suitcase", "watch")]
    cfg = load_config("conf/paper.yaml", ["taxonomy.verticals=[suitcase,watch]"])
    assert asked_per_listing(cfg) == sum(inferable) / 2
    cfg = load_config("conf/paper.yaml", ["taxonomy.verticals=[suitcase,watch]", "taxonomy.category_question=true"])
    assert asked_per_listing(cfg) == sum(inferable) / 2 + 1


# --- a whole study (attrpipe.plan_study) -------------------------------------------------------------------------

STUDY = dict(kind="pool-size", values=[1000, 4000], methods=["dpo", "sl"], seeds=[0], rounds=1, listings=None,
             seed_listings=100, attributes_per_listing=5, chains=7, tokens_per_chain=100, prompt_tokens=300,
             tokens_per_s=1000, train_tokens_per_s=4000, engine_gpus=1, train_gpus=1, cluster_gpus=[1, 2, 8],
             keep_rate=0.5, pairs_per_kept=2, sft_epochs=2, eval_listings=200, eval_tokens=50)


def test_schedule_replays_the_study_runner_by_hand():
    from attrpipe.plan_study import StudyJob, schedule

    jobs = [StudyJob("A", 2), StudyJob("B", 1, after="A"), StudyJob("C", 3), StudyJob("D", 1)]
    assert schedule(jobs, 1) == 7  # one at a time: the sum
    # 2 at once: A and C start; at 2 B (A done) takes A's slot; at 3 D takes the next free one: ends at 4
    assert schedule(jobs, 2) == 4
    assert schedule(jobs, 4) == 3  # B still waits for A
    with pytest.raises(ValueError, match="not in the study"):
        schedule([StudyJob("A", 1, after="Z")], 2)


def test_study_arithmetic_by_hand():
    from attrpipe.plan_study import plan_study

    p = plan_study(**STUDY)
    s = {name: round(st["gpu_hours"] * 3600, 6) for name, st in p["stages"].items()}
    # seed SFT: 100 listings x 5 attributes x 2 epochs x (300 + 100) tokens / 4,000 tokens/s
    assert s["seed SFT: training"] == 100
    # its evaluation: greedy 200 x 5 x 50 / 1,000 = 50; the vote 200 x 5 x 7 x 100 / 1,000 = 700; the fit
    # 100 x 5 x 50 / 1,000 = 25
    assert s["seed SFT: evaluation"] == 775
    # the chains over the largest pool, once per seed: 4,000 x 5 x 7 x 100 / 1,000
    assert s["round-1 chains (4,000 listings, shared)"] == 14_000
    # each arm: pool x 5 x 0.5 kept x 2 pairs x 2 x (300 + 100) tokens / 4,000 = the pool in seconds; 2 methods
    assert s["arms: training (DPO, SL)"] == 2 * 1000 + 2 * 4000
    assert s["arms: evaluation"] == 4 * 750  # greedy and vote, no fit
    assert p["stages"]["arms: training (DPO, SL)"]["runs"] == 4
    assert p["gpu_hours"] * 3600 == pytest.approx(27_875)
    walls = {c["gpus"]: (c["concurrency"], round(c["wall_hours"] * 3600, 6)) for c in p["clusters"]}
    assert walls[1] == (1, 27_875)  # one GPU: everything in turn
    # 2 GPUs: the shared job (14,875 s) first, then the two 1,000-pools side by side (1,750), then the 4,000s (4,750)
    assert walls[2] == (2, 14_875 + 1_750 + 4_750)
    # 8 GPUs: 5 jobs fit; every arm at once after the shared job
    assert walls[8] == (5, 14_875 + 4_750)
    assert p["one_at_a_time_hours"] * 3600 == pytest.approx(27_875)


def test_study_scaling_rules():
    from attrpipe.plan_study import plan_study

    one = plan_study(**STUDY)
    # twice the rounds: every arm samples its pool again (pseudo-labeling) and trains and evaluates again
    two = plan_study(**{**STUDY, "rounds": 2})
    assert two["stages"]["arms: pseudo-labeling (rounds 2+)"]["runs"] == 4
    assert two["stages"]["arms: training (DPO, SL)"]["gpu_hours"] == pytest.approx(
        2 * one["stages"]["arms: training (DPO, SL)"]["gpu_hours"])
    # 3 seeds: 3 times the GPU-hours; arms of 2 GPUs each halve the jobs at once
    three = plan_study(**{**STUDY, "seeds": [0, 1, 2]})
    assert three["gpu_hours"] == pytest.approx(3 * one["gpu_hours"])
    wide = plan_study(**{**STUDY, "engine_gpus": 2, "train_gpus": 2, "cluster_gpus": [2, 4, 8]})
    assert [c["concurrency"] for c in wide["clusters"]] == [1, 2, 4]
    assert wide["gpu_hours"] == pytest.approx(one["gpu_hours"])  # the same work, on more GPUs per stage
    # the cap
    capped = plan_study(**{**STUDY, "max_concurrent_arms": 2})
    assert capped["clusters"][-1]["concurrency"] == 2
    # a threshold study: every arm on the one pool
    thr = plan_study(**{**STUDY, "kind": "threshold", "values": [0.5, 0.8], "listings": 2000})
    assert thr["stages"]["arms: training (DPO, SL)"]["gpu_hours"] * 3600 == pytest.approx(4 * 2000)


@pytest.mark.parametrize("bad", [{"cluster_gpus": [0]}, {"train_tokens_per_s": 0}, {"rounds": 0},
                                 {"kind": "threshold"}, {"max_concurrent_arms": 0}])
def test_study_inputs_out_of_range_are_refused(bad):
    from attrpipe.plan_study import plan_study

    with pytest.raises(ValueError, match=next(iter(bad)) if "kind" not in bad else "listings"):
        plan_study(**{**STUDY, **bad})
    with pytest.raises(ValueError, match="cannot hold one arm"):
        plan_study(**{**STUDY, "engine_gpus": 4, "cluster_gpus": [2]})


def test_plan_study_command_reads_the_study_settings(capsys):
    parser = argparse.ArgumentParser()
    add_plan_parser(parser.add_subparsers())
    args = parser.parse_args(["plan", "conf/paper.yaml", "study.pool_sizes=[1000,5000,20000,100000]",
                              "study.seeds=[0,1,2]", "--study", "pool-size", "--gpus", "8", "64",
                              "--tokens-per-s", "2500", "--train-tokens-per-s", "6000", "--tokens-per-chain", "120",
                              "--attributes-per-listing", "5", "--seed-listings", "100", "--eval-listings", "500"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    # paper.yaml: 4 engine actors of 1 GPU, 4 training workers: an arm uses 4 GPUs; 8 GPUs run 2 jobs, 64 run 16
    assert "an arm uses 4 GPU(s)" in out and "| 8 GPUs | 2 |" in out and "| 64 GPUs | 16 |" in out
    assert "round-1 chains (100,000 listings, shared) | 3 |" in out and "4 value(s) x 2 method(s) x 3 seed(s)" in out
