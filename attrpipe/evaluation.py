"""Evaluation: greedy decoding (``eval.max_new_tokens``, 200) of a labeled test set through the same engine layer and
Ray Data pipeline as pseudo-labeling, then accuracy against the labels.

``mode="vote"`` scores the self-consistency prediction instead: ``generation.num_chains`` chains sampled at
``generation.temperature``, their consensus (attrpipe.consensus, the pseudo-labels' rule) as the answer, scored exactly
as the greedy answer is (no consensus counts as wrong and as a parse failure). Beside the greedy accuracy it says what
the vote knows beyond the greedy answer: what DPO on consensus pairs can distill, at most.

Outputs under the evaluation directory (default ``<run.output_dir>/<run.name>/eval``)::

    predictions/consensus/*.parquet   one row per listing-attribute (CONSENSUS_SCHEMA; one greedy chain)
    predictions/quarantine/*.parquet  test rows that could not be evaluated, with reasons
    metrics.json                      accuracy overall, per vertical, per attribute; parse failures; confusion

A prediction counts as correct when its parsed value equals the label; a chain that does not parse counts as
wrong (and as a parse failure). Listing-attributes without a label are predicted but not scored; test listings that
were quarantined are reported, not scored.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

import pyarrow.parquet as pq

from attrpipe import storage
from attrpipe.catalog_io import CatalogReading
from attrpipe.pseudolabel.units import read_labels
from attrpipe.console import echo

__all__ = ["NO_ANSWER", "MODES", "compute_metrics", "run_evaluate", "format_metrics", "brief"]

NO_ANSWER = "<no answer>"
MODES = ("greedy", "vote")


def _acc(right: int, total: int) -> float | None:
    return right / total if total else None


def compute_metrics(predictions: Iterable[dict], labels: dict[str, dict[str, str]]) -> dict:
    """Metrics from prediction rows (listing_id, vertical, attribute, consensus, n_valid) and the labels."""
    total = right = parse_fail = unlabeled = 0
    by_vertical: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_attribute: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    confusion: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for r in predictions:
        truth = labels.get(r["listing_id"], {}).get(r["attribute"])
        if truth is None:
            unlabeled += 1
            continue
        pred = r["consensus"]
        ok = pred == truth
        total += 1
        right += ok
        parse_fail += pred is None
        key = f"{r['vertical']}.{r['attribute']}"
        for bucket in (by_vertical[r["vertical"]], by_attribute[key]):
            bucket[0] += ok
            bucket[1] += 1
        confusion[key][truth][pred if pred is not None else NO_ANSWER] += 1
    return {
        "accuracy": _acc(right, total),
        "scored": total,
        "correct": right,
        "parse_failures": parse_fail,
        "parse_failure_rate": _acc(parse_fail, total),
        "unlabeled_predictions": unlabeled,
        "per_vertical": {v: {"accuracy": _acc(a, n), "n": n} for v, (a, n) in sorted(by_vertical.items())},
        "per_attribute": {k: {"accuracy": _acc(a, n), "n": n} for k, (a, n) in sorted(by_attribute.items())},
        "confusion": {k: {t: dict(c) for t, c in sorted(m.items())} for k, m in sorted(confusion.items())},
    }


def run_evaluate(cfg, *, test: str | None = None, adapter: str | None = None, out: str | None = None,
                 verbose: bool = True, mode: str = "greedy", label: str | None = None) -> dict:
    """Evaluate ``adapter`` (None: the model alone) on the labeled split ``test`` (default ``data.test``); write the
    predictions and metrics.json under ``out`` and return the metrics. ``mode``: ``greedy`` or ``vote`` (above);
    ``label``: what its progress line calls it (default: evaluate, or vote)."""
    from attrpipe.pseudolabel.pipeline import run_pseudolabel

    if mode not in MODES:
        raise ValueError(f"evaluation mode must be one of {', '.join(MODES)}, got {mode!r}")
    test = test or cfg.data.test
    out = out or storage.join(cfg.run.output_dir, cfg.run.name, "eval")
    manifest = run_pseudolabel(cfg, catalog=test, out=storage.join(out, "predictions"), adapter=adapter,
                               greedy=mode == "greedy", verbose=False,
                               label=label or ("evaluate" if mode == "greedy" else "vote"))
    cons_dir = storage.join(out, "predictions", "consensus")
    rows: list[dict] = []
    for f in storage.list_files(cons_dir, ".parquet"):
        fs, p = storage.filesystem_for(f)
        rows.extend(pq.read_table(p, filesystem=fs, columns=["listing_id", "vertical", "attribute", "consensus"]
                                  ).to_pylist())
    metrics = compute_metrics(rows, read_labels(test, CatalogReading.from_conf(cfg)))
    metrics.update({
        "test": test,
        "adapter": adapter,
        "model": cfg.model.path,
        "mode": mode,
        "max_new_tokens": cfg.eval.max_new_tokens if mode == "greedy" else cfg.generation.max_new_tokens,
        "listings_in": manifest["counts"]["listings_in"],
        "listings_quarantined": manifest["counts"]["listings_quarantined"],
        "quarantine_reasons": manifest["counts"]["quarantine_reasons"],
    })
    if mode == "vote":
        metrics.update(num_chains=int(cfg.generation.num_chains), temperature=float(cfg.generation.temperature))
    storage.write_json_atomic(storage.join(out, "metrics.json"), metrics)
    if verbose:
        echo(format_metrics(metrics))
        echo(f"predictions and metrics under {out}")
    return metrics


def brief(m: dict) -> dict:
    """What a loop records of an evaluation: accuracy, parse failures, how many were scored, and for a vote its
    sampling (the full metrics stay in metrics.json)."""
    out = {"accuracy": m["accuracy"], "parse_failure_rate": m["parse_failure_rate"], "scored": m["scored"]}
    if m.get("mode") == "vote":
        out.update(num_chains=m["num_chains"], temperature=m["temperature"])
    return out


def format_metrics(m: dict) -> str:
    def pct(x):
        return "   n/a" if x is None else f"{100 * x:5.1f}%"

    head = (f"the vote of {m['num_chains']} chains at temperature {m['temperature']:g}: " if m.get("mode") == "vote"
            else "")
    lines = [f"{head}accuracy {pct(m['accuracy'])} on {m['scored']} labeled listing-attributes; parse failures "
             f"{pct(m['parse_failure_rate'])}; {m['listings_quarantined']} test listings quarantined",
             f"{'vertical':<22}{'accuracy':>9}{'n':>6}"]
    lines += [f"{v:<22}{pct(s['accuracy']):>9}{s['n']:>6}" for v, s in m["per_vertical"].items()]
    return "\n".join(lines)
