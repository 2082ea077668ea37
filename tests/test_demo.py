"""The demo (conf/demo.yaml, `make demo`): the method on the shipped small model, and a terminal a newcomer can read."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from attrpipe.config import load_config


def test_the_demo_runs_the_shipped_model_on_a_catalog_it_renders():
    from attrpipe.preflight import check_model

    cfg = load_config("conf/demo.yaml")
    assert cfg.model.path == "models/miniature" and not cfg.model.build_tiny
    check_model(cfg)  # the shipped model is there and its sha256 matches its card
    assert cfg.loop.method == "dpo" and cfg.loop.rounds >= 1 and cfg.generation.num_chains == 7
    assert cfg.data.truth  # the catalog's true labels: each round's consensus is measured against them


@pytest.mark.slow
def test_a_small_demo_prints_a_short_readable_transcript_and_logs_the_rest(tmp_path):
    """The demo on two verticals and a few listings: every stage leaves one or two lines, the table ends it, and
    everything the libraries print is in the run's log file, not on the terminal."""
    cmd = [sys.executable, "-m", "attrpipe.cli", "demo", "conf/demo.yaml", f"data.root={tmp_path / 'cat'}",
           f"run.output_dir={tmp_path / 'runs'}", "taxonomy.verticals=[watch,suitcase]", "synthetic.listings=8",
           "synthetic.test_per_vertical=2", "sft.max_steps=6", "dpo.max_steps=4"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert len(lines) <= 40, r.stdout
    assert r.stderr == "", r.stderr[-3000:]
    assert not any(re.search(r"warn|traceback|\(RayTrainWorker|\bINFO\b", ln, re.I) for ln in lines), r.stdout
    # nothing printed twice: each line with the one before it (the seed SFT's evaluation and round 1's do the same
    # work, so their progress lines can be identical to the second; each follows its own stage's header)
    in_place = list(zip(["(start)", *lines], lines))
    assert len(in_place) == len(set(in_place)) and all(a != b for a, b in in_place), "a line printed twice: " + r.stdout
    run = tmp_path / "runs" / "demo"
    table = [ln for ln in lines if ln.startswith("round-1 ")]
    assert len(table) == 1 and re.search(r"[+-]\d+\.\d", table[0]), r.stdout  # its accuracy and lift
    pl = next(ln for ln in lines if ln.startswith("[loop] round-1/pseudolabel:"))
    assert int(re.search(r"(\d+) pairs", pl).group(1)) > 0 and "kept consensus" in pl, pl
    assert lines[-2] == f"report: {run / 'report' / 'index.html'}" and Path(lines[-2][8:]).is_file()
    log = Path(lines[-1].removeprefix("log: "))
    assert log.is_file() and log.parent == run
    text = log.read_text()
    assert "RayTrainWorker" in text and "execution finished" in text  # the trainers' and Ray Data's output
    # tracked in the default local store, <run.output_dir>/mlflow.db, with nothing set up: the loop run, each stage
    # once under it, the accuracy by round, and the report as an artifact
    import json

    from mlflow import MlflowClient

    state = json.loads((run / "tracking.json").read_text())
    assert state["uri"] == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}" and state["finished"]
    client = MlflowClient(state["uri"])
    exp = client.get_experiment_by_name("demo")
    runs = client.search_runs([exp.experiment_id])
    manifest = json.loads((run / "loop.json").read_text())
    assert len(runs) == 1 + len(manifest["stages"])
    stages = sorted(r.data.tags["attrpipe.stage"] for r in runs if r.info.run_id != state["run_id"])
    assert stages == sorted(manifest["stages"])
    rounds = sum(1 for s in manifest["stages"] if s.endswith("/eval"))  # the seed SFT's and each round's
    assert sorted(m.step for m in client.get_metric_history(state["run_id"], "accuracy")) == list(range(rounds))
    assert "report/index.html" in {a.path for a in client.list_artifacts(state["run_id"], "report")}
