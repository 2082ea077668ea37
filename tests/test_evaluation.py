import json

import pyarrow.parquet as pq
import pytest

from attrpipe.config import load_config
from attrpipe.evaluation import NO_ANSWER, compute_metrics, run_evaluate
from attrpipe.taxonomy import load_taxonomy


def test_compute_metrics_worked_example():
    labels = {"a": {"color": "Red", "pattern": "Solid"}, "b": {"color": "Blue"}}
    preds = [
        {"listing_id": "a", "vertical": "shirt", "attribute": "color", "consensus": "Red"},
        {"listing_id": "a", "vertical": "shirt", "attribute": "pattern", "consensus": None},
        {"listing_id": "b", "vertical": "top", "attribute": "color", "consensus": "Red"},
        {"listing_id": "b", "vertical": "top", "attribute": "pattern", "consensus": "Solid"},  # no label
    ]
    m = compute_metrics(preds, labels)
    assert m["scored"] == 3 and m["correct"] == 1 and m["accuracy"] == pytest.approx(1 / 3)
    assert m["parse_failures"] == 1 and m["unlabeled_predictions"] == 1
    assert m["per_vertical"] == {"shirt": {"accuracy": 0.5, "n": 2}, "top": {"accuracy": 0.0, "n": 1}}
    assert m["confusion"]["shirt.pattern"] == {"Solid": {NO_ANSWER: 1}}
    assert m["confusion"]["top.color"] == {"Blue": {"Red": 1}}
    assert compute_metrics([], labels)["accuracy"] is None


def test_evaluate_on_a_synthetic_test_split(tmp_path, ray_local):
    from attrpipe.synth.catalog import write_synthetic_catalog

    tax = load_taxonomy("conf/taxonomy", ["suitcase", "watch"])
    write_synthetic_catalog(tmp_path / "cat", taxonomy=tax, listings=0, seed=2, seed_per_vertical=0,
                            test_per_vertical=4)
    cfg = load_config("conf/tiny_cpu.yaml", [f"data.root={tmp_path / 'cat'}", "generation.engine=fakes:ScriptedEngine",
                                             "taxonomy.verticals=[suitcase,watch]", f"run.output_dir={tmp_path / 'runs'}"])
    m = run_evaluate(cfg, verbose=False)
    out = tmp_path / "runs" / "tiny" / "eval"
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == m["accuracy"]
    preds = pq.read_table(out / "predictions" / "consensus").to_pylist()
    assert all(p["n_chains"] == 1 for p in preds)  # greedy: one chain per listing-attribute
    test = pq.read_table(tmp_path / "cat" / "test").to_pylist()
    labels = {r["listing_id"]: dict(r["labels"]) for r in test}
    n_labels = sum(len(v) for v in labels.values())
    assert m["scored"] == n_labels == len(preds)
    right = sum(p["consensus"] == labels[p["listing_id"]][p["attribute"]] for p in preds)
    assert m["correct"] == right and m["accuracy"] == pytest.approx(right / n_labels)
    assert set(m["per_vertical"]) == {"suitcase", "watch"}


def test_the_vote_is_scored_like_the_greedy_answer(tmp_path, ray_local):
    """mode="vote": generation.num_chains sampled chains per listing-attribute, their consensus scored against the
    labels; no consensus counts as wrong and as a parse failure."""
    from attrpipe.consensus import compute_consensus
    from attrpipe.synth.catalog import write_synthetic_catalog

    tax = load_taxonomy("conf/taxonomy", ["suitcase"])
    write_synthetic_catalog(tmp_path / "cat", taxonomy=tax, listings=0, seed=3, seed_per_vertical=0,
                            test_per_vertical=4)
    cfg = load_config("conf/tiny_cpu.yaml", [f"data.root={tmp_path / 'cat'}", "generation.engine=fakes:ScriptedEngine",
                                             "taxonomy.verticals=[suitcase]", f"run.output_dir={tmp_path / 'runs'}"])
    m = run_evaluate(cfg, out=str(tmp_path / "vote"), mode="vote", verbose=False)
    assert (m["mode"], m["num_chains"], m["temperature"]) == ("vote", 7, float(cfg.generation.temperature))
    preds = pq.read_table(tmp_path / "vote" / "predictions" / "consensus").to_pylist()
    assert all(p["n_chains"] == 7 for p in preds)
    labels = {r["listing_id"]: dict(r["labels"]) for r in pq.read_table(tmp_path / "cat" / "test").to_pylist()}
    votes = [compute_consensus([c["answer"] for c in p["chains"]]).value for p in preds]
    right = sum(v == labels[p["listing_id"]][p["attribute"]] for v, p in zip(votes, preds))
    assert m["correct"] == right and m["scored"] == len(preds) and m["parse_failures"] == votes.count(None)
    with pytest.raises(ValueError, match="greedy, vote"):
        run_evaluate(cfg, mode="sampled", verbose=False)
