"""The pseudo-labeling pipeline on a local Ray: counts, schemas, consensus rules, quarantine, resume."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from attrpipe.config import load_config
from attrpipe.parsing import parse_generation
from attrpipe.pseudolabel.output import engine_busy_seconds
from attrpipe.pseudolabel.pipeline import run_pseudolabel
from attrpipe.schemas import CONSENSUS_SCHEMA, PAIRS_SCHEMA, QUARANTINE_SCHEMA
from attrpipe.scoring import score_chains
from attrpipe.taxonomy import load_taxonomy
from catalogs import write_catalog

VERTICALS = "[suitcase,watch]"


def cfg_for(root: Path, out: Path, *extra: str):
    return load_config("conf/tiny_cpu.yaml", [
        f"data.root={root}", f"pseudolabel.output={out}", "generation.engine=fakes:ScriptedEngine",
        f"taxonomy.verticals={VERTICALS}", "pseudolabel.listings_per_unit=3", *extra])


def read(out: Path, name: str):
    """Read a shard directory the way a user would: pyarrow dataset discovery (which skips hidden temp files)."""
    d = out / name
    return pq.read_table(d) if d.is_dir() and any(p.suffix == ".parquet" for p in d.iterdir()) else None


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("catalog")
    info = write_catalog(root)
    out = root.parent / "out"
    manifest = run_pseudolabel(cfg_for(root, out), verbose=False)
    return root, out, info, manifest


def test_counts_add_up_and_quarantine_has_reasons(scripted_run):
    root, out, info, m = scripted_run
    c = m["counts"]
    assert c["listings_in"] == info["rows"]
    assert c["listings_in"] == c["listings_labeled"] + c["listings_quarantined"]
    assert c["listing_attributes"] == c["kept"] + c["below_threshold"]
    q = read(out, "quarantine").to_pylist()
    got = {}
    for r in q:
        got.setdefault(r["listing_id"], set()).add(r["reason"])
        assert r["source"] and "#" in r["source"]
    assert {k: {v} for k, v in info["expected_quarantine"].items()} == got
    assert c["quarantine_reasons"]["duplicate_listing_id"] == 2
    assert c["extra_images_dropped"] == 15  # the listing with twenty images keeps five
    tax = load_taxonomy("conf/taxonomy", ["suitcase", "watch"])
    labeled = info["rows"] - len(q)
    cons = read(out, "consensus")
    assert cons.num_rows == c["listing_attributes"]
    per_listing = {}
    for r in cons.to_pylist():
        per_listing.setdefault(r["listing_id"], []).append(r["attribute"])
    assert len(per_listing) == labeled
    for lid, attrs in per_listing.items():
        vertical = next(r["vertical"] for r in cons.to_pylist() if r["listing_id"] == lid)
        assert attrs == [a.name for a in tax.vertical(vertical).inferable_attributes()]


def test_the_engine_time_is_recorded_per_unit_and_summed(scripted_run):
    import json

    _, out, _, m = scripted_run
    markers = [json.loads(p.read_text()) for p in sorted((out / "_units").glob("*.json"))]
    per_unit = [mk["generate_seconds"] for mk in markers]
    assert per_unit and all(s > 0 for s in per_unit)  # every unit of this run called the engine
    for mk in markers:
        iv = mk["generate_interval"]
        assert iv["actor"] and iv["end"] - iv["start"] == pytest.approx(mk["generate_seconds"], abs=2e-6)
    # one actor, one unit at a time: its intervals do not overlap, so the busy time is their sum
    assert m["generate_seconds"] == pytest.approx(sum(per_unit), abs=1e-5)


def test_engine_busy_seconds_merge_an_actors_overlapping_units_and_add_actors():
    def mk(start, end, actor, secs=None):
        return {"generate_seconds": end - start if secs is None else secs,
                "generate_interval": {"start": start, "end": end, "actor": actor}}

    # actor a: units [0, 4] and [2, 6] overlap (two in flight), [10, 11] apart: 6 + 1 seconds
    a = [mk(0, 4, "a"), mk(2, 6, "a"), mk(10, 11, "a"), mk(3, 5, "a")]
    assert engine_busy_seconds(a) == pytest.approx(7.0)
    # actor b busy at the same time as a: another engine's worth of work
    assert engine_busy_seconds(a + [mk(0, 4, "b")]) == pytest.approx(11.0)
    # markers without an interval (older outputs) add their own seconds
    assert engine_busy_seconds(a + [{"generate_seconds": 2.5}, {"counts": {}}]) == pytest.approx(9.5)
    assert engine_busy_seconds([]) == 0.0


def test_shards_have_the_documented_schemas(scripted_run):
    _, out, _, _ = scripted_run
    assert read(out, "consensus").schema.equals(CONSENSUS_SCHEMA)
    assert read(out, "pairs").schema.equals(PAIRS_SCHEMA)
    assert read(out, "quarantine").schema.equals(QUARANTINE_SCHEMA)
    assert not list(out.rglob(".tmp-*"))


def test_consensus_rows_obey_the_rules_and_pairs_match_them(scripted_run):
    _, out, _, m = scripted_run
    tax = load_taxonomy("conf/taxonomy", ["suitcase", "watch"])
    cons = read(out, "consensus").to_pylist()
    pairs = read(out, "pairs").to_pylist()
    assert m["counts"]["kept"] > 0 and m["counts"]["below_threshold"] > 0 and len(pairs) > 0
    by_example = {}
    for p in pairs:
        by_example.setdefault(p["example_id"], []).append(p)
    for r in cons:
        attr = tax.attribute(r["vertical"], r["attribute"])
        texts = [ch["text"] for ch in r["chains"]]
        s = score_chains(texts, attr, threshold=0.5, seed=0, ex_id=r["example_id"])
        assert r["consensus"] == s.consensus.value and r["kept"] == s.kept
        assert r["confidence"] == pytest.approx(s.consensus.confidence)
        assert r["n_chains"] == 7 and r["kept"] == (r["consensus"] is not None and r["confidence"] >= 0.5)
        got = by_example.get(r["example_id"], [])
        assert len(got) == len(s.pairs)  # one pair per dispreferred chain of a kept example, else none
        for p in got:
            assert parse_generation(p["chosen"], attr.values).value == r["consensus"]
            assert parse_generation(p["rejected"], attr.values).value != r["consensus"]
            assert p["confidence"] == r["confidence"]
            assert p["prompt"].startswith(f"what is the most suitable value for {attr.name.replace('_', ' ')}")
            assert (p["image_uris"] or p["image_bytes"])
    inline = [r for r in cons if r["listing_id"] == "b-inline"]
    assert inline and inline[0]["image_bytes"] and inline[0]["image_uris"] is None


def test_rerun_skips_everything_and_changed_settings_are_refused(scripted_run):
    root, out, _, m = scripted_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    again = run_pseudolabel(cfg_for(root, out), verbose=False)
    assert again["counts"] == m["counts"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before
    with pytest.raises(RuntimeError, match="threshold"):
        run_pseudolabel(cfg_for(root, out, "consensus.threshold=0.7"), verbose=False)


def _rows(out: Path, name: str):
    t = read(out, name)
    return sorted(t.to_pylist(), key=lambda r: (r.get("example_id") or r["source"], r.get("rejected_index", 0)))


def test_resume_after_losing_units_equals_a_clean_run(scripted_run, tmp_path):
    """A run whose driver died: some units committed, one half-written, the rest never started."""
    root, clean, _, m = scripted_run
    out = tmp_path / "resumed"
    shutil.copytree(clean, out)
    markers = sorted((out / "_units").glob("*.json"))
    assert len(markers) >= 4
    lost = markers[len(markers) // 2:]
    for marker in lost:
        unit = marker.stem
        marker.unlink()
        for sub in ("consensus", "pairs", "quarantine"):
            (out / sub / f"{unit}.parquet").unlink(missing_ok=True)
    # A unit killed while writing: a shard under its final name, truncated, with no marker; and a temp file.
    half = lost[0].stem
    (out / "consensus" / f"{half}.parquet").write_bytes(b"PAR1 truncated")
    (out / "pairs" / f".tmp-deadbeef-{half}.parquet").write_bytes(b"partial")
    (out / "manifest.json").unlink()
    resumed = run_pseudolabel(cfg_for(root, out), verbose=False)
    assert resumed["counts"] == m["counts"]
    for name in ("consensus", "pairs", "quarantine"):
        assert _rows(out, name) == _rows(clean, name)


@pytest.mark.slow
def test_killed_driver_then_rerun_equals_clean_run_with_the_tiny_model(tmp_path, tiny_model_dir):
    """The real thing: SIGKILL the `attrpipe pseudolabel` process mid-run, rerun the same command, compare."""
    root = tmp_path / "catalog"
    write_catalog(root, good=10, bad=False, files=1)
    args = [f"data.root={root}", f"model.path={tiny_model_dir}", "model.build_tiny=false",
            f"taxonomy.verticals={VERTICALS}", "pseudolabel.listings_per_unit=1", "generation.max_new_tokens=8"]
    cmd = [sys.executable, "-m", "attrpipe.cli", "pseudolabel", "conf/tiny_cpu.yaml"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run(cmd + args + [f"pseudolabel.output={clean}"], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(cmd + args + [f"pseudolabel.output={killed}"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((killed / "_units").glob("*.json"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((killed / "_units").glob("*.json")))
    assert 3 <= done < 10, done  # really interrupted in the middle
    subprocess.run(cmd + args + [f"pseudolabel.output={killed}"], check=True, env=env, capture_output=True)
    for name in ("consensus", "quarantine"):
        if read(clean, name) is not None or read(killed, name) is not None:
            assert _rows(killed, name) == _rows(clean, name)
    import json
    assert json.loads((killed / "manifest.json").read_text())["counts"] == \
        json.loads((clean / "manifest.json").read_text())["counts"]


def test_synthetic_catalog_through_the_tiny_model(tmp_path, tiny_model_dir, ray_local):
    """The real engine on the real synthetic catalog: every listing-attribute gets 7 chains and a row."""
    from attrpipe.synth.catalog import write_synthetic_catalog

    tax = load_taxonomy("conf/taxonomy", ["suitcase", "watch"])
    write_synthetic_catalog(tmp_path / "cat", taxonomy=tax, listings=6, seed=1, seed_per_vertical=0,
                            test_per_vertical=0)
    cfg = load_config("conf/tiny_cpu.yaml", [
        f"data.root={tmp_path / 'cat'}", f"model.path={tiny_model_dir}", "model.build_tiny=false",
        f"taxonomy.verticals={VERTICALS}", "pseudolabel.listings_per_unit=2", "generation.max_new_tokens=8",
        f"pseudolabel.output={tmp_path / 'out'}"])
    m = run_pseudolabel(cfg, verbose=False)
    c = m["counts"]
    expected = sum(len(tax.vertical(v).inferable_attributes()) for v in ["suitcase", "watch"]) * 3
    assert c["listings_in"] == 6 and c["listings_quarantined"] == 0
    assert c["listing_attributes"] == expected and c["chains"] == 7 * expected
    cons = read(tmp_path / "out", "consensus")
    assert cons.schema.equals(CONSENSUS_SCHEMA) and cons.num_rows == expected
    rows = cons.to_pylist()
    assert all(len(r["chains"]) == 7 and r["model"] == tiny_model_dir for r in rows)
    assert all(r["image_uris"] and all(u.startswith(str(tmp_path / "cat")) for u in r["image_uris"]) for r in rows)
    # chains are really sampled: the 7 texts of an example are not all identical
    assert any(len({ch["text"] for ch in r["chains"]}) > 1 for r in rows)


def test_duplicate_ids_across_files_and_under_hash_collisions(tmp_path, monkeypatch):
    import builtins

    import pyarrow as pa

    from attrpipe.pseudolabel import units

    cat = tmp_path / "cat"
    cat.mkdir()
    pq.write_table(pa.table({"listing_id": ["a", "b", "c", None, "d"]}), cat / "part-0.parquet")
    pq.write_table(pa.table({"listing_id": ["e", "b", "f", None, "a", "a"]}), cat / "part-1.parquet")
    assert units.find_duplicate_ids(str(cat)) == {"a", "b"}
    # Every id hashing alike must not make distinct ids look duplicated: pass 2 compares the ids themselves.
    monkeypatch.setattr(builtins, "hash", lambda _: 7)
    assert units.find_duplicate_ids(str(cat)) == {"a", "b"}
    pq.write_table(pa.table({"listing_id": ["x", "y"]}), tmp_path / "unique.parquet")
    assert units.find_duplicate_ids(str(tmp_path / "unique.parquet")) == set()


def _comparable(out: Path, name: str):
    return _rows(out, name) if read(out, name) is not None else None


def test_reused_chains_give_exactly_the_rows_of_a_fresh_run(scripted_run, tmp_path):
    """Round 1 of a study's arms: another threshold and a smaller pool over chains sampled once."""
    root, first, _, m = scripted_run
    fresh = run_pseudolabel(cfg_for(root, tmp_path / "fresh", "consensus.threshold=0.7"), limit=16, verbose=False)
    reused = run_pseudolabel(cfg_for(root, tmp_path / "reused", "consensus.threshold=0.7"), limit=16,
                             reuse_chains_from=str(first), verbose=False)
    assert fresh["counts"]["chains_reused"] == 0
    c = reused["counts"]
    assert c["chains_reused"] == c["chains"] > 0 and reused["reused_chains_from"] == str(first)
    assert {k: v for k, v in c.items() if k != "chains_reused"} == \
        {k: v for k, v in fresh["counts"].items() if k != "chains_reused"}
    assert c["listings_in"] == 16 < m["counts"]["listings_in"] and c["listings_quarantined"] == 4
    assert c["kept"] < m["counts"]["kept"] or c["listing_attributes"] < m["counts"]["listing_attributes"]
    for name in ("consensus", "pairs", "quarantine"):
        assert _comparable(tmp_path / "reused", name) == _comparable(tmp_path / "fresh", name) is not None
    # chains sampled with another seed are not this run's chains: refused, naming why
    with pytest.raises(ValueError, match="seed"):
        run_pseudolabel(cfg_for(root, tmp_path / "bad", "run.seed=5"), reuse_chains_from=str(first), verbose=False)


def test_predict_writes_predictions_and_the_rows_for_review(scripted_run, tmp_path):
    from attrpipe.predict import run_predict
    from attrpipe.schemas import PREDICTIONS_SCHEMA, REVIEW_SCHEMA

    root, _, info, _ = scripted_run
    cfg = cfg_for(root, tmp_path / "unused", "predict.review_below=0.8")
    m = run_predict(cfg, out=str(tmp_path / "sc"), mode="self_consistency", verbose=False)
    preds = read(tmp_path / "sc", "predictions")
    review = read(tmp_path / "sc", "review")
    assert preds.schema.equals(PREDICTIONS_SCHEMA) and review.schema.equals(REVIEW_SCHEMA)
    assert preds.num_rows == m["counts"]["listing_attributes"]
    rows = preds.to_pylist()
    low = [r for r in rows if r["value"] is None or r["confidence"] < 0.8]
    assert 0 < len(low) < len(rows) and m["counts"]["predictions_for_review"] == len(low) == review.num_rows
    assert {(r["listing_id"], r["attribute"]) for r in review.to_pylist()} == \
        {(r["listing_id"], r["attribute"]) for r in low}
    assert all(r["needs_review"] == (r in low) for r in rows)
    assert all(r["review_reason"] == ("no_answer" if r["value"] is None else "low_confidence") for r in low)
    assert all(sum(r["votes"].values()) if isinstance(r["votes"], dict) else sum(v for _, v in r["votes"]) <= 7
               for r in review.to_pylist())
    assert m["counts"]["listings_quarantined"] == len(info["expected_quarantine"]) + 1  # b-dup twice
    g = run_predict(cfg, out=str(tmp_path / "greedy"), mode="greedy", verbose=False)
    greedy = read(tmp_path / "greedy", "predictions").to_pylist()
    assert all(r["confidence"] is None and r["n_chains"] == 1 for r in greedy)
    assert g["counts"]["predictions_for_review"] == sum(r["value"] is None for r in greedy)


def test_self_learning_record_count_matches_the_records(scripted_run):
    """The training driver counts SL records from C and n_chains alone; the mapper must make exactly that many."""
    from attrpipe.train.driver import count_records
    from attrpipe.train.examples import sl_records

    root, out, _, _ = scripted_run
    tax = load_taxonomy("conf/taxonomy", ["suitcase", "watch"])
    rows = read(out, "consensus").to_pylist()
    made = sum(len(sl_records(r, tax, max_images=5, with_images=False)) for r in rows)
    assert made > 0 and count_records("sl", cfg_for(root, out), str(out / "consensus")) == made


def test_a_relative_data_root_gives_absolute_image_locations(scripted_run, tmp_path):
    """Training workers run in another working directory than the driver, so the rows that feed them must locate
    images absolutely even when data.root is relative (a DPO run once failed: 'missing: data/miniature/images/...')."""
    root, out, _, m = scripted_run
    relative = Path(os.path.relpath(root))  # data.root relative to the working directory, as in conf/miniature.yaml
    assert not relative.is_absolute()
    rel = run_pseudolabel(cfg_for(relative, tmp_path / "rel"), limit=9, verbose=False)
    assert rel["counts"]["listings_in"] == 9
    uris = [u for r in read(tmp_path / "rel", "consensus").to_pylist() for u in (r["image_uris"] or [])]
    assert uris and all(os.path.isabs(u) and os.path.isfile(u) for u in uris)
    assert not rel["counts"]["quarantine_reasons"].get("image_missing")


def test_the_engine_interval_travels_as_an_arrow_struct_not_a_pickled_object():
    """Ray Data hands the engine actor's rows to the writer as Arrow: the busy interval must convert to a column (a
    list mixing floats and the actor's name did not, and Ray Data fell back to pickling it, with a warning)."""
    from types import SimpleNamespace

    import pyarrow as pa

    from attrpipe.pseudolabel.pipeline import GenerateUnit

    fake = SimpleNamespace(sampling=SimpleNamespace(n=7), engine=SimpleNamespace(identity=lambda: {"engine": "x"}))
    row = {"listings": [{"pixels": [b"x"]}], "unit": {}}
    out = GenerateUnit._finish(fake, row, [["a"] * 7], 0, [(0, 1)], 10.0, 12.5)
    column = pa.Table.from_pylist([{"generate_interval": out["generate_interval"]}]).schema.field(0).type
    assert pa.types.is_struct(column)
    assert out["generate_interval"]["end"] - out["generate_interval"]["start"] == 2.5
    assert out["generate_interval"]["actor"]
