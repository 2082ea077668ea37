"""``attrpipe audit RUN_DIR``: prove a run from its manifests and shards, or name what is wrong.

A pseudo-labeling output (``_run.json``; also what evaluation and prediction write) is checked unit by unit, never
holding more than one unit in memory:

- **every input row exactly once**: the catalog's units are planned again from ``_run.json``; each has its marker,
  and each input row of a unit (by its ``<file>#<row>`` source) is either quarantined with a reason or labeled (its
  listing has one consensus row per asked attribute), never both, never twice, never missing;
- **the consensus rules**: each consensus row's chain texts are scored again with the same pure function the pipeline
  uses (attrpipe.scoring.score_chains): parsed answers, consensus, C, kept, and the pairs (the seeded draw) must be
  exactly the rows on disk. An oracle arm's output (``oracle_truth`` in ``_run.json``: the diagnostic arms, scored
  against the true labels) is scored again against the same truth file, by the oracle rule;
- **counts**: each marker's counts equal the counts of its shards, and manifest.json's totals the sum of the markers;
- **whole shards**: every shard a marker names is a readable Parquet file with the documented schema. Files no marker
  names (a unit cut short by a kill, a temporary ``.tmp-*`` file) are listed as leftovers: readers take only the
  files the markers name (attrpipe.pseudolabel.output.committed_files), so they are never data.

A loop run (``loop.json``) is checked stage by stage: every planned stage finished, each pseudo-labeling output as
above, each adapter whole (``adapter_config.json`` parses, every tensor of ``adapter_model.safetensors`` loads and is
finite), each evaluation's ``metrics.json`` present. A study (``study.json``) audits every arm's loop run.

The checks are plain functions over files (no Ray); :func:`audit` returns a report, the CLI prints its table and
exits 1 when anything is wrong. What the audit re-derives, it re-derives with the pipeline's own pure functions,
imported here: the output format and the counts (attrpipe.pseudolabel.output), the units and their rows
(attrpipe.pseudolabel.units), the asked attributes (attrpipe.pseudolabel.stages) and the rules (attrpipe.scoring).
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from attrpipe import storage
from attrpipe.catalog_io import CatalogReading
from attrpipe.loop_manifest import LOOP_FILE, read_loop_manifest
from attrpipe.pseudolabel.output import (
    COUNT_KEYS,
    LATER_COUNT_KEYS,
    MANIFEST_FILE,
    RUN_FILE,
    SHARD_DIRS,
    UNITS_DIR,
    committed_unit_ids,
    marker_path,
    read_run_key,
    summarize,
    unit_counts,
)
from attrpipe.pseudolabel.incremental import (
    CARRIED_SHARDS,
    INDEX_FILE,
    KEYS_DIR,
    SINCE_DIR,
    STATUSES,
    previous_rows,
    read_index,
    status_of,
)
from attrpipe.pseudolabel.stages import asked_attributes
from attrpipe.pseudolabel.units import Unit, plan_units, read_labels, read_unit
from attrpipe.schemas import (
    CONSENSUS_SCHEMA,
    KEYS_SCHEMA,
    PAIRS_SCHEMA,
    PREDICTIONS_SCHEMA,
    QUARANTINE_SCHEMA,
    REVIEW_SCHEMA,
)
from attrpipe.scoring import score_chains
from attrpipe.taxonomy import load_taxonomy

__all__ = ["AuditReport", "audit", "audit_pseudolabel", "audit_adapter", "format_report"]

_MAX_PROBLEMS_PER_CHECK = 20  # past this a check says "... and N more" (the count stays exact)


@dataclass
class AuditReport:
    path: str
    kind: str = "unknown"
    checks: dict[str, list[str]] = field(default_factory=dict)  # check name -> problems (empty: passed)
    leftovers: list[str] = field(default_factory=list)  # files no marker names (never read as data)
    facts: dict[str, int] = field(default_factory=dict)  # what was checked (rows, units, ...)

    def check(self, name: str) -> list[str]:
        return self.checks.setdefault(name, [])

    @property
    def ok(self) -> bool:
        return all(not p for p in self.checks.values())

    def merge(self, other: "AuditReport", prefix: str) -> None:
        for name, problems in other.checks.items():
            self.check(name).extend(f"{prefix}: {p}" for p in problems)
        self.leftovers.extend(other.leftovers)
        for k, v in other.facts.items():
            self.facts[k] = self.facts.get(k, 0) + v


# --- pseudo-labeling outputs -----------------------------------------------------------------------------------------


def _schemas():
    return {"consensus": CONSENSUS_SCHEMA, "pairs": PAIRS_SCHEMA, "quarantine": QUARANTINE_SCHEMA,
            "predictions": PREDICTIONS_SCHEMA, "review": REVIEW_SCHEMA, KEYS_DIR: KEYS_SCHEMA}


def _read_shard(out: str, rel: str, schema, problems: list[str]) -> list[dict] | None:
    path = storage.join(out, rel)
    try:
        table = storage.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the finding
        problems.append(f"{rel}: not a readable Parquet file ({type(e).__name__}: {str(e)[:200]})")
        return None
    if not table.schema.equals(schema, check_metadata=False):
        problems.append(f"{rel}: schema differs from the documented one")
        return None
    return table.to_pylist()


def _pair_key(p: dict) -> tuple:
    return (p["example_id"], p["chosen_index"], p["rejected_index"], p["chosen"], p["rejected"], p["consensus"],
            p["confidence"])


def audit_pseudolabel(out: str) -> AuditReport:
    """Audit one pseudo-labeling output directory (or URI)."""
    rep = AuditReport(out, "pseudolabel")
    complete = rep.check("every planned unit committed")
    rows_once = rep.check("every input row labeled or quarantined, exactly once")
    rules = rep.check("consensus and pairs follow the rules")
    counts = rep.check("counts add up (markers, manifest)")
    carried = rep.check("carried-over rows equal the previous output's") if (read_run_key(out) or {}).get(
        "since") else None
    whole = rep.check("shards whole, with the documented schemas")

    key = read_run_key(out)
    if key is None:
        complete.append(f"{out} has no {RUN_FILE}: not a pseudo-labeling output")
        return rep
    greedy = bool(key["generation"].get("greedy"))
    n_chains = 1 if greedy else int(key["generation"]["num_chains"])
    threshold, seed = key["threshold"], key["seed"]
    try:
        units = plan_units(key["catalog"], key["listings_per_unit"], key["limit"])
    except Exception as e:  # noqa: BLE001
        complete.append(f"cannot plan the input's units again from {key['catalog']!r}: {e}")
        return rep
    taxonomy, asked = _asked_by_vertical(key["taxonomy"])
    reading = CatalogReading.from_key(key.get("reading"))  # how the run read its catalog (data.columns, ...)
    truth = None
    if key.get("oracle_truth"):  # a diagnostic oracle arm: the consensus is the true label
        try:
            truth = read_labels(key["oracle_truth"], reading)
        except Exception as e:  # noqa: BLE001
            rules.append(f"cannot read the truth file {key['oracle_truth']!r} the oracle scored with: {e}")
            return rep
    schemas = _schemas()
    on_disk = committed_unit_ids(out)
    planned = {u.unit_id for u in units}
    for extra in sorted(on_disk - planned):
        complete.append(f"{UNITS_DIR}/{extra}.json: a marker for a unit the input does not have")
    named: set[str] = set()
    markers = []
    for unit in units:
        if unit.unit_id not in on_disk:
            complete.append(f"unit {unit.unit_id} ({posixpath.basename(unit.file)} rows {unit.start}-{unit.stop}) "
                            "has no marker: not committed (rerun the command to finish it)")
            continue
        marker = storage.read_json(marker_path(out, unit.unit_id))
        markers.append(marker)
        if Unit(**marker["unit"]) != unit:
            complete.append(f"unit {unit.unit_id}: its marker describes other rows ({marker['unit']})")
            continue
        shards: dict[str, list[dict]] = {}
        for name, rel in marker["files"].items():
            named.add(rel)
            rows = _read_shard(out, rel, schemas[name], whole)
            if rows is None:
                break
            shards[name] = rows
        else:
            labeled = _audit_unit(unit, marker, shards, asked, taxonomy, n_chains, threshold, seed, rows_once, rules,
                                  counts, rep.facts, truth, reading)
            if KEYS_DIR in marker["files"] or carried is not None:
                _audit_keys(out, key, unit.unit_id, shards, labeled, rows_once if carried is None else carried,
                            rep.facts)
    # leftovers: files in the shard folders that no marker names
    for name in SHARD_DIRS:
        d = storage.join(out, name)
        if not storage.exists(d):
            continue
        fs, p = storage.filesystem_for(d)
        from pyarrow import fs as pafs

        for info in fs.get_file_info(pafs.FileSelector(p, recursive=True)):
            if info.type == pafs.FileType.File and f"{name}/{posixpath.relpath(info.path, p)}" not in named:
                rep.leftovers.append(storage.join(d, posixpath.relpath(info.path, p)))
    manifest_path = storage.join(out, MANIFEST_FILE)
    if len(markers) == len(units):
        if not storage.exists(manifest_path):
            counts.append(f"{MANIFEST_FILE} is missing (rerun the command to write it)")
        else:
            totals = summarize(markers) if markers else {k: 0 for k in COUNT_KEYS}
            manifest = storage.read_json(manifest_path)
            written = manifest["counts"]
            diff = [k for k in COUNT_KEYS if written.get(k, 0 if k in LATER_COUNT_KEYS else None) != totals.get(k)]
            if diff:
                counts.append("manifest.json's counts differ from the sum of the unit markers in: " + ", ".join(diff))
            if carried is not None:
                _audit_incremental_manifest(out, manifest, totals, counts)
    rep.facts["units"] = rep.facts.get("units", 0) + len(units)
    return rep


def _asked_by_vertical(tax_conf: dict):
    """The run's taxonomy and, per vertical, the names of the attributes it asked (as the pipeline chose them)."""
    taxonomy = load_taxonomy(tax_conf["path"], tax_conf["verticals"] or None)
    asked = {v: [a.name for a in asked_attributes(taxonomy, v, skip_non_inferable=tax_conf["skip_non_inferable"],
                                                  category_question=tax_conf["category_question"])]
             for v in taxonomy.verticals}
    return taxonomy, asked


def _audit_unit(unit, marker, shards, asked, taxonomy, n_chains, threshold, seed, rows_once, rules, counts, facts,
                truth=None, reading: CatalogReading = CatalogReading()) -> None:
    uid = unit.unit_id
    consensus, pairs, quarantine = (shards.get(k, []) for k in ("consensus", "pairs", "quarantine"))
    # each input row with its vertical as the pipeline names it (data.match_vertical_names), and whether matched
    inputs = []
    for r in read_unit(unit, ["listing_id", "vertical"], reading):
        vertical = taxonomy.match_vertical(r.get("vertical"), reading.match_vertical_names)
        inputs.append((r["_source"], r.get("listing_id"), vertical if vertical is not None else r.get("vertical"),
                       vertical is not None and vertical != r.get("vertical")))
    facts["input_rows"] = facts.get("input_rows", 0) + len(inputs)
    facts["listing_attributes"] = facts.get("listing_attributes", 0) + len(consensus)
    facts["pairs"] = facts.get("pairs", 0) + len(pairs)
    by_listing: dict[str, list[dict]] = defaultdict(list)
    for r in consensus:
        by_listing[r["listing_id"]].append(r)
    q_sources = Counter(q["source"] for q in quarantine)
    input_sources = {s for s, _, _, _ in inputs}
    for s in sorted(set(q_sources) - input_sources):
        rows_once.append(f"unit {uid}: quarantine row for {s}, which is not an input row of the unit")
    for s, n in q_sources.items():
        if n > 1:
            rows_once.append(f"unit {uid}: input row {s} quarantined {n} times")
    for q in quarantine:
        if not q["reason"]:
            rows_once.append(f"unit {uid}: input row {q['source']} quarantined without a reason")
    labeled = set()
    matched = 0
    for source, lid, vertical, was_matched in inputs:
        quarantined = q_sources.get(source, 0) > 0
        has_rows = isinstance(lid, str) and lid in by_listing
        if quarantined and has_rows:
            rows_once.append(f"unit {uid}: input row {source} ({lid}) is both quarantined and labeled")
        elif not quarantined:
            want = asked.get(vertical)
            if want is None:
                rows_once.append(f"unit {uid}: input row {source} ({lid}) has an unknown vertical {vertical!r} "
                                 "but is not quarantined")
                continue
            if lid in labeled:
                rows_once.append(f"unit {uid}: listing {lid} labeled twice (input row {source})")
            labeled.add(lid)
            matched += was_matched
            got = Counter(r["attribute"] for r in by_listing.get(lid, []))
            if set(got) != set(want) or any(n != 1 for n in got.values()):
                rows_once.append(f"unit {uid}: listing {lid} ({source}) has consensus rows for "
                                 f"{sorted(got.elements())}, expected one each for {sorted(want)}")
    for lid in sorted(set(by_listing) - labeled):
        rows_once.append(f"unit {uid}: consensus rows for listing {lid}, which is not a labeled input row")

    # the rules: score the chains again
    pairs_by_ex: dict[str, list[tuple]] = defaultdict(list)
    for p in pairs:
        pairs_by_ex[p["example_id"]].append(_pair_key(p))
    seen_ex = set()
    for r in consensus:
        ex = r["example_id"]
        seen_ex.add(ex)
        try:
            attr = taxonomy.attribute(r["vertical"], r["attribute"])
        except KeyError:
            rules.append(f"{ex}: attribute {r['attribute']!r} is not in the taxonomy of {r['vertical']!r}")
            continue
        texts = [c["text"] for c in r["chains"]]
        if len(texts) != n_chains:
            rules.append(f"{ex}: {len(texts)} chains, the run sampled {n_chains}")
        s = score_chains(texts, attr, threshold=threshold, seed=seed, ex_id=ex, oracle=truth is not None,
                         truth=None if truth is None else truth.get(r["listing_id"], {}).get(r["attribute"]))
        c = s.consensus
        if [ch["answer"] for ch in r["chains"]] != [p.value for p in s.chains]:
            rules.append(f"{ex}: a chain's recorded answer is not what its text parses to")
        got = (r["consensus"], r["confidence"], r["n_valid"], r["kept"], r["tied"])
        want = (c.value, c.confidence, c.n_valid, s.kept, c.tied)
        if got != want:
            rules.append(f"{ex}: (consensus, C, valid, kept, tied) is {got}, the rules give {want}")
        expected_pairs = sorted((ex, p.chosen, p.rejected, texts[p.chosen], texts[p.rejected], c.value, c.confidence)
                                for p in s.pairs)
        if sorted(pairs_by_ex.get(ex, [])) != expected_pairs:
            rules.append(f"{ex}: {len(pairs_by_ex.get(ex, []))} pair rows on disk, the rules give "
                         f"{len(expected_pairs)} (or they differ in chosen/rejected)")
    for ex in sorted(set(pairs_by_ex) - seen_ex):
        rules.append(f"unit {uid}: pairs for {ex}, which has no consensus row")

    # counts: the marker's against its shards (the same function the pipeline counts with)
    extra = sum({r["listing_id"]: r["images_dropped"] for r in consensus}.values())
    mc = marker["counts"]
    recount = unit_counts(len(inputs), len(labeled), extra, consensus, pairs, quarantine,
                          reused=mc.get("chains_reused", 0), review=len(shards.get("review", [])),
                          verticals_matched=matched, keys=shards.get(KEYS_DIR))
    diff = [k for k, v in recount.items() if mc.get(k, 0 if k in LATER_COUNT_KEYS else None) != v]
    if diff:
        counts.append(f"unit {uid}: marker counts differ from its shards in: {', '.join(diff)}")
    if "predictions" in shards and len(shards["predictions"]) != len(consensus):
        counts.append(f"unit {uid}: {len(shards['predictions'])} predictions for {len(consensus)} listing-attributes")
    return labeled


_REFRESHED = ("image_uris", "images_dropped")  # a carried-over row takes these from the new catalog


def _audit_keys(out: str, key: dict, uid: str, shards: dict, labeled: set[str], problems: list[str],
                facts: dict) -> None:
    """keys/: one row per labeled listing. An incremental run's (``since`` in _run.json): each status agrees with
    the index and with the previous output's own keys shard; each carried-over listing's rows equal the previous
    output's (but for the image references the new catalog gives); each relabeled listing's key differs there."""
    keys = shards.get(KEYS_DIR, [])
    got = Counter(k["listing_id"] for k in keys)
    if set(got) != labeled or any(n != 1 for n in got.values()):
        problems.append(f"unit {uid}: {KEYS_DIR}/ has {len(keys)} rows for {len(labeled)} labeled listings "
                        "(expected one each)")
    since = key.get("since")
    if since is None:
        bad = sorted({k["status"] for k in keys} - {"labeled"})
        if bad:
            problems.append(f"unit {uid}: statuses {bad} in a run without --since")
        return
    index = read_index(out, uid)
    by_previous_unit: dict[str, list[dict]] = defaultdict(list)
    for k in keys:
        lid = k["listing_id"]
        previous_key, previous_unit = index.get(lid, (None, None))
        want = status_of(previous_key, k["content_key"], relabel_all=bool(key.get("relabel_all")))
        if k["status"] not in STATUSES or k["status"] != want:
            problems.append(f"unit {uid}: listing {lid} is {k['status']!r}; its key against the index says {want!r}")
        elif previous_unit is not None:
            by_previous_unit[previous_unit].append(k)
    own = {name: defaultdict(list) for name in CARRIED_SHARDS}
    for name in CARRIED_SHARDS:
        for r in shards.get(name, []):
            own[name][r["listing_id"]].append(r)
    for previous_unit, ks in sorted(by_previous_unit.items()):
        try:
            old = previous_rows(since, previous_unit, {k["listing_id"] for k in ks})
        except Exception as e:  # noqa: BLE001 - an unreadable previous output is the finding
            problems.append(f"unit {uid}: cannot read unit {previous_unit} of the previous output {since}: {e}")
            continue
        old_keys = {r["listing_id"]: r["content_key"] for r in old.get(KEYS_DIR, [])}
        old_rows = {name: defaultdict(list) for name in CARRIED_SHARDS}
        for name in CARRIED_SHARDS:
            for r in old.get(name, []):
                old_rows[name][r["listing_id"]].append({c: v for c, v in r.items() if c not in _REFRESHED})
        for k in ks:
            lid = k["listing_id"]
            if lid not in old_keys:
                problems.append(f"unit {uid}: listing {lid}: the index places it in the previous output's unit "
                                f"{previous_unit}, whose {KEYS_DIR}/ does not have it")
                continue
            same = old_keys[lid] == k["content_key"]
            if k["status"] == "relabeled" and same and not key.get("relabel_all"):
                problems.append(f"unit {uid}: listing {lid} was relabeled with the key it had before")
            if k["status"] != "carried_over":
                continue
            facts["carried_over_checked"] = facts.get("carried_over_checked", 0) + 1
            if not same:
                problems.append(f"unit {uid}: listing {lid} was carried over but its key differs from the previous "
                                "output's")
            for name in CARRIED_SHARDS:
                mine = [{c: v for c, v in r.items() if c not in _REFRESHED} for r in own[name].get(lid, [])]
                if mine != old_rows[name].get(lid, []):
                    problems.append(f"unit {uid}: listing {lid}: its {name} rows differ from the previous "
                                    f"output's (unit {previous_unit})")


def _audit_incremental_manifest(out: str, manifest: dict, totals: dict, problems: list[str]) -> None:
    inc = manifest.get("incremental") or {}
    index_file = storage.join(out, SINCE_DIR, INDEX_FILE)
    if not storage.exists(index_file):
        problems.append(f"{SINCE_DIR}/{INDEX_FILE} is missing: the index of the previous output was not finished")
        return
    want = {"carried_over": totals["listings_carried_over"], "relabeled": totals["listings_relabeled"],
            "new": totals["listings_new"], "quarantined": totals["listings_quarantined"],
            "removed": storage.read_json(index_file)["removed"]}
    diff = [k for k, v in want.items() if inc.get(k) != v]
    if diff:
        problems.append("manifest.json's incremental counts differ from the markers and the index in: "
                        + ", ".join(diff))


# --- adapters, loop runs, studies ------------------------------------------------------------------------------------


def audit_adapter(path: str) -> list[str]:
    """Problems of a PEFT adapter directory (empty: whole): config parses, every tensor loads and is finite."""
    import torch
    from safetensors.torch import load as load_safetensors

    problems = []
    cfg_path, weights = storage.join(path, "adapter_config.json"), storage.join(path, "adapter_model.safetensors")
    for p in (cfg_path, weights):
        if not storage.exists(p):
            problems.append(f"{p} is missing")
    if problems:
        return problems
    try:
        json.loads(storage.read_bytes(cfg_path))
    except ValueError as e:
        problems.append(f"{cfg_path}: not valid JSON ({e})")
    try:
        tensors = load_safetensors(storage.read_bytes(weights))
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt file is the finding
        return problems + [f"{weights}: not a whole safetensors file ({type(e).__name__}: {str(e)[:200]})"]
    if not tensors:
        problems.append(f"{weights}: holds no tensors")
    bad = [k for k, t in tensors.items() if not torch.isfinite(t.float()).all()]
    if bad:
        problems.append(f"{weights}: non-finite values in {', '.join(bad[:5])}")
    return problems


def audit_loop(run_dir: str) -> AuditReport:
    rep = AuditReport(run_dir, "loop")
    stages = rep.check("every planned stage finished")
    adapters = rep.check("adapters whole")
    evals = rep.check("evaluations written")
    manifest = read_loop_manifest(run_dir)
    fin = manifest["finished"]
    for name in manifest["stages"]:
        if name not in fin:
            stages.append(f"stage {name} did not finish (rerun the loop command to continue from it)")
            continue
        result = fin[name]
        if name.endswith("/pseudolabel"):
            out = storage.join(run_dir, name.split("/")[0], "pseudolabels")
            rep.merge(audit_pseudolabel(out), name)
            manifest_path = storage.join(out, MANIFEST_FILE)
            if storage.exists(manifest_path) and storage.read_json(manifest_path)["counts"] != result.get("counts"):
                rep.check("counts add up (markers, manifest)").append(
                    f"{name}: loop.json's counts differ from the stage's manifest.json")
        elif "adapter" in result:
            adapters.extend(f"{name}: {p}" for p in audit_adapter(result["adapter"]))
        elif name.endswith("eval") and "shared_from" not in result:
            metrics = storage.join(run_dir, name, "metrics.json")
            if not storage.exists(metrics):
                evals.append(f"{name}: {metrics} is missing")
            predictions = storage.join(run_dir, name, "predictions")
            if storage.exists(storage.join(predictions, RUN_FILE)):  # the greedy decodes it scored
                rep.merge(audit_pseudolabel(predictions), name)
    return rep


def audit(path: str) -> AuditReport:
    """Audit a loop run, a study, or a pseudo-labeling / evaluation / prediction output."""
    if storage.exists(storage.join(path, LOOP_FILE)):
        return audit_loop(path)
    if storage.exists(storage.join(path, RUN_FILE)):
        return audit_pseudolabel(path)
    if storage.exists(storage.join(path, "study.json")):
        rep = AuditReport(path, "study")
        runs = sorted(posixpath.dirname(f) for f in storage.find_files(path, LOOP_FILE))  # seed-S/<arm>/loop.json
        if not runs:
            rep.check("study arms").append("no loop run (loop.json) under the study directory")
        for run in runs:
            rep.merge(audit_loop(run), posixpath.relpath(run, path) if "://" not in path else run)
        return rep
    if storage.exists(storage.join(path, "predictions", RUN_FILE)):  # an evaluation's output
        return audit_pseudolabel(storage.join(path, "predictions"))
    rep = AuditReport(path)
    rep.check("recognised").append(f"{path} holds no loop.json, study.json or _run.json: nothing attrpipe wrote")
    return rep


def format_report(rep: AuditReport) -> str:
    lines = [f"audit of {rep.path} ({rep.kind})"]
    facts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(rep.facts.items()))
    if facts:
        lines.append(f"checked: {facts}")
    width = max([len(n) for n in rep.checks] + [10])
    for name, problems in rep.checks.items():
        lines.append(f"  {name:<{width}}  {'ok' if not problems else f'FAILED ({len(problems)})'}")
        for p in problems[:_MAX_PROBLEMS_PER_CHECK]:
            lines.append(f"      - {p}")
        if len(problems) > _MAX_PROBLEMS_PER_CHECK:
            lines.append(f"      ... and {len(problems) - _MAX_PROBLEMS_PER_CHECK} more")
    if rep.leftovers:
        lines.append(f"  leftovers no marker names (never read as data; safe to delete): {len(rep.leftovers)}")
        lines.extend(f"      {f}" for f in rep.leftovers[:10])
    lines.append("audit passed" if rep.ok else "audit FAILED")
    return "\n".join(lines)
