"""Studies and the report, end to end on a small synthetic catalog on a local Ray: the threshold study (DPO and SL
side by side), a named lever and the oracle arms beside it, then the HTML report, rendered by headless Chromium and
checked on screen. The pool-size study runs in tests/test_study_parallel.py.

The generation engine is the scripted one (tests/fakes.py) so that consensus, kept examples and pairs vary as they do
with a trained model; training (SFT, DPO, SL) is real, on the tiny Qwen2.5-VL.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from browser import screenshot

from attrpipe.config import load_config

pytestmark = pytest.mark.slow

VERTICALS = ["suitcase", "watch"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir, ray_local):
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    d = tmp_path_factory.mktemp("study")
    write_synthetic_catalog(d / "cat", taxonomy=load_taxonomy("conf/taxonomy", VERTICALS), listings=8, seed=1,
                            seed_per_vertical=2, test_per_vertical=2)
    return d


def _cfg(d: Path, model: str, *extra: str):
    return load_config("conf/tiny_cpu.yaml", [
        f"data.root={d / 'cat'}", f"model.path={model}", "model.build_tiny=false",
        f"taxonomy.verticals=[{','.join(VERTICALS)}]", "generation.engine=fakes:ScriptedEngine",
        "pseudolabel.listings_per_unit=4", "sft.max_steps=2", "dpo.max_steps=2", "sl.max_steps=2",
        f"run.output_dir={d / 'runs'}", "run.name=s", "study.seeds=[0]", "study.rounds=1", *extra])


@pytest.fixture(scope="module")
def threshold_study(setup, tiny_model_dir):
    from attrpipe.study import run_study

    cfg = _cfg(setup, tiny_model_dir, "study.thresholds=[0.5,0.8]", "study.methods=[dpo,sl]")
    return run_study(cfg, "threshold", verbose=False)


def _loop(setup: Path, kind: str, arm: str) -> dict:
    return json.loads((setup / "runs" / "s" / f"study-{kind}" / "seed-0" / arm / "loop.json").read_text())


def test_threshold_study_runs_dpo_and_sl_arms_over_shared_sft_and_chains(setup, threshold_study):
    st = threshold_study
    d = setup / "runs" / "s" / "study-threshold"
    for f in ("study.json", "study.md", "study.png"):
        assert (d / f).is_file(), f
    assert (d / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(a["arm"] for a in st["arms"]) == ["dpo-C-0.5", "dpo-C-0.8", "sl-C-0.5", "sl-C-0.8"]
    assert all(a["accuracy"] is not None and a["sft_accuracy"] is not None for a in st["arms"])
    assert len({a["sft_accuracy"] for a in st["arms"]}) == 1  # one seed SFT, shared
    assert [(r["value"], r["method"]) for r in st["summary"]] == [(0.5, "dpo"), (0.5, "sl"), (0.8, "dpo"),
                                                                  (0.8, "sl")]
    assert "| 0.5 | DPO | 1 |" in st["table"] and "| 0.8 | SL | 1 |" in st["table"]
    kept = {a["value"]: a["kept"] for a in st["arms"] if a["method"] == "dpo"}
    assert kept[0.8] <= kept[0.5] and kept[0.5] > 0  # a stricter C keeps fewer pseudo-labels
    for arm in ("dpo-C-0.5", "sl-C-0.8"):
        m = _loop(setup, "threshold", arm)
        assert "shared_from" in m["finished"]["sft"] and "shared_from" in m["finished"]["sft/eval"]
        pl = m["finished"]["round-1/pseudolabel"]
        assert pl["reused_chains_from"].endswith("shared/seed-0/chains-all")
        assert pl["counts"]["chains_reused"] == pl["counts"]["chains"] > 0  # nothing sampled twice
        assert "skipped" not in m["finished"]["round-1/train"]  # DPO had pairs, SL kept examples: both trained
        assert m["method"] == arm.split("-")[0]
    # the arms' adapters were trained from the shared SFT adapter, and differ from it
    base = (setup / "runs" / "s" / "shared" / "seed-0" / "base" / "sft" / "adapter" / "adapter_model.safetensors"
            ).read_bytes()
    for arm in ("dpo-C-0.5", "sl-C-0.5"):
        assert (d / "seed-0" / arm / "sft" / "adapter" / "adapter_model.safetensors").read_bytes() == base
        assert (d / "seed-0" / arm / "round-1" / "adapter" / "adapter_model.safetensors").read_bytes() != base


def test_a_study_is_one_mlflow_run_with_its_arms_and_what_they_share_as_children(setup, threshold_study):
    """The default local store (<run.output_dir>/mlflow.db): the study's run; its children the four arms' loop runs,
    the shared seed SFT's loop run and the shared chains, each once; an arm refers to what it shares by tags and
    logs only its own round."""
    from mlflow import MlflowClient

    runs_dir = setup / "runs"
    study = json.loads((runs_dir / "s" / "study-threshold" / "tracking.json").read_text())
    base = json.loads((runs_dir / "s" / "shared" / "seed-0" / "base" / "tracking.json").read_text())
    chains = json.loads((runs_dir / "s" / "shared" / "seed-0" / "chains-all" / "tracking.json").read_text())
    assert study["uri"] == f"sqlite:///{runs_dir}/mlflow.db" and study["finished"]
    client = MlflowClient(study["uri"])
    children = client.search_runs([study["experiment_id"]],
                                  filter_string=f"tags.mlflow.parentRunId = '{study['run_id']}'")
    names = sorted(r.info.run_name for r in children)
    assert names == sorted(["seed-0/dpo-C-0.5", "seed-0/dpo-C-0.8", "seed-0/sl-C-0.5", "seed-0/sl-C-0.8",
                            "seed-0/seed-sft", "seed-0/chains-all"])
    by = {r.info.run_name: r for r in children}
    assert by["seed-0/seed-sft"].info.run_id == base["run_id"] and by["seed-0/chains-all"].info.run_id == chains["run_id"]
    assert by["seed-0/chains-all"].data.metrics["listing_attributes"] > 0
    arm = by["seed-0/dpo-C-0.8"]
    assert arm.data.tags["attrpipe.seed_sft_run"] == base["run_id"] and arm.data.tags["attrpipe.chains_run"] == \
        chains["run_id"]
    assert arm.data.tags["attrpipe.study"] == "study threshold" and arm.data.tags["attrpipe.threshold"] == "0.8"
    stages = client.search_runs([study["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{arm.info.run_id}'")
    assert sorted(r.data.tags["attrpipe.stage"] for r in stages) == ["round-1/eval", "round-1/pseudolabel",
                                                                     "round-1/train"]
    assert [m.step for m in client.get_metric_history(arm.info.run_id, "accuracy")] == [0, 1]
    assert {a.path for a in client.list_artifacts(study["run_id"])} >= {"study.json", "study.md", "study.png",
                                                                        "summary.json"}


def test_the_audit_proves_every_arm_of_a_study(setup, threshold_study):
    from attrpipe.audit import audit, format_report

    rep = audit(str(setup / "runs" / "s" / "study-threshold"))
    assert rep.kind == "study" and rep.ok, format_report(rep)
    assert rep.facts["input_rows"] > 0 and rep.facts["units"] > 0


def test_a_named_lever_study_shares_the_seed_sft_and_the_chains(setup, tiny_model_dir, threshold_study):
    """Another DPO setting, beside the default arms: no seed SFT and no sampling again."""
    from attrpipe.study import run_study

    base_loop = setup / "runs" / "s" / "shared" / "seed-0" / "base" / "loop.json"
    sft_before = json.loads(base_loop.read_text())["finished"]["sft"]
    cfg = _cfg(setup, tiny_model_dir, "study.thresholds=[0.5]", "study.methods=[dpo]", "dpo.beta=0.5",
               "study.name=beta-0.5")
    st = run_study(cfg, "threshold", verbose=False)
    d = setup / "runs" / "s" / "study-threshold-beta-0.5"
    assert (d / "study.md").is_file() and [a["arm"] for a in st["arms"]] == ["dpo-C-0.5"]
    assert json.loads(base_loop.read_text())["finished"]["sft"] == sft_before  # the seed SFT was not redone
    m = json.loads((d / "seed-0" / "dpo-C-0.5" / "loop.json").read_text())
    pl = m["finished"]["round-1/pseudolabel"]["counts"]
    assert pl["chains_reused"] == pl["chains"] > 0
    assert st["arms"][0]["sft_accuracy"] == threshold_study["arms"][0]["sft_accuracy"]
    default = _loop(setup, "threshold", "dpo-C-0.5")
    assert m["result_key"] != default["result_key"]  # its own arm, another DPO setting
    assert OmegaConf.load(d / "seed-0" / "dpo-C-0.5" / "config.yaml").dpo.beta == 0.5


def test_report_renders_with_every_plot(setup, threshold_study, tmp_path):
    from PIL import Image

    from attrpipe.cli import main

    run_dir = setup / "runs" / "s"  # the studies' arms are its loop runs: DPO and SL side by side
    out = tmp_path / "report"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    for png in ("accuracy_by_round.png", "by_vertical.png", "confidence.png", "calibration.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and f"src='{png}'" in page, png
    assert "study_threshold_" in page and "<td>DPO</td>" in page and "<td>SL</td>" in page and "Calibration of consensus" in page
    assert "No labeled slice" not in page  # the synthetic catalog's truth file measures calibration

    shot = tmp_path / "shot.png"
    screenshot(out / "index.html", shot, tmp_path / "chromium-profile", "1100,3000")
    img = Image.open(shot).convert("RGB")
    assert img.size == (1100, 3000)
    small = img.resize((275, 750))
    pixels = list(small.getdata())
    non_white = sum(1 for p in pixels if min(p) < 235) / len(pixels)
    assert non_white > 0.03, f"the page looks blank ({non_white:.1%} non-white)"
    assert len(set(small.quantize(64).getdata())) > 8  # text, axes, coloured lines: not one flat colour
    # matplotlib's first line colour (#1f77b4) on screen: the plots loaded, not broken-image icons
    assert any(abs(r - 31) < 30 and abs(g - 119) < 30 and abs(b - 180) < 30 for r, g, b in img.getdata())


def test_oracle_arms_rescore_the_shared_chains_with_the_truth_and_pass_the_audit(setup, tiny_model_dir, tmp_path):
    """dpo-oracle and sl-oracle (diagnostic ceilings) beside DPO on one threshold: the same chains, pairs by the truth;
    each round's premise in loop.json, study.json and study.md; the arms merged into the summary; the audit passes."""
    import pyarrow.parquet as pq

    from attrpipe.audit import audit, format_report
    from attrpipe.pseudolabel.units import read_labels
    from attrpipe.study import run_study

    summary = tmp_path / "summary.json"
    cfg = _cfg(setup, tiny_model_dir, "study.thresholds=[0.1]", "study.methods=[dpo,dpo-oracle,sl-oracle]",
               "study.name=oracle", f"study.summary={summary}", "eval.pool_greedy=true")
    st = run_study(cfg, "threshold", verbose=False, command=["attrpipe", "study", "threshold", "test"])
    d = setup / "runs" / "s" / "study-threshold-oracle"
    truth = read_labels(str(setup / "cat" / "truth" / "unlabeled.parquet"))
    loops = {m: json.loads((d / "seed-0" / f"{m}-C-0.1" / "loop.json").read_text())
             for m in ("dpo", "dpo-oracle", "sl-oracle")}
    for m, lp in loops.items():
        assert lp["method"] == m and "skipped" not in lp["finished"]["round-1/train"], m
        pl = lp["finished"]["round-1/pseudolabel"]
        assert pl["counts"]["chains_reused"] == pl["counts"]["chains"] > 0  # the shared chains, not sampled again
        assert ("oracle_truth" in pl) == m.endswith("oracle")
    # the premise is the chains' (the method's consensus), the same in every arm; the oracle keeps by the truth
    premises = [lp["finished"]["round-1/pseudolabel"]["premise"] for lp in loops.values()]
    assert premises[0] == premises[1] == premises[2] and premises[0]["examples"] > 0
    assert premises[0]["per_attribute"] and premises[0]["sampler"]["stage"] == "sft/eval"
    # eval.pool_greedy: the seed SFT decoded the pool greedily once for the seed, and every arm's premise reads it
    greedy_dir = setup / "runs" / "s" / "shared" / "seed-0" / "pool-greedy-all"
    assert json.loads((greedy_dir / "manifest.json").read_text())["greedy"]
    assert premises[0]["greedy_examples"] == premises[0]["examples"] and premises[0]["greedy"] is not None
    assert not any((d / "seed-0" / f"{m}-C-0.1" / "round-1" / "pool-greedy").exists() for m in loops)
    oracle_pairs = pq.read_table(d / "seed-0" / "dpo-oracle-C-0.1" / "round-1" / "pseudolabels" / "pairs").to_pylist()
    assert oracle_pairs
    for p in oracle_pairs:
        t = truth[p["listing_id"]][p["attribute"]]
        assert p["consensus"] == t and f"<answer> {t} </answer>" in p["chosen"] and f"> {t} <" not in p["rejected"]
    rows = {m["arm"]: m for m in st["arms"]}
    assert rows["dpo-oracle-C-0.1"]["premise"] == premises[0]
    assert "diagnostic ceiling" in st["table"] and "## The premise per attribute" in (d / "study.md").read_text()
    s = json.loads(summary.read_text())
    entry = s["studies"]["s/study-threshold-oracle"]
    assert entry["arms"]["sl-oracle-C-0.1"]["diagnostic"] and not entry["arms"]["dpo-C-0.1"]["diagnostic"]
    assert entry["commands"][0]["argv"] == "attrpipe study threshold test"
    assert entry["arms"]["dpo-C-0.1"]["premise"]["single_chain"]["mean"] == pytest.approx(
        100 * premises[0]["single_chain"])
    rep = audit(str(d))  # the oracle arms' pairs are re-derived against the truth file
    assert rep.ok, format_report(rep)
    tampered = tmp_path / "pseudolabels"  # the same output read as the method's: its pairs break the consensus rule
    shutil.copytree(d / "seed-0" / "dpo-oracle-C-0.1" / "round-1" / "pseudolabels", tampered)
    run = json.loads((tampered / "_run.json").read_text())
    del run["key"]["oracle_truth"]
    (tampered / "_run.json").write_text(json.dumps(run))
    assert audit(str(tampered)).checks["consensus and pairs follow the rules"]
