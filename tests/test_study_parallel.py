"""A study's arms side by side on a local Ray (attrpipe.study_cluster): a pool-size study of 2 pools x 1 seed, its DPO
arms run on a cluster that fits one arm at a time (with study.max_concurrent_arms=2), then its DPO and SL arms two at
once, one arm made to fail. The two runs share their seed SFT and chains (one run.name, two study.name), and the DPO
arms' numbers and adapters are compared.

The local Ray has 4 logical CPUs on this 2-core machine: Ray schedules by logical resources, so two arms' stages do
run at the same time, but share 2 cores; timings here show concurrency, not speed. The engine is the scripted one
(tests/fakes.py), training is real (the tiny Qwen2.5-VL, 2 steps of DPO or SL).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import init_test_ray

from attrpipe.config import load_config

pytestmark = pytest.mark.slow

VERTICALS = ["suitcase", "watch"]
ARMS = ["dpo-pool-4", "sl-pool-4", "dpo-pool-8", "sl-pool-8"]
FAILING = "sl-pool-4"
IN_TURN = ["dpo-pool-4", "dpo-pool-8"]  # the one-at-a-time run: DPO only (the SL arms run the same code)


@pytest.fixture(scope="module")
def ray4():
    import ray

    was = ray.is_initialized()
    if was:
        ray.shutdown()
    init_test_ray(4)
    yield
    ray.shutdown()
    if was:
        init_test_ray(2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir, ray4):
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    d = tmp_path_factory.mktemp("study-parallel")
    write_synthetic_catalog(d / "cat", taxonomy=load_taxonomy("conf/taxonomy", VERTICALS), listings=8, seed=1,
                            seed_per_vertical=2, test_per_vertical=2)
    return d


def _cfg(d: Path, model: str, *extra: str):
    return load_config("conf/tiny_cpu.yaml", [
        f"data.root={d / 'cat'}", f"model.path={model}", "model.build_tiny=false",
        f"taxonomy.verticals=[{','.join(VERTICALS)}]", "generation.engine=fakes:ScriptedEngine",
        "pseudolabel.listings_per_unit=4", "sft.max_steps=2", "dpo.max_steps=2", "sl.max_steps=2",
        f"run.output_dir={d / 'runs'}", "run.name=p", "study.seeds=[0]", "study.rounds=1",
        "study.pool_sizes=[4,8]", "study.methods=[dpo,sl]", "study.max_concurrent_arms=2", *extra])


def _study(setup, tiny_model_dir, name: str, cpus_per_task: float, *extra: str) -> tuple[dict, list[str]]:
    """The study's manifest and the lines it said (attrpipe.console.echo)."""
    from unittest import mock

    from attrpipe.study import run_study

    # an arm's largest stage: generation, 1 engine CPU + 2 CPU stages x cpus_per_task; 4 CPUs fit 1 (at 1.0) or 2
    cfg = _cfg(setup, tiny_model_dir, f"study.name={name}", f"ray.preprocess.num_cpus_per_task={cpus_per_task}",
               *extra)
    lines: list[str] = []
    with mock.patch("attrpipe.study.echo", lines.append):
        out = run_study(cfg, "pool-size", verbose=True)
    return out, lines


def _arm_dir(setup, name: str, arm: str) -> Path:
    return setup / "runs" / "p" / f"study-pool-size-{name}" / "seed-0" / arm


def _spans(setup, name: str, arms=ARMS) -> dict[str, tuple[float, float]]:
    """Each arm's own stages (the shared seed SFT's copy left out): from the first start to the last end."""
    spans = {}
    for arm in arms:
        fin = json.loads((_arm_dir(setup, name, arm) / "loop.json").read_text())["finished"]
        own = [v for k, v in fin.items() if k.startswith("round-")]
        spans[arm] = (min(v["started_at"] for v in own), max(v["ended_at"] for v in own))
    return spans


def _adapter_sha(setup, name: str, arm: str) -> str:
    return hashlib.sha256((_arm_dir(setup, name, arm) / "round-1" / "adapter" / "adapter_model.safetensors")
                          .read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def in_turn(setup, tiny_model_dir, ray4):
    return _study(setup, tiny_model_dir, "turns", 1.0, "study.methods=[dpo]")


@pytest.fixture(scope="module")
def side_by_side(setup, tiny_model_dir, in_turn):
    """Two at once, one arm failing (its run directory holds another configuration's loop run); then the rerun,
    with the directory cleared."""
    planted = _arm_dir(setup, "sbs", FAILING) / "loop.json"
    planted.parent.mkdir(parents=True)
    planted.write_text(json.dumps({"result_key": "another", "sft_key": "another", "stages": ["round-1/eval"],
                                   "finished": {"round-1/eval": {"accuracy": 0.0}}}))
    first = _study(setup, tiny_model_dir, "sbs", 0.5)
    summary_after_first = json.loads((setup / "runs" / "p" / "summary.json").read_text())
    md_after_first = (setup / "runs" / "p" / "study-pool-size-sbs" / "study.md").read_text()
    spans_first = _spans(setup, "sbs", [a for a in ARMS if a != FAILING])
    planted.unlink()
    rerun = _study(setup, tiny_model_dir, "sbs", 0.5)
    return {"first": first, "summary_after_first": summary_after_first, "md_after_first": md_after_first,
            "spans_first": spans_first, "rerun": rerun}


def test_a_cluster_that_fits_one_arm_runs_them_in_turn(setup, in_turn):
    out, lines = in_turn
    assert out["concurrency"] == 1 and not out["failed"]
    assert lines[0] == ("[study pool-size] 2 arms over 1 seed(s); 1 job(s) at once (an arm needs 3 CPU; the cluster "
                        "has 4 CPU)")
    # one line as each job starts and one as it ends, the shared job first; then the table
    assert lines[1] == "[study pool-size] seed 0: shared seed SFT and chains: running (1 running, 2 queued)"
    assert lines[2].startswith("[study pool-size] seed 0: shared seed SFT and chains: done in ")
    assert lines[3] == "[study pool-size] seed 0: dpo-pool-4: running (1 running, 1 queued)"
    assert lines[4].startswith("[study pool-size] seed 0: dpo-pool-4: done in ") and ": accuracy " in lines[4]
    assert sum(": running (" in ln for ln in lines) == 3 and sum(": done in " in ln for ln in lines) == 3
    assert lines[7].startswith("| unlabeled listings | method |")
    assert sorted(a["arm"] for a in out["arms"]) == IN_TURN and out["values"] == [4, 8]
    # the pools are prefixes of one generation: the 8 listings' chains, sampled once, and each arm reads its first N
    small, large = (json.loads((_arm_dir(setup, "turns", a) / "loop.json").read_text())["finished"]
                    ["round-1/pseudolabel"]["counts"] for a in IN_TURN)
    assert small["listings_in"] == 4 and large["listings_in"] == 8
    assert small["chains_reused"] == small["chains"] and large["chains_reused"] == large["chains"]
    assert small["listing_attributes"] < large["listing_attributes"]
    chains = json.loads((setup / "runs" / "p" / "shared" / "seed-0" / "chains-8" / "manifest.json").read_text())
    assert chains["limit"] == 8 and chains["counts"]["listings_in"] == 8
    spans = sorted(_spans(setup, "turns", IN_TURN).values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans  # no two arms' stages overlap


def test_arms_side_by_side_overlap_and_give_the_same_numbers_and_adapters(setup, in_turn, side_by_side):
    out, _ = side_by_side["first"]
    assert out["concurrency"] == 2
    spans = side_by_side["spans_first"]
    overlapping = [(a, b) for a in spans for b in spans if a < b
                   and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]]
    assert overlapping, spans  # two arms were running at the same time
    rerun, _ = side_by_side["rerun"]
    turns = {a["arm"]: a for a in in_turn[0]["arms"]}
    for arm in (a for a in rerun["arms"] if a["arm"] in IN_TURN):
        other = turns[arm["arm"]]
        for key in ("accuracy", "sft_accuracy", "per_round", "kept", "pairs", "listings", "listing_attributes",
                    "scored", "premise", "parse_failure_rate"):
            assert arm[key] == other[key], (arm["arm"], key)
        assert _adapter_sha(setup, "sbs", arm["arm"]) == _adapter_sha(setup, "turns", arm["arm"]), arm["arm"]
    assert [r for r in rerun["summary"] if r["method"] == "dpo"] == in_turn[0]["summary"]


def test_a_failed_arm_is_recorded_and_the_others_finish(setup, side_by_side):
    out, lines = side_by_side["first"]
    assert lines[0].endswith("2 job(s) at once (an arm needs 2 CPU; the cluster has 4 CPU)")
    failed = [ln for ln in lines if ": failed in " in ln]
    assert len(failed) == 1 and failed[0].startswith(f"[study pool-size] seed 0: {FAILING}: failed in ")
    assert "RuntimeError: " in failed[0] and "different configuration" in failed[0]
    assert "1 of 4 arm(s) failed" in lines[-2]
    assert [f["arm"] for f in out["failed"]] == [FAILING]
    assert out["failed"][0]["error"].startswith("RuntimeError: ") and "different configuration" in (
        out["failed"][0]["error"])
    assert sorted(a["arm"] for a in out["arms"]) == sorted(a for a in ARMS if a != FAILING)
    entry = side_by_side["summary_after_first"]["studies"]["p/study-pool-size-sbs"]
    assert list(entry["failed"]) == [f"{FAILING}/seed-0"] and "different configuration" in (
        entry["failed"][f"{FAILING}/seed-0"]["error"])
    assert FAILING not in entry["arms"]
    md = side_by_side["md_after_first"]
    assert "## Failed arms" in md and FAILING in md
    print("\n".join(lines))  # the terminal of a study with a failed arm (docs/loop.md shows it)


def test_the_rerun_redoes_only_the_failed_arm(setup, side_by_side):
    rerun, _ = side_by_side["rerun"]
    assert not rerun["failed"] and sorted(a["arm"] for a in rerun["arms"]) == sorted(ARMS)
    after = _spans(setup, "sbs")
    first = side_by_side["spans_first"]
    for arm, span in first.items():
        assert after[arm] == span, arm  # finished before: not a stage run again
    assert after[FAILING][0] > max(end for _, end in first.values())  # the failed one ran, after the first run
    summary = json.loads((setup / "runs" / "p" / "summary.json").read_text())
    entry = summary["studies"]["p/study-pool-size-sbs"]
    assert entry["failed"] == {} and FAILING in entry["arms"]
    assert entry["commands"][0]["failed"] == [f"{FAILING}/seed-0"] and entry["commands"][1]["failed"] == []
