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
