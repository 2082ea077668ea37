"""The preference objectives beside the paper's DPO: ScPO's pair and weight (pure), its records, its loss (by hand on
known log-probs, and through ScPOTrainer on the tiny model against independently computed log-probs), its record
count, and the methods dpo-nll / scpo."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attrpipe.config import ConfigError, load_config
from attrpipe.consensus import pair_rng
from attrpipe.methods import METHODS, method_label, training_kind, training_overrides
from attrpipe.objectives import ScpoPair, scpo_pair, scpo_weight
from attrpipe.schemas import CONSENSUS_SCHEMA
from attrpipe.taxonomy import load_taxonomy
from attrpipe.train.examples import RECORD_SCHEMA, TrainingDataError, records_to_table, scpo_example, scpo_records
from test_train_data import jpeg, target, write_consensus, write_taxonomy

IMAGES = {"size": 224, "max_pixels": 10**8, "max_bytes": 10**8, "allowed_schemes": ["file"]}


# --- the pair and its weight (pure) ---------------------------------------------------------------------------------


def test_the_chosen_chain_has_the_consensus_and_the_rejected_the_least_voted_answer():
    values = ["A", "B", "A", "C", "A", "B", "A"]  # A 4, B 2, C 1
    p = scpo_pair(values, "A", kept=True, seed=0, ex_id="x::y")
    assert values[p.chosen] == "A" and p.rejected == 3  # C: the only least-voted chain
    assert (p.chosen_votes, p.rejected_votes) == (4, 1) and p.weight == pytest.approx(3 / 7)


def test_an_unparsed_chain_counts_as_zero_votes_and_is_rejected_first():
    values = ["A", None, "A", "B", "A", None, "A"]  # A 4, B 1, two unparsed
    p = scpo_pair(values, "A", kept=True, seed=3, ex_id="e")
    assert p.rejected in (1, 5) and p.rejected_votes == 0 and p.weight == pytest.approx(4 / 7)
    assert {scpo_pair(values, "A", kept=True, seed=s, ex_id="e").rejected for s in range(40)} == {1, 5}


def test_ties_are_drawn_with_the_seeded_generator_of_the_example():
    values = ["A", "B", "A", "C", "A", "A", "B", "C"]  # A 4; B and C tie at 2: four candidate chains
    p = scpo_pair(values, "A", kept=True, seed=7, ex_id="L1::color")
    rng = pair_rng(7, "L1::color")
    assert p.chosen == rng.choice([0, 2, 4, 5]) and p.rejected == rng.choice([1, 3, 6, 7])
    assert p.weight == pytest.approx((4 - 2) / 8)
    assert p == scpo_pair(values, "A", kept=True, seed=7, ex_id="L1::color")  # the same on every worker and rerun
    draws = {(q.chosen, q.rejected) for q in (scpo_pair(values, "A", kept=True, seed=s, ex_id="L1::color")
                                               for s in range(60))}
    assert {c for c, _ in draws} == {0, 2, 4, 5} and {r for _, r in draws} == {1, 3, 6, 7}


def test_no_pair_when_all_agree_or_not_kept():
    assert scpo_pair(["A"] * 7, "A", kept=True, seed=0, ex_id="e") is None
    assert scpo_pair(["A", "A", "B"], "A", kept=False, seed=0, ex_id="e") is None
    assert scpo_pair([None, None], None, kept=False, seed=0, ex_id="e") is None
    assert scpo_pair(["A", "B"], None, kept=True, seed=0, ex_id="e") is None


def test_a_tie_at_the_top_gives_a_pair_of_weight_zero():
    p = scpo_pair(["A", "B", "B", "A"], "A", kept=True, seed=0, ex_id="e")  # C = 0.5, B ties A
    assert p.rejected in (1, 2) and p.weight == 0.0
    p = scpo_pair(["A", "B", "B", "A", "C"], "A", kept=True, seed=0, ex_id="e")  # C is less voted than B
    assert p == ScpoPair(p.chosen, 4, 2, 1, pytest.approx(1 / 5))


def test_scpo_weight():
    assert scpo_weight(7, 0, 7) == 1.0 and scpo_weight(4, 1, 7) == pytest.approx(3 / 7)
    for bad in ((2, 3, 7), (8, 0, 7), (1, 0, 0)):
        with pytest.raises(ValueError):
            scpo_weight(*bad)


# --- records ----------------------------------------------------------------------------------------------------------


def _row(ex, answers, consensus, kept, img):
    chains = [{"text": target(a) if a else "no idea", "reasoning": None, "answer": a, "reason": None}
              for a in answers]
    n = len(answers)
    agree = sum(a == consensus for a in answers) if consensus else 0
    return {"example_id": f"{ex}::pattern", "listing_id": ex, "vertical": "suitcase", "attribute": "pattern",
            "consensus": consensus, "confidence": agree / n, "n_chains": n,
            "n_valid": sum(a is not None for a in answers), "tied": False, "kept": kept, "chains": chains,
            "image_uris": [str(img)], "image_bytes": None, "round": 0, "images_dropped": 0, "model": "tiny",
            "adapter": None, "adapter_fingerprint": None}


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    d = tmp_path_factory.mktemp("scpo")
    tax = write_taxonomy(d / "tax")
    img = d / "i.jpg"
    img.write_bytes(jpeg(1))
    S, T, C = "Solid", "Striped", "Checked"
    rows = [
        _row("a", [S, S, S, S, T, T, C], S, True, img),  # rejected: the Checked chain, w = 3/7
        _row("b", [S, S, S, S, T, None, T], S, True, img),  # rejected: the unparsed chain, w = 4/7
        _row("c", [S] * 7, S, True, img),  # every chain agrees: no pair
        _row("d", [S, S, S, T, T, C, None], S, False, img),  # not kept: no pair
        _row("e", [S, S, T, T], S, True, img),  # a tie at the top: a pair of weight 0
        _row("f", [None] * 7, None, False, img),  # no consensus
    ]
    (d / "consensus").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=CONSENSUS_SCHEMA), d / "consensus" / "part-00000.parquet")
    return {"dir": d, "tax_dir": tax, "tax": load_taxonomy(tax), "rows": rows}


def test_scpo_records_one_weighted_pair_per_kept_example(shard):
    by_id = {}
    for row in shard["rows"]:
        recs = scpo_records(row, shard["tax"], seed=0, max_images=5)
        assert len(recs) <= 1
        by_id.update({r["example_id"]: r for r in recs})
    assert sorted(by_id) == ["a::pattern", "b::pattern", "e::pattern"]
    a, b = by_id["a::pattern"], by_id["b::pattern"]
    assert a["chosen"] == target("Solid") and a["rejected"] == target("Checked")
    assert a["weight"] == pytest.approx(3 / 7) and a["completion"] is None
    assert b["rejected"] == "no idea" and b["weight"] == pytest.approx(4 / 7)
    assert by_id["e::pattern"]["weight"] == 0.0
    assert a["prompt"].startswith("what is the most suitable value for pattern for this suitcase.")
    assert a["image_uris"] == shard["rows"][0]["image_uris"]
    assert scpo_records(shard["rows"][0], shard["tax"], seed=0, max_images=5, with_images=False)[0]["image_uris"] == []
    t = records_to_table(list(by_id.values()))
    assert t.schema.equals(RECORD_SCHEMA) and t.column("weight").to_pylist() == [r["weight"] for r in by_id.values()]
    ex = scpo_example(a, [])
    assert ex["weight"] == pytest.approx(3 / 7) and ex["rejected"][0]["content"][0]["text"] == target("Checked")
    with pytest.raises(TrainingDataError, match="weight"):
        scpo_example({**a, "weight": None}, [])


def test_scpo_records_from_the_fixture_shards(tmp_path):
    tax = load_taxonomy(write_taxonomy(tmp_path / "tax"))
    rows = pq.read_table(write_consensus(tmp_path / "c", tmp_path / "img", n=4)).to_pylist()
    recs = [r for row in rows for r in scpo_records(row, tax, seed=0, max_images=5)]
    assert len(recs) == 2 and all(r["weight"] == pytest.approx(4 / 7) and r["rejected"] == "no idea" for r in recs)


def test_the_scpo_record_count_matches_the_records(shard):
    """count_records reads the numeric columns only; the mapper must make exactly that many records."""
    from attrpipe.train.driver import count_records

    cfg = load_config("conf/tiny_cpu.yaml", [f"taxonomy.path={shard['tax_dir']}"])
    made = sum(len(scpo_records(r, shard["tax"], seed=0, max_images=5)) for r in shard["rows"])
    assert made == 3 and count_records("scpo", cfg, str(shard["dir"] / "consensus")) == made


# --- the loss -------------------------------------------------------------------------------------------------------


def test_scpo_loss_by_hand():
    import torch

    from attrpipe.train.scpo import scpo_loss

    t = lambda *x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    chosen, rejected, ref_c, ref_r = t(-10.0, -4.0), t(-12.0, -3.0), t(-11.0, -4.5), t(-11.0, -3.5)
    lengths, weights = torch.tensor([5, 2]), t(0.5, 0.25)
    loss, terms = scpo_loss(chosen, rejected, ref_c, ref_r, lengths, weights, beta=0.2, nll_weight=0.7)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    # pair 1: margin (-10 + 11) - (-12 + 11) = 2; pair 2: (-4 + 4.5) - (-3 + 3.5) = 0
    e1 = 0.5 * (-math.log(sig(0.2 * 2)) + 0.7 * 10 / 5)
    e2 = 0.25 * (-math.log(sig(0.0)) + 0.7 * 4 / 2)
    assert terms["loss"].tolist() == pytest.approx([e1, e2])
    assert float(loss) == pytest.approx((e1 + e2) / 2)
    assert float(scpo_loss(chosen, rejected, ref_c, ref_r, lengths, weights, beta=0.2, nll_weight=0.0)[0]) == \
        pytest.approx((0.5 * -math.log(sig(0.4)) + 0.25 * math.log(2)) / 2)


def test_the_weight_collator_passes_the_weight_through():
    from attrpipe.train.scpo import WeightCollator

    seen = []
    out = WeightCollator(lambda exs: seen.append(exs) or {"input_ids": len(exs)})([{"x": 1, "weight": 0.5},
                                                                                  {"x": 2, "weight": 1}])
    assert out["weight"].tolist() == [0.5, 1.0] and out["input_ids"] == 2
    assert all("weight" not in e for e in seen[0])
    with pytest.raises(ValueError, match="weight"):
        WeightCollator(lambda exs: {})([{"x": 1}])


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from attrpipe.models import build_tiny_model, load_processor

    return load_processor(build_tiny_model(tmp_path_factory.mktemp("tiny") / "m"), image_size=224)


def _completion_logps(model, batch):
    """Summed log-probs and token counts of each row's completion, from the model's plain logits."""
    import torch

    kw = {k: v for k, v in batch.items() if k not in ("completion_mask", "weight")}
    logits = model(**kw).logits[:, :-1].float()
    per_token = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    mask = batch["completion_mask"][:, 1:].float()
    return (per_token * mask).sum(1), mask.sum(1)


def test_the_scpo_trainer_loss_matches_a_hand_computation(processor, tmp_path):
    """ScPOTrainer.compute_loss on a batch of two pairs of different lengths and weights, with a LoRA that moves the
    policy off its reference (the base, adapter disabled), equals the formula on log-probs computed independently
    from the model's logits; the mean weight is logged."""
    import torch

    from attrpipe.train.worker import RecordCollator, build_trainer, load_policy, probe_dataset, trl_args

    alpha, beta = 0.7, 0.2
    recs = [
        {"example_id": "a", "prompt": "what is the colour", "chosen": target("Red", "It looks red to me here."),
         "rejected": "<answer> Black </answer>", "weight": 0.5, "image_uris": [], "image_bytes": [jpeg(3, 224)]},
        {"example_id": "b", "prompt": "what is the pattern", "chosen": "<answer> Solid </answer>",
         "rejected": "no idea", "weight": 1.0, "image_uris": [], "image_bytes": [jpeg(4, 224)]},
    ]
    torch.manual_seed(0)
    model, peft_config = load_policy({"path": processor.tokenizer.name_or_path, "dtype": "float32",
                                      "trust_remote_code": False},
                                     {"r": 4, "alpha": 4, "dropout": 0.0, "target_modules": "all-linear"}, None)
    args = trl_args("scpo", {"batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1e-5,
                             "save_steps": 5, "gradient_checkpointing": False, "beta": beta, "sft_weight": alpha},
                    output_dir=str(tmp_path), max_steps=1, seed=0, bf16=False, use_cpu=True, deepspeed=None)
    trainer = build_trainer("scpo", model=model, peft_config=peft_config, processor=processor, args=args,
                            train_dataset=probe_dataset("scpo"))
    assert type(trainer).__name__ == "ScPOTrainer" and (trainer.dpo_weight, trainer.nll_weight) == (1.0, alpha)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    batch = RecordCollator("scpo", IMAGES, trainer.data_collator)(recs)
    assert batch["weight"].tolist() == [0.5, 1.0]
    lengths = batch["completion_mask"][:2, 1:].sum(1)
    assert lengths[0] != lengths[1]  # per-example length normalisation differs from a pooled token mean here
    policy = trainer.model
    policy.eval()
    with torch.no_grad():
        loss = float(trainer.compute_loss(policy, dict(batch)))
        logps, n = _completion_logps(policy, batch)
        with policy.disable_adapter():
            ref, _ = _completion_logps(policy, batch)
    margin = (logps[:2] - ref[:2]) - (logps[2:] - ref[2:])
    assert margin.abs().max() > 1e-3  # the policy is not its reference
    per = torch.tensor([0.5, 1.0]) * (-torch.nn.functional.logsigmoid(beta * margin) + alpha * -logps[:2] / n[:2])
    assert loss == pytest.approx(float(per.mean()), rel=1e-4)
    metrics = trainer._metrics["eval"]
    assert metrics["scpo/weight"][-1] == pytest.approx(0.75)
    assert metrics["rewards/margins"][-1] == pytest.approx(float(beta * margin.mean()), rel=1e-3, abs=1e-5)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "logps/chosen", "scpo/nll", "entropy"):
        assert key in metrics, key


def test_the_scpo_trainer_refuses_other_dpo_losses(processor, tmp_path):
    from attrpipe.train.worker import build_trainer, load_policy, probe_dataset, trl_args

    model, peft_config = load_policy({"path": processor.tokenizer.name_or_path, "dtype": "float32",
                                      "trust_remote_code": False},
                                     {"r": 4, "alpha": 4, "dropout": 0.0, "target_modules": "all-linear"}, None)
    args = trl_args("scpo", {"batch_size": 1, "gradient_accumulation_steps": 1, "learning_rate": 1e-5,
                             "save_steps": 5, "gradient_checkpointing": False, "beta": 0.2},
                    output_dir=str(tmp_path), max_steps=1, seed=0, bf16=False, use_cpu=True, deepspeed=None)
    args.loss_type = ["ipo"]
    with pytest.raises(ValueError, match="ScPO"):
        build_trainer("scpo", model=model, peft_config=peft_config, processor=processor, args=args,
                      train_dataset=probe_dataset("scpo"))


# --- methods, keys, plan --------------------------------------------------------------------------------------------


def test_the_methods_dpo_nll_and_scpo():
    assert {"dpo", "dpo-nll", "scpo"} <= set(METHODS)
    assert training_kind("dpo-nll") == "dpo" and training_kind("scpo") == "scpo" and training_kind("dpo") == "dpo"
    assert method_label("dpo-nll") == "DPO + NLL" and method_label("scpo") == "ScPO" and method_label("dpo") == "DPO"
    cfg = load_config("conf/tiny_cpu.yaml", ["dpo.nll_weight=0.5"])
    assert training_overrides("dpo-nll", cfg) == {"dpo": {"sft_weight": 0.5}}
    assert training_overrides("dpo", cfg) == training_overrides("scpo", cfg) == training_overrides("sl", cfg) == {}
    with pytest.raises(ValueError, match="unknown method"):
        training_overrides("ppo", cfg)
    assert load_config("conf/tiny_cpu.yaml", ["loop.method=scpo"]).loop.method == "scpo"


def test_nll_weight_key_and_the_scpo_plan():
    from attrpipe.train.plan import KINDS, default_paths, hyperparameters, resolve_start, Start
    from attrpipe.train.worker import dpo_loss

    cfg = load_config(None, ["run.output_dir=out", "run.name=r", "dpo.sft_weight=0.3"])
    assert cfg.dpo.nll_weight == 1.0
    with pytest.raises(ConfigError, match="dpo.nll_weight"):
        load_config(None, ["dpo.nll_weight=-1"])
    assert "scpo" in KINDS and default_paths("scpo", cfg)["data"] == "out/r/consensus"
    scpo, dpo = hyperparameters("scpo", cfg), hyperparameters("dpo", cfg)
    assert scpo.sft_weight == 1.0 and dpo.sft_weight == pytest.approx(0.3)  # dpo keeps dpo.sft_weight
    assert (scpo.beta, scpo.learning_rate, scpo.batch_size) == (dpo.beta, dpo.learning_rate, dpo.batch_size)
    assert dpo_loss(scpo.to_dict()) == {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 1.0]}
    assert resolve_start("scpo", cfg, None, "d") == Start("d", "sft_adapter")
    assert resolve_start("scpo", cfg, "r1", "d", "sft") == Start("r1", "sft_adapter", "sft")
    assert resolve_start("scpo", load_config(None, ["dpo.reference=base"]), None, "d") == Start(None, "base")


def test_nll_weight_at_its_default_keeps_old_result_keys():
    from omegaconf import OmegaConf

    from attrpipe.loop import _result_key

    cfg = load_config("conf/tiny_cpu.yaml")
    before = OmegaConf.to_container(cfg, resolve=True)
    del before["dpo"]["nll_weight"]
    assert _result_key(OmegaConf.create(before)) == _result_key(cfg)
    assert _result_key(load_config("conf/tiny_cpu.yaml", ["dpo.nll_weight=0.5"])) != _result_key(cfg)
