"""Experiment tracking in MLflow (attrpipe.tracking): the pure rules (where, what, under which names), a loop through
fakes into the default local store (no Ray), a dead server that costs one warning line, and end to end: a real
`mlflow server` on 127.0.0.1, a loop on conf/tiny_cpu.yaml killed in round 2 and resumed, the server stopped in the
middle of the rerun and started again, and MLflow's own UI rendering the loop's run page in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from attrpipe.tracking.settings import (flatten, loop_metrics, new_steps, resolve, run_link, stage_metrics,
                                        stage_tags)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

ON = {"enabled": True, "uri": None, "experiment": None, "timeout_s": 10, "retries": 2, "adapter_max_mb": 50,
      "ui_url": None}


# --- the pure rules -------------------------------------------------------------------------------------------------


def test_the_uri_is_the_key_then_the_environment_then_a_local_store(tmp_path):
    env = {"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000"}
    s, why = resolve({**ON, "uri": "http://explicit:5000"}, run_name="r", output_dir=str(tmp_path), environ=env)
    assert (s.uri, s.ui_url, s.artifact_location, why) == ("http://explicit:5000", "http://explicit:5000", None, None)
    s, _ = resolve(ON, run_name="r", output_dir=str(tmp_path), environ=env)
    assert s.uri == "http://mlflow.internal:5000" and s.experiment == "r"
    s, _ = resolve({**ON, "experiment": "lever"}, run_name="r", output_dir=str(tmp_path / "runs"), environ={})
    assert s.uri == f"sqlite:///{tmp_path}/runs/mlflow.db" and s.uri.startswith("sqlite:////")
    assert s.artifact_location == f"{tmp_path}/runs/mlartifacts" and s.experiment == "lever"
    assert s.ui_url == "http://127.0.0.1:5000"  # what `mlflow ui` serves
    assert resolve({**ON, "enabled": False}, run_name="r", output_dir=str(tmp_path), environ=env) == (None, None)
    s, why = resolve(ON, run_name="r", output_dir="s3://bucket/runs", environ={})
    assert s is None and "tracking.uri" in why  # no local place for a store: off, said why
    s, _ = resolve(ON, run_name="r", output_dir="s3://bucket/runs", environ=env)
    assert s.uri == env["MLFLOW_TRACKING_URI"]
    s, _ = resolve({**ON, "uri": "sqlite:///rel/m.db"}, run_name="r", output_dir=str(tmp_path), environ={})
    assert s.uri == f"sqlite:///{Path.cwd() / 'rel' / 'm.db'}"  # one database for every process, wherever it starts
    assert s.to_dict() == type(s).from_dict(s.to_dict()).to_dict()


def test_the_configuration_becomes_flat_parameters():
    p = flatten({"dpo": {"beta": 0.2, "reference": "sft_adapter"}, "study": {"seeds": [0, 1]}, "data": {"truth": None},
                 "x": {}, "long": "a" * 7000})
    assert p == {"dpo.beta": "0.2", "dpo.reference": "sft_adapter", "study.seeds": "[0, 1]", "data.truth": "null",
                 "x": "{}", "long": "a" * 6000}


def test_each_stage_kind_gives_its_metrics():
    ev = {"accuracy": 0.5, "parse_failure_rate": 0.1, "scored": 40, "seconds": 3.0,
          "per_vertical": {"watch": 0.25, "kurta (men)": 0.75}, "vote": {"accuracy": 0.55, "parse_failure_rate": 0.0},
          "fit": {"accuracy": 0.9}}
    full = {"per_attribute": {"watch.dial_color": {"accuracy": 0.4, "n": 10}}}
    m = stage_metrics("eval", ev, sft_accuracy=0.4, full_eval=full)
    assert m == {"seconds": 3.0, "accuracy": 0.5, "parse_failure_rate": 0.1, "scored": 40.0,
                 "accuracy/vertical/watch": 0.25, "accuracy/vertical/kurta _men_": 0.75,
                 "accuracy/attribute/watch.dial_color": 0.4, "vote_accuracy": 0.55, "vote_parse_failure_rate": 0.0,
                 "fit_accuracy": 0.9, "lift": pytest.approx(0.1)}
    assert "lift" not in stage_metrics("eval", ev)  # the seed SFT's own evaluation has no lift
    pl = {"seconds": 10.0, "counts": {"listing_attributes": 30, "kept": 20, "pairs": 12, "chains": 210,
                                      "chains_reused": 70, "chains_unparsed": 5, "quarantine_reasons": {}},
          "premise": {"single_chain": 0.4, "consensus_kept": 0.6, "gain": 0.2, "examples": 30}}
    m = stage_metrics("pseudolabel", pl)
    assert m["chains_per_s"] == 14.0  # the 140 chains sampled, not the 70 reused
    assert {k: m[k] for k in ("kept", "pairs", "chains_unparsed", "premise/gain")} == \
        {"kept": 20, "pairs": 12, "chains_unparsed": 5, "premise/gain": 0.2}
    assert "premise/examples" not in m and "quarantine_reasons" not in m
    assert stage_metrics("dpo", {"final_step": 60, "seconds": 5, "adapter": "/a"}) == {"final_step": 60, "seconds": 5}
    assert loop_metrics("round-2/eval", ev, sft_accuracy=0.4) == \
        ({"accuracy": 0.5, "vote_accuracy": 0.55, "lift": pytest.approx(0.1)}, 2)
    assert loop_metrics("sft/eval", ev, sft_accuracy=None) == \
        ({"accuracy": 0.5, "vote_accuracy": 0.55, "fit_accuracy": 0.9}, 0)
    assert loop_metrics("round-1/train", {}, sft_accuracy=0.4) is None
    tags = stage_tags("round-1/train", "dpo", 1, {"attrpipe.kind": "loop", "attrpipe.method": "dpo"})
    assert tags == {"attrpipe.kind": "stage", "attrpipe.method": "dpo", "attrpipe.stage": "round-1/train",
                    "attrpipe.stage_kind": "dpo", "attrpipe.round": "1"}
    assert run_link("http://h:5000/", "3", "abc") == "http://h:5000/#/experiments/3/runs/abc"


def test_only_training_steps_after_the_last_logged_are_logged_again():
    entries = [{"step": 1, "loss": 0.7, "rewards/margins": 0.0, "epoch": 0.5}, {"step": 2, "loss": 0.6, "x": "text"},
               {"loss": 0.1}, {"step": 3, "loss": float("nan"), "learning_rate": 1e-5}]
    assert new_steps(entries, None) == [(1, {"loss": 0.7, "rewards/margins": 0.0, "epoch": 0.5}), (2, {"loss": 0.6}),
                                        (3, {"learning_rate": 1e-5})]
    assert new_steps(entries, 2) == [(3, {"learning_rate": 1e-5})]


# --- a loop through fakes (no Ray) into the default local store --------------------------------------------------


def _histories(client, run_id: str) -> dict[str, list[int]]:
    run = client.get_run(run_id)
    return {k: [m.step for m in client.get_metric_history(run_id, k)] for k in run.data.metrics}


def _no_step_twice(client, run_ids) -> None:
    for rid in run_ids:
        for key, steps in _histories(client, rid).items():
            assert len(steps) == len(set(steps)), f"{key} of run {rid} logged twice at a step: {steps}"


def _runs(client, exp_name: str) -> list:
    exp = client.get_experiment_by_name(exp_name)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


@pytest.fixture
def fresh_tracking():
    from attrpipe.tracking import client

    client._reset_for_tests()
    yield
    client._reset_for_tests()


def test_a_loop_logs_each_stage_once_into_the_local_store_and_a_rerun_continues_its_runs(tmp_path, monkeypatch,
                                                                                          fresh_tracking):
    from mlflow import MlflowClient
    from test_loop_pure import _fake_stage_commands

    from attrpipe.config import load_config
    from attrpipe.loop import run_loop

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _fake_stage_commands(monkeypatch, {1: {"kept": 3, "pairs": 2, "chains": 21}, 2: {"kept": 1, "pairs": 1}})
    cfg = load_config("conf/tiny_cpu.yaml", [f"run.output_dir={tmp_path}", "run.name=a", "loop.rounds=2",
                                             "data.truth=null"])
    run_loop(cfg, verbose=False, _stop_after="round-1/train")
    state = json.loads((tmp_path / "a" / "tracking.json").read_text())
    assert state["uri"] == f"sqlite:///{tmp_path}/mlflow.db" and not state["finished"]
    assert set(state["stages"]) == {"sft", "sft/eval", "round-1/pseudolabel", "round-1/train"}
    manifest = run_loop(cfg, verbose=False)
    after = json.loads((tmp_path / "a" / "tracking.json").read_text())
    assert after["run_id"] == state["run_id"] and after["finished"]
    assert all(after["stages"][k]["run_id"] == v["run_id"] for k, v in state["stages"].items())  # the same runs
    run_loop(cfg, verbose=False)  # a finished run, rerun: nothing new
    # rerun with the vote measured (eval.vote): the evaluations gain it in MLflow too, and nothing else is logged
    from omegaconf import OmegaConf

    run_loop(OmegaConf.merge(cfg, {"eval": {"vote": True}}), verbose=False)

    client = MlflowClient(state["uri"])
    runs = _runs(client, "a")
    loop = [r for r in runs if r.data.tags.get("attrpipe.kind") == "loop"]
    stages = [r for r in runs if r.data.tags.get("attrpipe.kind") == "stage"]
    assert len(loop) == 1 and loop[0].info.run_id == state["run_id"] and loop[0].info.status == "FINISHED"
    assert sorted(r.data.tags["attrpipe.stage"] for r in stages) == sorted(manifest["stages"])  # each once
    assert all(r.data.tags["mlflow.parentRunId"] == state["run_id"] for r in stages)
    assert all(r.info.status == "FINISHED" for r in stages)
    by = {r.data.tags["attrpipe.stage"]: r for r in stages}
    assert by["round-2/eval"].data.metrics["accuracy"] == manifest["finished"]["round-2/eval"]["accuracy"]
    assert by["round-2/eval"].data.metrics["lift"] == pytest.approx(
        manifest["finished"]["round-2/eval"]["accuracy"] - manifest["finished"]["sft/eval"]["accuracy"])
    assert by["round-1/pseudolabel"].data.metrics["pairs"] == 2
    assert by["round-1/train"].data.params["stage.start"] == "sft/adapter"
    assert [a.path for a in client.list_artifacts(by["sft"].info.run_id, "adapter")] == \
        ["adapter/adapter_model.safetensors"]  # a small adapter is an artifact of its stage
    assert loop[0].data.params["loop.method"] == "dpo" and loop[0].data.params["dpo.beta"] == str(cfg.dpo.beta)
    assert loop[0].data.params["attrpipe.config_hash"] == manifest["config_hash"]
    assert loop[0].data.tags["attrpipe.method"] == "dpo" and loop[0].data.tags["attrpipe.rounds"] == "2"
    assert _histories(client, state["run_id"])["accuracy"] == [0, 1, 2]  # accuracy by round
    assert _histories(client, state["run_id"])["vote_accuracy"] == [0, 1, 2]  # measured by the last rerun
    assert by["round-1/eval"].data.metrics["vote_accuracy"] == 0.75
    assert {a.path for a in client.list_artifacts(state["run_id"])} >= {"loop.json", "config.yaml"}
    _no_step_twice(client, [r.info.run_id for r in runs])
    assert (tmp_path / "mlartifacts").is_dir()  # the store's artifacts beside it, not in the working directory

    off = load_config("conf/tiny_cpu.yaml", [f"run.output_dir={tmp_path / 'off'}", "run.name=a", "loop.rounds=1",
                                             "data.truth=null", "tracking.enabled=false"])
    run_loop(off, verbose=False)
    assert not (tmp_path / "off" / "a" / "tracking.json").exists() and not (tmp_path / "off" / "mlflow.db").exists()


def test_a_stage_whose_logging_failed_midway_logs_only_what_mlflow_lacks_on_the_rerun(tmp_path, monkeypatch,
                                                                                     fresh_tracking):
    """The server goes down after a stage's metrics reached it and before the stage was marked logged: the rerun
    logs its artifacts and ending, and no metric a second time."""
    from mlflow import MlflowClient

    from attrpipe.tracking import client as tc
    from attrpipe.tracking.client import Tracker

    settings, _ = resolve(ON, run_name="r", output_dir=str(tmp_path), environ={})
    t = Tracker.open(settings, str(tmp_path / "run"), name="r", tags={"attrpipe.kind": "loop"})
    t.stage_run("round-1/eval", tags={"attrpipe.kind": "stage"})
    calls = {"n": 0}
    real = t.client.set_terminated

    def dies_once(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("the server went away")
        return real(*a, **k)

    monkeypatch.setattr(t.client, "set_terminated", dies_once)
    t.finish_stage("round-1/eval", metrics={"accuracy": 0.5, "scored": 8}, own=({"accuracy": 0.5}, 1))
    assert tc.tracking_off() and not t.stage_logged("round-1/eval")
    tc._reset_for_tests()  # the next command
    t2 = Tracker.open(settings, str(tmp_path / "run"), name="r", tags={})
    assert t2.run_id == t.run_id
    t2.finish_stage("round-1/eval", metrics={"accuracy": 0.5, "scored": 8}, own=({"accuracy": 0.5}, 1))
    assert t2.stage_logged("round-1/eval")
    c = MlflowClient(settings.uri)
    stage = t2.stage_run_id("round-1/eval")
    assert [m.step for m in c.get_metric_history(stage, "accuracy")] == [0]
    assert [m.step for m in c.get_metric_history(stage, "scored")] == [0]
    assert [m.step for m in c.get_metric_history(t2.run_id, "accuracy")] == [1]
    assert c.get_run(stage).info.status == "FINISHED"


class _State:
    def __init__(self, step: int):
        self.global_step, self.is_world_process_zero = step, True


def test_the_trainers_callback_logs_each_step_once_after_what_the_run_holds(tmp_path, fresh_tracking):
    """Rank 0's callback on a resumed stage: steps the run holds are not logged again, the trainer's closing summary
    does not repeat ``epoch``; against a dead server it goes quiet and training goes on."""
    import torch
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from attrpipe.tracking.callback import trainer_callback, worker_tracking

    settings, _ = resolve(ON, run_name="r", output_dir=str(tmp_path), environ={})
    client = MlflowClient(settings.uri)
    exp = client.create_experiment("r", artifact_location=settings.artifact_location)
    run_id = client.create_run(exp).info.run_id
    client.log_batch(run_id, metrics=[Metric("loss", 0.7, 0, 1), Metric("loss", 0.6, 0, 2)])  # before the kill
    cb = trainer_callback(worker_tracking(settings, run_id))
    for step in (1, 2, 3, 4):  # the resumed run replays step 2 (from checkpoint 1), then 3 and 4
        cb.on_log(None, _State(step), None, logs={"loss": torch.tensor(0.5), "epoch": step / 4, "note": "x"})
    cb.on_log(None, _State(4), None, logs={"train_runtime": 3.0, "epoch": 1.0})
    steps = lambda k: [m.step for m in client.get_metric_history(run_id, k)]  # noqa: E731
    assert steps("loss") == [1, 2, 3, 4] and steps("epoch") == [3, 4] and steps("train_runtime") == [4]
    assert "note" not in client.get_run(run_id).data.metrics
    dead, _ = resolve({**ON, "uri": f"http://127.0.0.1:{_free_port()}", "retries": 0, "timeout_s": 1},
                      run_name="r", output_dir=str(tmp_path), environ={})
    quiet = trainer_callback(worker_tracking(dead, run_id))
    quiet.on_log(None, _State(5), None, logs={"loss": 0.4})
    quiet.on_log(None, _State(6), None, logs={"loss": 0.3})
    assert quiet.off
    assert trainer_callback(None) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down_costs_one_warning_line_and_the_loop_finishes(tmp_path, monkeypatch, capsys,
                                                                           fresh_tracking):
    from test_loop_pure import _fake_stage_commands

    from attrpipe.config import load_config
    from attrpipe.loop import run_loop

    _fake_stage_commands(monkeypatch, {1: {"kept": 3, "pairs": 2}})
    cfg = load_config("conf/tiny_cpu.yaml", [f"run.output_dir={tmp_path}", "run.name=a", "loop.rounds=1",
                                             "data.truth=null", f"tracking.uri=http://127.0.0.1:{_free_port()}",
                                             "tracking.retries=1", "tracking.timeout_s=2"])
    t0 = time.monotonic()
    manifest = run_loop(cfg, verbose=False)  # the warning is said whatever the verbosity
    took = time.monotonic() - t0
    assert set(manifest["finished"]) == set(manifest["stages"])
    warnings = [ln for ln in capsys.readouterr().out.splitlines() if "warning" in ln.lower()]
    assert len(warnings) == 1 and "MLflow tracking at http://127.0.0.1" in warnings[0], warnings
    assert "the run goes on" in warnings[0]
    assert took < 60, f"a dead server stalled the loop for {took:.0f}s"
    assert not (tmp_path / "a" / "tracking.json").exists()  # nothing to continue: a rerun creates the run


# --- end to end: a real server, a loop killed and resumed, the server stopped and back, the UI --------------------


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite store and proxied artifacts under ``root``."""

    def __init__(self, root: Path, port: int | None = None):
        self.root, self.port = root, port or _free_port()
        self.proc = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MlflowServer":
        mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        self.log = open(self.root / f"server-{time.time():.0f}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen([mlflow, "server", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
                                      "--artifacts-destination", str(self.root / "artifacts")],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / self.log.name).read_text()[-2000:]}")
            time.sleep(0.5)
        raise RuntimeError("mlflow server did not answer /health in 180 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def _loop_cmd(cat: Path, model: str, out: Path, uri: str) -> list[str]:
    return [sys.executable, "-m", "attrpipe.cli", "loop", "conf/tiny_cpu.yaml",
            f"data.root={cat}", f"model.path={model}", "model.build_tiny=false",
            "taxonomy.verticals=[suitcase,watch]", "generation.engine=fakes:ScriptedEngine",
            "loop.rounds=2", "sft.max_steps=2", "sft.save_steps=1", "dpo.max_steps=3", "dpo.save_steps=1",
            "pseudolabel.listings_per_unit=2", f"run.output_dir={out}", "run.name=e2e",
            f"tracking.uri={uri}", "tracking.retries=1", "tracking.timeout_s=5"]


def _wait_for(cond, proc, what: str, timeout: float = 900) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(f"the loop exited ({proc.returncode}) before {what}")
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def _finished(loop_json: Path) -> set:
    try:
        return set(json.loads(loop_json.read_text())["finished"])
    except (OSError, ValueError):
        return set()


@pytest.mark.slow
def test_a_loop_on_a_tracking_server_killed_resumed_and_the_server_stopped_mid_run(tmp_path, tiny_model_dir):
    """One loop on conf/tiny_cpu.yaml logging to `mlflow server`: killed in round 2's training (the audit names the
    unfinished stages), rerun from where it stopped; during the rerun the server is stopped (the run finishes with one
    warning line, every stage done, the adapters trained, and its audit passes); with the server back a
    third run logs what was missed. Then MLflow holds one loop run with one nested run per stage, the same ids
    throughout, the configuration, a DPO metric at every step, the round's accuracy, the artifacts, and no metric
    twice at a step; MLflow's UI, rendered in headless Chromium, shows the loop run's accuracy."""
    from mlflow import MlflowClient

    from attrpipe.audit import audit, format_report
    from attrpipe.cli import main
    from attrpipe.loop import plan_stages
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    cat = tmp_path / "cat"
    write_synthetic_catalog(cat, taxonomy=load_taxonomy("conf/taxonomy", ["suitcase", "watch"]), listings=6, seed=0,
                            seed_per_vertical=2, test_per_vertical=2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    (tmp_path / "mlflow").mkdir()
    server = MlflowServer(tmp_path / "mlflow").start()
    out = tmp_path / "runs"
    run, loop_json = out / "e2e", out / "e2e" / "loop.json"
    cmd = _loop_cmd(cat, tiny_model_dir, out, server.uri)
    try:
        # 1. killed in round 2's training
        with (tmp_path / "killed.err").open("w") as err:
            proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err)
        progress = run / "round-2" / "_progress.json"
        _wait_for(lambda: progress.exists() and json.loads(progress.read_text() or "{}").get("step", 0) >= 1, proc,
                  "round 2's first training step")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        before = json.loads((run / "tracking.json").read_text())
        assert "round-2/train" in before["stages"] and "round-2/train" not in _finished(loop_json)
        cut = audit(str(run))  # the audit names what the kill left unfinished
        unfinished = cut.checks["every planned stage finished"]
        assert not cut.ok and any("round-2/eval did not finish" in p for p in unfinished), unfinished

        # 2. rerun; the server stops once round 2's training is recorded
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: "round-2/train" in _finished(loop_json), proc, "round 2's training")
        server.stop()
        stdout, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, stderr[-3000:]
        warnings = [ln for ln in stdout.splitlines() if "warning" in ln.lower()]
        assert len(warnings) == 1 and f"MLflow tracking at {server.uri}" in warnings[0], stdout
        assert "round-1/pseudolabel: done earlier, skipped" in stdout
        assert "accuracy" in stdout and "round-2" in stdout  # the per-round table
        manifest = json.loads(loop_json.read_text())
        assert manifest["stages"] == [s.name for s in plan_stages(rounds=2, method="dpo", seed_sft=True)]
        assert set(manifest["finished"]) == set(manifest["stages"])
        assert manifest["finished"]["round-1/pseudolabel"]["counts"]["pairs"] > 0
        assert "skipped" not in manifest["finished"]["round-1/train"]
        for rel in ("sft/adapter/adapter_model.safetensors", "round-1/adapter/adapter_config.json",
                    "round-2/adapter/adapter_model.safetensors", "round-2/pseudolabels/pairs", "config.yaml"):
            assert (run / rel).exists(), rel
        # the adapters really were trained: DPO moved the SFT adapter
        assert (run / "round-1/adapter/adapter_model.safetensors").read_bytes() != \
            (run / "sft/adapter/adapter_model.safetensors").read_bytes()
        rep = audit(str(run))  # every catalog row of every pseudo-labeling and evaluation, every adapter
        assert rep.ok and rep.facts["input_rows"] > 0, format_report(rep)
        assert main(["audit", str(run)]) == 0
        mid = json.loads((run / "tracking.json").read_text())
        assert mid["run_id"] == before["run_id"] and not mid["finished"]

        # 3. the server back: a rerun logs what was missed, and nothing twice
        server.start()
        r3 = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert r3.returncode == 0 and "warning" not in r3.stdout.lower(), r3.stdout + r3.stderr[-2000:]
        after = json.loads((run / "tracking.json").read_text())
        assert after["run_id"] == before["run_id"] and after["finished"]
        assert all(after["stages"][k]["run_id"] == v["run_id"] for k, v in before["stages"].items())
        assert all(s["logged"] for s in after["stages"].values())

        client = MlflowClient(server.uri)
        manifest = json.loads(loop_json.read_text())
        runs = _runs(client, "e2e")
        loop = [r for r in runs if r.data.tags.get("attrpipe.kind") == "loop"]
        stages = {r.data.tags["attrpipe.stage"]: r for r in runs if r.data.tags.get("attrpipe.kind") == "stage"}
        assert len(loop) == 1 and loop[0].info.run_id == before["run_id"] and loop[0].info.status == "FINISHED"
        assert len(runs) == 1 + len(manifest["stages"]) and sorted(stages) == sorted(manifest["stages"])
        assert all(r.data.tags["mlflow.parentRunId"] == before["run_id"] for r in stages.values())
        assert loop[0].data.params["loop.rounds"] == "2" and loop[0].data.params["dpo.max_steps"] == "3"
        train = stages["round-1/train"].info.run_id
        assert [m.step for m in client.get_metric_history(train, "rewards/margins")] == [1, 2, 3]
        # round 2's training: steps before the kill came live, the resumed ones once each (live or caught up)
        assert sorted(m.step for m in client.get_metric_history(stages["round-2/train"].info.run_id, "loss")) == \
            [1, 2, 3]
        for rnd in ("round-1", "round-2"):
            assert stages[f"{rnd}/eval"].data.metrics["accuracy"] == manifest["finished"][f"{rnd}/eval"]["accuracy"]
        assert sorted(m.step for m in client.get_metric_history(before["run_id"], "accuracy")) == [0, 1, 2]
        assert "metrics.json" in {a.path for a in client.list_artifacts(stages["round-2/eval"].info.run_id)}
        assert {a.path for a in client.list_artifacts(train)} >= {"adapter", "metrics.jsonl", "train_result.json"}
        assert {a.path for a in client.list_artifacts(before["run_id"])} >= {"loop.json", "config.yaml"}
        _no_step_twice(client, [r.info.run_id for r in runs])

        # 4. MLflow's UI: the loop run's page, rendered
        _ui_shows_the_run(server, after, manifest, tmp_path)
    finally:
        server.stop()


def _ui_shows_the_run(server: MlflowServer, state: dict, manifest: dict, tmp_path: Path) -> None:
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("headless Chromium is missing: `make setup-browser` (run by `make test`) installs it",
                    pytrace=False)
    url = f"{server.uri}/#/experiments/{state['experiment_id']}/runs/{state['run_id']}"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'prof'}",
             "--virtual-time-budget=30000", "--window-size=1400,1800"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    # the run page, once MLflow's JavaScript has fetched it: the run's name, its stages as child runs, its metrics
    # table with the accuracy of the last round
    last = manifest["finished"]["round-2/eval"]["accuracy"]
    assert "e2e" in dom and "round-2/train" in dom and "accuracy" in dom, dom[-3000:]
    assert f">{last:g}<" in dom or f">{round(last, 4):g}<" in dom, f"accuracy {last} not on the page"
    shot = tmp_path / "mlflow-ui.png"
    subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, timeout=180, check=True)
    img = Image.open(shot).convert("RGB")
    assert img.size == (1400, 1800)
    assert len(set(img.getdata())) > 50, "the UI did not render (a blank page)"
