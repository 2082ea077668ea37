"""The pseudo-labeling output format, in one place: what a run writes and how everything reads it back.

Under an output directory (docs/pseudolabel.md)::

    _run.json                  the run's identity: what decides its rows (:func:`semantic_key`) and its hash
    _units/<unit>.json         one marker per committed unit: its files and counts (written last)
    consensus/ pairs/ quarantine/ predictions/ review/   one <unit>.parquet shard each, named by the markers
    manifest.json              config hash, identity, and the counts summed over the markers

The pipeline writes it; the audit, training, the premise and the loop read it through these functions. Plain
functions over files (no Ray, no model), so every one of them can import this module.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from collections import Counter
from typing import Any

from omegaconf import OmegaConf

from attrpipe import storage
from attrpipe.catalog_io import CatalogReading

__all__ = [
    "RUN_FILE", "UNITS_DIR", "MANIFEST_FILE", "SHARD_DIRS", "COUNT_KEYS", "LATER_COUNT_KEYS", "CHAIN_KEYS",
    "run_identity", "semantic_key", "key_hash", "claim_output", "read_run_key", "check_reusable",
    "marker_path", "shard_rel", "committed_unit_ids", "committed_files", "unit_counts", "summarize",
    "engine_busy_seconds",
]

RUN_FILE = "_run.json"
UNITS_DIR = "_units"
MANIFEST_FILE = "manifest.json"
SHARD_DIRS = ("consensus", "pairs", "quarantine", "predictions", "review", "keys")

COUNT_KEYS = (
    "listings_in",
    "listings_quarantined",
    "listings_labeled",
    "extra_images_dropped",
    "listing_attributes",
    "kept",
    "below_threshold",
    "no_consensus",
    "pairs",
    "chains",
    "chains_unparsed",
    "chains_reused",
    "predictions_for_review",
    "verticals_matched",
    "listings_new",
    "listings_relabeled",
    "listings_carried_over",
    "chains_carried_over",
)
# counts added after runs were written with markers that lack them: read as 0 there
LATER_COUNT_KEYS = ("verticals_matched", "listings_new", "listings_relabeled", "listings_carried_over",
                    "chains_carried_over")

# What must agree for an earlier run's chains to be the very chains this run would sample (the threshold, the pool
# size and the round may differ: they change what is kept and paired, not what is sampled).
CHAIN_KEYS = ("catalog", "model_fingerprint", "adapter_fingerprint", "images", "taxonomy", "generation", "seed",
              "listings_per_unit", "reading")


# --- the run's identity (_run.json) -----------------------------------------------------------------------------------


def run_identity(cfg, adapter: str | None) -> dict:
    """What samples the chains: the model and the adapter, with their fingerprints."""
    return {"model": cfg.model.path, "model_fingerprint": storage.fingerprint(cfg.model.path), "adapter": adapter,
            "adapter_fingerprint": storage.fingerprint(adapter)}


def semantic_key(cfg, catalog: str, identity: dict, greedy: bool, limit: int | None,
                 review_below: float | None) -> dict:
    """What decides the rows a run writes; a resume must agree on all of it."""
    if greedy:
        gen = {"greedy": True, "max_new_tokens": cfg.eval.max_new_tokens}
    else:
        gen = {k: v for k, v in OmegaConf.to_container(cfg.generation).items() if k != "batch_size"}
    key = {
        "catalog": catalog,
        "limit": limit,
        "model": identity.get("model"),
        "model_fingerprint": identity.get("model_fingerprint"),
        "adapter_fingerprint": identity.get("adapter_fingerprint"),
        "images": _images_key(cfg),
        "taxonomy": OmegaConf.to_container(cfg.taxonomy),
        "generation": gen,
        "threshold": cfg.consensus.threshold,
        "seed": cfg.run.seed,
        "listings_per_unit": cfg.pseudolabel.listings_per_unit,
        "round": cfg.pseudolabel.round,
        "review_below": review_below,
    }
    reading = CatalogReading.from_conf(cfg).key_entry()
    if reading is not None:  # data.columns, data.match_vertical_names: recorded when not the defaults
        key["reading"] = reading
    return key


def _images_key(cfg) -> dict:
    """``images`` as it decides rows: its ``http`` settings only when an http(s) scheme is allowed."""
    from attrpipe.config import drop_inert_defaults

    return drop_inert_defaults({"images": OmegaConf.to_container(cfg.images)})["images"]


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def claim_output(out: str, key: dict) -> str:
    """Write ``_run.json`` for a new output, or check that an existing one holds the same run; its key hash."""
    h = key_hash(key)
    run_file = storage.join(out, RUN_FILE)
    if storage.exists(run_file):
        previous = storage.read_json(run_file)
        if previous.get("key_hash") != h:
            changed = sorted(k for k in key if previous.get("key", {}).get(k) != key[k])
            raise RuntimeError(
                f"{out} holds pseudo-labels of a different run (differs in: {', '.join(changed) or 'unknown'}); "
                "use another output directory or remove it"
            )
    else:
        storage.write_json_atomic(run_file, {"key_hash": h, "key": key})
    return h


def read_run_key(out: str) -> dict | None:
    """The key of ``_run.json``; None when ``out`` is not a pseudo-labeling output."""
    run_file = storage.join(out, RUN_FILE)
    if not storage.exists(run_file):
        return None
    return storage.read_json(run_file)["key"]


def check_reusable(source: str, key: dict) -> None:
    """Refuse to take chains from ``source`` unless they are the very chains a run of ``key`` would sample."""
    run_file = storage.join(source, RUN_FILE)
    if not storage.exists(run_file):
        raise FileNotFoundError(f"{source} is not a pseudo-labeling output (no _run.json): no chains to reuse")
    src = storage.read_json(run_file).get("key", {})
    if src.get("generation", {}).get("greedy"):
        raise ValueError(f"{source} holds greedy decodes, not sampled chains")
    differ = [k for k in CHAIN_KEYS if src.get(k) != key.get(k)]
    if differ:
        raise ValueError(f"the chains in {source} were sampled differently (differs in: {', '.join(differ)}); "
                         "they cannot stand in for this run's")


# --- unit markers and the shards they name ----------------------------------------------------------------------------


def marker_path(out: str, unit_id: str) -> str:
    return storage.join(out, UNITS_DIR, f"{unit_id}.json")


def shard_rel(name: str, unit_id: str) -> str:
    """A unit's shard of ``name`` (one of SHARD_DIRS), relative to the output, as its marker names it."""
    return f"{name}/{unit_id}.parquet"


def committed_unit_ids(out: str) -> set[str]:
    """The ids of the units that have a marker: the committed ones."""
    markers = storage.list_files(storage.join(out, UNITS_DIR), ".json")
    return {posixpath.basename(f).removesuffix(".json") for f in markers}


def progress_poll(out: str, units: list, done_before: set[str]):
    """For a progress line (attrpipe.console.Progress): a function that returns the listings of this invocation's
    units committed so far, of how many, and the chains they sampled per second. Reads each new marker once."""
    sizes = {u.unit_id: u.stop - u.start for u in units if u.unit_id not in done_before}
    chains: dict[str, int] = {}
    t0 = time.perf_counter()

    def poll() -> tuple[int, int, str]:
        for uid in committed_unit_ids(out).intersection(sizes).difference(chains):
            c = storage.read_json(marker_path(out, uid))["counts"]
            chains[uid] = c["chains"] - c.get("chains_carried_over", 0)  # sampled by this run
        n = sum(chains.values())
        rate = n / max(time.perf_counter() - t0, 1e-9)
        return sum(sizes[u] for u in chains), sum(sizes.values()), f"{n} chains  {rate:.1f} chains/s"

    return poll


def committed_files(shard_dir: str) -> list[str] | None:
    """The shard files of a pseudo-labeling output's ``consensus/``, ``pairs/``, ... that a unit marker names: the
    only files that are data. ``None`` when ``shard_dir`` is not inside such an output (a user's own Parquet)."""
    shard_dir = shard_dir.rstrip("/")
    out, name = posixpath.split(shard_dir)
    if name not in SHARD_DIRS or not storage.exists(storage.join(out, RUN_FILE)):
        return None
    files = []
    for marker in storage.list_files(storage.join(out, UNITS_DIR), ".json"):
        rel = storage.read_json(marker)["files"].get(name)
        if rel:
            files.append(storage.join(out, rel))
    return sorted(files)


# --- counts (markers, manifest.json) ----------------------------------------------------------------------------------


def unit_counts(n_in: int, n_labeled: int, extra: int, consensus: list[dict], pairs: list[dict],
                quarantine: list[dict], *, reused: int = 0, review: int = 0, verticals_matched: int = 0,
                keys: list[dict] | None = None) -> dict:
    """A unit's counts. ``keys``: its keys/ rows, whose status counts new / relabeled / carried-over listings (an
    incremental run; a run without --since says ``labeled``)."""
    chains = [ch for r in consensus for ch in r["chains"]]
    status = Counter(k["status"] for k in keys or [])
    carried = {k["listing_id"] for k in keys or [] if k["status"] == "carried_over"}
    return {
        "listings_in": n_in,
        "listings_quarantined": len(quarantine),
        "listings_labeled": n_labeled,
        "extra_images_dropped": extra,
        "listing_attributes": len(consensus),
        "kept": sum(r["kept"] for r in consensus),
        "below_threshold": sum(not r["kept"] for r in consensus),
        "no_consensus": sum(r["consensus"] is None for r in consensus),
        "pairs": len(pairs),
        "chains": len(chains),
        "chains_unparsed": sum(ch["answer"] is None for ch in chains),
        "chains_reused": reused,
        "predictions_for_review": review,
        "verticals_matched": verticals_matched,
        "listings_new": status["new"],
        "listings_relabeled": status["relabeled"],
        "listings_carried_over": status["carried_over"],
        "chains_carried_over": sum(len(r["chains"]) for r in consensus if r["listing_id"] in carried),
        "quarantine_reasons": dict(Counter(q["reason"] for q in quarantine)),
        "unparsed_reasons": dict(Counter(ch["reason"] for ch in chains if ch["answer"] is None)),
    }


def summarize(markers: list[dict]) -> dict:
    """Sum unit counts; the invariants the audit checks hold by construction and are asserted here too."""
    total: dict[str, Any] = {k: 0 for k in COUNT_KEYS}
    reasons: Counter = Counter()
    unparsed: Counter = Counter()
    for m in markers:
        c = m["counts"]
        for k in COUNT_KEYS:
            total[k] += c.get(k, 0)
        reasons.update(c["quarantine_reasons"])
        unparsed.update(c["unparsed_reasons"])
    total["quarantine_reasons"] = dict(sorted(reasons.items()))
    total["unparsed_reasons"] = dict(sorted(unparsed.items()))
    assert total["listings_in"] == total["listings_labeled"] + total["listings_quarantined"], total
    assert total["listing_attributes"] == total["kept"] + total["below_threshold"], total
    return total


def engine_busy_seconds(markers: list[dict]) -> float:
    """Seconds the engine actors spent generating: per actor, the union of its units' ``generate_interval``s (units
    in flight together on one actor overlap, and count once), summed over actors (two actors busy at once are two
    engines' worth of work). A marker without an interval (written before markers had one, or with no engine call)
    adds its ``generate_seconds``."""
    by_actor: dict[str, list[tuple[float, float]]] = {}
    loose = 0.0
    for m in markers:
        iv = m.get("generate_interval")
        if iv and iv.get("actor") and iv["end"] >= iv["start"]:
            by_actor.setdefault(iv["actor"], []).append((float(iv["start"]), float(iv["end"])))
        else:
            loose += float(m.get("generate_seconds") or 0.0)
    total = loose
    for intervals in by_actor.values():
        intervals.sort()
        start, end = intervals[0]
        for s, e in intervals[1:]:
            if s > end:
                total += end - start
                start, end = s, e
            else:
                end = max(end, e)
        total += end - start
    return round(total, 6)
