"""Incremental labeling (``--since``): content keys, what reaches the engine, carry-over, refusal, audit, resume.

The pure parts first (no Ray); then (slow: about two minutes on 2 cores) one scenario on a local Ray with fakes.CountingEngine, which writes down every
request it is sent: a catalog predicted once, then a day later 3 listings have new image bytes under the same URIs,
2 are added, 1 is removed and 1 changed vertical.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attrpipe.config import load_config
from attrpipe.pseudolabel import incremental as inc
from attrpipe.pseudolabel.stages import ImageSettings, prepare_listing
from attrpipe.taxonomy import load_taxonomy
from catalogs import _jpeg, write_catalog
from fakes import engine_requests

VERTICALS = "[suitcase,watch]"
CHANGED_BYTES = ("g003", "g004", "g005")  # new image bytes under the same URIs
ADDED = ("n-001", "n-002")
REMOVED = "g007"
MOVED = "g008"  # changes vertical


# --- pure -------------------------------------------------------------------------------------------------------------


def _key(**over):
    key = {"model_fingerprint": "m", "adapter_fingerprint": "a", "images": {"size": 224, "max_images": 5,
           "max_pixels": 1, "max_bytes": 2, "http": {"timeout_s": 5}}, "generation": {"temperature": 1.0, "n": 7},
           "seed": 0, "threshold": 0.5, "review_below": 0.7, "round": 0, "oracle_truth": None, "catalog": "c1",
           "taxonomy": {"path": "t"}}
    for k, v in over.items():
        if isinstance(v, dict):
            key[k] = {**key[k], **v}
        else:
            key[k] = v
    return key


def test_the_labeling_identity_names_what_differs_and_ignores_what_does_not_decide_rows():
    base = _key()
    assert inc.labeling_differences(base, _key(catalog="c2", taxonomy={"path": "u"})) == []
    assert inc.labeling_differences(base, _key(images={"http": {"timeout_s": 9}})) == []  # how, not what, is read
    assert inc.labeling_differences(base, _key(generation={"temperature": 0.7})) == ["generation.temperature"]
    assert inc.labeling_differences(base, _key(adapter_fingerprint="b", images={"size": 448})) == [
        "adapter_fingerprint", "images.size"]


def test_content_keys_follow_image_bytes_vertical_and_that_verticals_questions_only():
    tax = load_taxonomy("conf/taxonomy", ["suitcase", "watch"])
    asked = {v: list(tax.vertical(v).inferable_attributes()) for v in ("suitcase", "watch")}
    ids = inc.vertical_identities(_key(), tax, asked)
    assert ids["suitcase"] != ids["watch"]
    assert inc.vertical_identities(_key(catalog="elsewhere"), tax, asked) == ids
    assert inc.vertical_identities(_key(seed=1), tax, asked)["watch"] != ids["watch"]
    fewer = {**asked, "watch": asked["watch"][:-1]}  # one attribute less asked of watches: only their keys move
    moved = inc.vertical_identities(_key(), tax, fewer)
    assert moved["suitcase"] == ids["suitcase"] and moved["watch"] != ids["watch"]
    a, b = inc.image_digest(b"one"), inc.image_digest(b"two")
    k = inc.content_key(ids["watch"], [a, b])
    assert k == inc.content_key(ids["watch"], [a, b])
    assert len({k, inc.content_key(ids["watch"], [b, a]), inc.content_key(ids["watch"], [a]),
                inc.content_key(ids["suitcase"], [a, b])}) == 4
    assert [inc.status_of(None, k), inc.status_of(k, k), inc.status_of("x", k)] == ["new", "carried_over",
                                                                                    "relabeled"]


def _prepare(tmp_path, uris, is_unchanged=None):
    tax = load_taxonomy("conf/taxonomy", ["suitcase", "watch"])
    cfg = load_config("conf/tiny_cpu.yaml")
    return prepare_listing({"listing_id": "x", "vertical": "watch", "image_uris": uris, "_source": "f#0"},
                           taxonomy=tax, duplicates=set(), images=ImageSettings.from_conf(cfg.images),
                           root=str(tmp_path), is_unchanged=is_unchanged)


def test_an_unchanged_listing_is_hashed_but_not_decoded_and_the_first_bad_image_still_wins(tmp_path):
    (tmp_path / "a.jpg").write_bytes(_jpeg("red"))
    (tmp_path / "b.jpg").write_bytes(_jpeg("blue"))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    seen = []
    full = _prepare(tmp_path, ["a.jpg", "b.jpg"], lambda lid, v, d: seen.append((lid, v, d)) or False)
    assert not full.unchanged and len(full.pixels) == 2
    assert seen == [("x", "watch", [inc.image_digest((tmp_path / f).read_bytes()) for f in ("a.jpg", "b.jpg")])]
    assert full.image_digests == seen[0][2]
    same = _prepare(tmp_path, ["a.jpg", "b.jpg"], lambda *_: True)
    assert same.unchanged and same.pixels == [] and same.image_digests == full.image_digests
    assert same.image_uris == full.image_uris
    # the first failing image in order: image 0 does not decode, image 1 is missing
    q = _prepare(tmp_path, ["bad.jpg", "nowhere.jpg"], lambda *_: True)
    assert q["reason"] == "image_not_an_image" and q["detail"].startswith("image 0")
    q = _prepare(tmp_path, ["a.jpg", "nowhere.jpg"], lambda *_: True)
    assert q["reason"] == "image_missing" and q["detail"].startswith("image 1")


# --- on a local Ray ---------------------------------------------------------------------------------------------------


def _cfg(root: Path, engine: Path, *extra: str):
    return load_config("conf/tiny_cpu.yaml", [
        f"data.root={root}", "generation.engine=fakes:CountingEngine", f"model.path={engine}",
        "model.build_tiny=false", f"taxonomy.verticals={VERTICALS}", "pseudolabel.listings_per_unit=4",
        "predict.mode=self_consistency", *extra])


def _next_day(root: Path) -> Path:
    """The catalog a day later, in ``root/day2``; the changed listings' image files are rewritten in place."""
    rows = pq.read_table(root / "unlabeled").to_pylist()
    for r in rows:
        if r["listing_id"] in CHANGED_BYTES:
            for k, uri in enumerate(r["image_uris"]):
                (root / uri).write_bytes(_jpeg((250, 10 * k, 5)))
        if r["listing_id"] == MOVED:
            r["vertical"] = "watch" if r["vertical"] == "suitcase" else "suitcase"
    rows = [r for r in rows if r["listing_id"] != REMOVED]
    for i, lid in enumerate(ADDED):
        (root / "images" / f"{lid}.jpg").write_bytes(_jpeg((5, 200, 40 * i)))
        rows.insert(3 + 5 * i, {**rows[0], "listing_id": lid, "vertical": "watch", "image_uris": [f"images/{lid}.jpg"],
                                "image_bytes": None})
    (root / "day2").mkdir()
    schema = pq.read_schema(next((root / "unlabeled").glob("*.parquet")))
    half = len(rows) // 2
    for f, part in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.Table.from_pylist(part, schema=schema), root / "day2" / f"part-{f:05d}.parquet",
                       row_group_size=5)
    return root / "day2"


def _rows(out: Path, name: str) -> list[dict]:
    d = out / name
    if not d.is_dir():
        return []
    return [r for f in sorted(d.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


@pytest.fixture(scope="module")
def day2(tmp_path_factory, ray_local):
    from attrpipe.predict import run_predict

    root = tmp_path_factory.mktemp("inc")
    write_catalog(root, good=12, bad=True, files=2)
    engine = root / "engine"
    engine.mkdir()
    (engine / "config.json").write_text("{}")
    cfg = _cfg(root, engine)
    day1 = run_predict(cfg, catalog=str(root / "unlabeled"), out=str(root / "out1"), verbose=False)
    day1_requests = engine_requests(engine)
    catalog2 = _next_day(root)
    m = run_predict(cfg, catalog=str(catalog2), out=str(root / "out2"), since=str(root / "out1"), verbose=False)
    requests = engine_requests(engine)
    full = run_predict(cfg, catalog=str(catalog2), out=str(root / "full"), verbose=False)
    full_requests = engine_requests(engine)
    return {"root": root, "engine": engine, "cfg": cfg, "catalog": catalog2, "day1": day1, "manifest": m,
            "requests": requests, "day1_requests": day1_requests, "full_requests": full_requests}


@pytest.mark.slow
def test_only_new_and_changed_listings_reach_the_engine(day2):
    asked = {r.split("::")[0] for r in day2["requests"]}
    assert asked == {*CHANGED_BYTES, *ADDED, MOVED}
    # every question of those listings, once: the very requests a full relabel sends for them
    assert sorted(day2["requests"]) == sorted(r for r in day2["full_requests"] if r.split("::")[0] in asked)
    inc_counts = day2["manifest"]["incremental"]
    labeled_before = day2["day1"]["counts"]["listings_labeled"]
    assert (inc_counts["relabeled"], inc_counts["new"], inc_counts["removed"]) == (4, 2, 1)
    assert inc_counts["carried_over"] == labeled_before - 1 - 4
    assert inc_counts["quarantined"] == day2["manifest"]["counts"]["listings_quarantined"] > 0
    assert inc_counts["since"] == str(day2["root"] / "out1") and inc_counts["previous_listings"] == labeled_before


@pytest.mark.slow
def test_the_output_equals_a_full_relabel_and_the_carried_rows_the_first_days(day2):
    root = day2["root"]
    for name in ("consensus", "pairs", "predictions", "review", "quarantine"):
        assert _rows(root / "out2", name) == _rows(root / "full", name), name
    keys, full_keys = _rows(root / "out2", "keys"), _rows(root / "full", "keys")
    assert [{**k, "status": None} for k in keys] == [{**k, "status": None} for k in full_keys]
    status = {k["listing_id"]: k["status"] for k in keys}
    assert {lid for lid, s in status.items() if s != "carried_over"} == {*CHANGED_BYTES, *ADDED, MOVED}
    assert {status[lid] for lid in ADDED} == {"new"} and status[MOVED] == "relabeled"
    day1 = {(r["example_id"]): r for r in _rows(root / "out1", "consensus")}
    carried = [r for r in _rows(root / "out2", "consensus") if status[r["listing_id"]] == "carried_over"]
    assert carried and all(r == day1[r["example_id"]] for r in carried)
    assert REMOVED not in status and REMOVED in {r["listing_id"] for r in day1.values()}


@pytest.mark.slow
def test_the_audit_proves_the_incremental_output_and_finds_a_tampered_carried_row(day2, tmp_path):
    from attrpipe.audit import audit

    out = day2["root"] / "out2"
    rep = audit(str(out))
    assert rep.ok, rep.checks
    assert rep.facts["carried_over_checked"] == day2["manifest"]["incremental"]["carried_over"]
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    f = sorted((bad / "predictions").glob("*.parquet"))[0]
    t = pq.read_table(f).to_pylist()
    victim = next(r for r in t if r["value"] is not None)
    victim["value"] = "tampered"
    pq.write_table(pa.Table.from_pylist(t, schema=pq.read_schema(f)), f)
    rep = audit(str(bad))
    problems = rep.checks["carried-over rows equal the previous output's"]
    assert any(victim["listing_id"] in p and "predictions rows differ" in p for p in problems), problems


@pytest.mark.slow
def test_a_previous_output_labeled_differently_is_refused_with_what_differs(day2, tmp_path):
    from attrpipe.predict import run_predict

    root, engine = day2["root"], day2["engine"]
    since = str(root / "out1")
    cfg = _cfg(root, engine, "generation.temperature=0.7")
    with pytest.raises(ValueError, match=r"differs in: generation\.temperature\b"):
        run_predict(cfg, catalog=str(day2["catalog"]), out=str(tmp_path / "t"), since=since, verbose=False)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 32}')
    with pytest.raises(ValueError, match=r"differs in: adapter_fingerprint"):
        run_predict(day2["cfg"], catalog=str(day2["catalog"]), adapter=str(adapter), out=str(tmp_path / "a"),
                    since=since, verbose=False)
    assert engine_requests(engine) == []  # refused before anything was sent
    m = run_predict(cfg, catalog=str(day2["catalog"]), out=str(tmp_path / "all"), since=since, relabel_all=True,
                    verbose=False)
    assert m["incremental"]["carried_over"] == 0 and m["incremental"]["new"] == 2
    assert m["incremental"]["relabeled"] == m["counts"]["listings_labeled"] - 2
    assert len(engine_requests(engine)) == len(day2["full_requests"])


@pytest.mark.slow
def test_an_incremental_run_that_lost_units_and_its_index_resumes_to_the_same_output(day2, tmp_path):
    from attrpipe.predict import run_predict

    root = day2["root"]
    out = tmp_path / "resumed"
    shutil.copytree(root / "out2", out)
    markers = sorted((out / "_units").glob("*.json"))
    for marker in markers[len(markers) // 2:]:
        marker.unlink()
    (out / "_since" / "_index.json").unlink()
    sorted((out / "_since").glob("*.parquet"))[0].unlink()
    (out / "manifest.json").unlink()
    m = run_predict(day2["cfg"], catalog=str(day2["catalog"]), out=str(out), since=str(root / "out1"),
                    verbose=False)
    assert m["counts"] == day2["manifest"]["counts"] and m["incremental"] == day2["manifest"]["incremental"]
    for name in ("consensus", "pairs", "predictions", "review", "quarantine", "keys"):
        assert _rows(out, name) == _rows(root / "out2", name), name
    engine_requests(day2["engine"])


@pytest.mark.slow
def test_a_killed_incremental_predict_rerun_equals_an_uninterrupted_one(day2, tmp_path):
    """SIGKILL the `attrpipe predict --since` process in the middle (one listing per unit, the engine slowed down),
    rerun the same command: the output equals the uninterrupted run's (the fixture's, four listings per unit: the
    same rows in the same order)."""
    root = day2["root"]
    args = [f"data.root={root}", "generation.engine=fakes:CountingEngine", f"model.path={day2['engine']}",
            "model.build_tiny=false", f"taxonomy.verticals={VERTICALS}", "pseudolabel.listings_per_unit=1",
            "predict.mode=self_consistency", "--catalog", str(day2["catalog"]), "--since", str(root / "out1")]
    cmd = [sys.executable, "-m", "attrpipe.cli", "predict", "conf/tiny_cpu.yaml", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent),
           "ATTRPIPE_TEST_ENGINE_DELAY_S": "0.2"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(killed)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    # kill once the engine is at work and a few units are committed (the index is built by then)
    while time.time() < deadline and not (engine_requests_seen(day2["engine"])
                                          and len(list((killed / "_units").glob("*.json"))) >= 3):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    units = pq.read_table(day2["catalog"]).num_rows  # one listing per unit
    done = len(list((killed / "_units").glob("*.json")))
    assert 3 <= done < units, (done, units)  # really interrupted in the middle
    engine_requests(day2["engine"])
    subprocess.run(cmd + ["--out", str(killed)], check=True, env=env, capture_output=True)
    assert sorted({r.split("::")[0] for r in engine_requests(day2["engine"])}) <= sorted(
        {*CHANGED_BYTES, *ADDED, MOVED})
    clean = root / "out2"
    for name in ("consensus", "pairs", "predictions", "review", "quarantine", "keys"):
        assert _rows(killed, name) == _rows(clean, name), name
    m_clean, m_killed = (json.loads((d / "manifest.json").read_text()) for d in (clean, killed))
    assert m_killed["counts"] == m_clean["counts"] and m_killed["incremental"] == m_clean["incremental"]
    from attrpipe.audit import audit

    assert audit(str(killed)).ok


def engine_requests_seen(log_dir: Path) -> list[Path]:
    return list(log_dir.glob("requests-*.log"))
