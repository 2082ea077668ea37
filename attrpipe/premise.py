"""The method's premise, measured where the pool's true labels are known (``data.truth``): is the consensus of the kept
chains right more often than a single chain? (pure, but for the two readers at the end)

For the listing-attributes of a round's pool that have a true label:

- ``single_chain``: among the chains that parsed to an allowed value, the share whose answer is the truth (unparsed
  chains are left out, so that the form of the answers does not count as knowledge);
- ``consensus_kept``: among the kept listing-attributes (consensus at C >= the round's threshold), the share whose
  consensus is the truth. The consensus is computed again from the chains' parsed answers with attrpipe.consensus,
  whatever the shards were scored with, so a diagnostic oracle arm's premise is the method's, on the same chains;
- ``gain``: ``consensus_kept - single_chain``;

overall and per attribute (``vertical.attribute``, as evaluation keys them). Beside them (:func:`sampler_accuracy`),
the greedy test accuracy of the adapter the round sampled with (round 1: the seed SFT), over all answers and over the
parsed ones. Accuracies are fractions here and in loop.json; summaries and tables show percent.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from attrpipe import storage
from attrpipe.consensus import compute_consensus, is_kept
from attrpipe.pseudolabel.output import committed_files
from attrpipe.catalog_io import CatalogReading
from attrpipe.pseudolabel.units import read_labels

__all__ = ["chain_premise", "parsed_accuracy", "sampler_accuracy", "read_truth", "read_chain_rows"]

_COUNTS = ("examples", "chains_parsed", "chains_right", "kept", "kept_right")


def _ratio(a: int, n: int) -> float | None:
    return a / n if n else None


def _finish(c: dict[str, int]) -> dict:
    single, kept = _ratio(c["chains_right"], c["chains_parsed"]), _ratio(c["kept_right"], c["kept"])
    return {**c, "single_chain": single, "consensus_kept": kept,
            "gain": None if single is None or kept is None else kept - single}


def chain_premise(rows: Iterable[dict], truth: dict[str, dict[str, str]], threshold: float) -> dict:
    """The premise of one round. ``rows``: consensus rows (listing_id, vertical, attribute, chains with their parsed
    ``answer``); ``truth``: listing_id -> {attribute: true value}; rows without a true label are left out."""
    total = dict.fromkeys(_COUNTS, 0)
    per: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_COUNTS, 0))
    for r in rows:
        label = truth.get(r["listing_id"], {}).get(r["attribute"])
        if label is None:
            continue
        answers = [ch["answer"] for ch in r["chains"]]
        c = compute_consensus(answers)
        kept = is_kept(c, threshold)
        parsed = [a for a in answers if a is not None]
        add = {"examples": 1, "chains_parsed": len(parsed), "chains_right": sum(a == label for a in parsed),
               "kept": int(kept), "kept_right": int(kept and c.value == label)}
        for bucket in (total, per[f"{r['vertical']}.{r['attribute']}"]):
            for k, v in add.items():
                bucket[k] += v
    return {"threshold": threshold, **_finish(total), "per_attribute": {k: _finish(v) for k, v in sorted(per.items())}}


def parsed_accuracy(eval_result: dict) -> float | None:
    """Greedy accuracy over the answers that parsed: correct / (scored - parse failures), from an evaluation's
    accuracy and parse failure rate (loop.json's eval entries, metrics.json)."""
    acc, pfr = eval_result.get("accuracy"), eval_result.get("parse_failure_rate")
    if acc is None or pfr is None or pfr >= 1:
        return None
    return acc / (1 - pfr)


def sampler_accuracy(eval_result: dict | None, stage: str | None) -> dict | None:
    """The greedy test accuracy of the adapter a round sampled with, over all answers and over the parsed ones."""
    if eval_result is None:
        return None
    return {"stage": stage, "accuracy": eval_result.get("accuracy"), "parsed_accuracy": parsed_accuracy(eval_result),
            "parse_failure_rate": eval_result.get("parse_failure_rate")}


# --- readers ----------------------------------------------------------------------------------------------------------


def read_truth(path: str | None, reading: CatalogReading | None = None) -> dict[str, dict[str, str]] | None:
    """listing_id -> true labels from ``data.truth`` (read with ``data.columns``: ``reading``); None when it is unset
    or missing (nothing is measured)."""
    if not path or not storage.exists(path):
        return None
    return read_labels(path, reading or CatalogReading())


def read_chain_rows(pseudolabel_dir: str) -> list[dict]:
    """The consensus rows of a pseudo-labeling output (only the committed shards), with just what the premise reads."""
    d = storage.join(pseudolabel_dir, "consensus")
    files = committed_files(d)
    if files is None:
        files = storage.list_files(d, ".parquet") if storage.exists(d) else []
    rows: list[dict] = []
    for f in files:
        rows.extend(storage.read_parquet(f, columns=["listing_id", "vertical", "attribute", "chains"]).to_pylist())
    return rows
