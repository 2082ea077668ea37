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
