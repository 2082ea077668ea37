"""The loop end to end on a local Ray: seed SFT + 2 rounds of DPO + evaluation, killed in round 2 and resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from attrpipe.audit import audit, format_report
from attrpipe.cli import main
from attrpipe.loop import STAGE_RUNNERS, plan_stages
from attrpipe.methods import METHODS

TESTS = Path(__file__).resolve().parent


def test_plan_stages_layout():
    names = [s.name for s in plan_stages(rounds=2, method="dpo", seed_sft=True)]
    assert names == ["sft", "sft/eval", "round-1/pseudolabel", "round-1/train", "round-1/eval",
                     "round-2/pseudolabel", "round-2/train", "round-2/eval"]
    st = {s.name: s for s in plan_stages(rounds=2, method="sl", seed_sft=False)}
    assert st["round-1/pseudolabel"].adapter_in is None and st["round-1/train"].kind == "sl"
    assert st["round-2/train"].adapter_in == "round-1/adapter" and st["round-2/train"].out == "round-2"
    shared = plan_stages(rounds=1, method="dpo", seed_sft=True, shared_sft=True)  # a study arm's copied seed SFT
    assert [(s.name, s.kind) for s in shared[:2]] == [("sft", "shared-sft"), ("sft/eval", "shared-eval")]
    kinds = {s.kind for m in METHODS for seed in (True, False)
             for sh in (True, False) for s in plan_stages(rounds=2, method=m, seed_sft=seed, shared_sft=sh)}
    assert kinds == set(STAGE_RUNNERS)  # every kind planned has the function that runs it, and no function is idle


def _loop_cmd(cat: Path, model: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "attrpipe.cli", "loop", "conf/tiny_cpu.yaml",
            f"data.root={cat}", f"model.path={model}", "model.build_tiny=false",
            "taxonomy.verticals=[suitcase,watch]", "generation.engine=fakes:ScriptedEngine",
            "loop.rounds=2", "sft.max_steps=2", "sft.save_steps=1", "dpo.max_steps=2", "dpo.save_steps=1",
            "pseudolabel.listings_per_unit=2", f"run.output_dir={out}", "run.name=e2e"]


def _rows(d: Path):
    keep = lambda r: {k: v for k, v in r.items() if k not in ("adapter", "adapter_fingerprint")}  # noqa: E731
    return sorted((keep(r) for r in pq.read_table(d).to_pylist()), key=lambda r: r["example_id"])


@pytest.mark.slow
def test_loop_end_to_end_killed_in_round_2_and_resumed(tmp_path, tiny_model_dir):
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    cat = tmp_path / "cat"
    write_synthetic_catalog(cat, taxonomy=load_taxonomy("conf/taxonomy", ["suitcase", "watch"]), listings=6, seed=0,
                            seed_per_vertical=2, test_per_vertical=2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    r = subprocess.run(_loop_cmd(cat, tiny_model_dir, clean), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    run = clean / "e2e"
    manifest = json.loads((run / "loop.json").read_text())
    assert set(manifest["finished"]) == set(manifest["stages"])
    assert manifest["stages"] == [s.name for s in plan_stages(rounds=2, method="dpo", seed_sft=True)]
    for rel in ("sft/adapter/adapter_model.safetensors", "round-1/adapter/adapter_config.json",
                "round-2/adapter/adapter_model.safetensors", "round-1/pseudolabels/manifest.json",
                "round-2/pseudolabels/pairs", "sft/eval/metrics.json", "round-2/eval/metrics.json", "config.yaml"):
        assert (run / rel).exists(), rel
    assert manifest["finished"]["round-1/pseudolabel"]["counts"]["pairs"] > 0
    assert "skipped" not in manifest["finished"]["round-1/train"]
    assert "accuracy" in r.stdout and "round-2" in r.stdout  # the per-round table
    # the adapters really were trained: DPO moved the SFT adapter
    assert (run / "round-1/adapter/adapter_model.safetensors").read_bytes() != \
        (run / "sft/adapter/adapter_model.safetensors").read_bytes()

    stderr = tmp_path / "killed.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(_loop_cmd(cat, tiny_model_dir, killed), env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err)
    loop_json = killed / "e2e" / "loop.json"
    deadline = time.time() + 900
    while time.time() < deadline:
        if loop_json.exists() and "round-2/pseudolabel" in json.loads(loop_json.read_text())["finished"]:
            break
        if proc.poll() is not None:  # it ended before round 2: say why, rather than wait out the deadline
            pytest.fail(f"the loop exited ({proc.returncode}) before round 2's pseudo-labels:\n"
                        + stderr.read_text()[-3000:])
        time.sleep(0.5)
    time.sleep(3)  # into round 2's training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = json.loads(loop_json.read_text())
    assert "round-2/pseudolabel" in interrupted["finished"] and "round-2/eval" not in interrupted["finished"]
    cut = audit(str(killed / "e2e"))  # the audit names what the kill left unfinished
    assert not cut.ok and any("round-2/eval did not finish" in p for p in cut.checks["every planned stage finished"])

    r2 = subprocess.run(_loop_cmd(cat, tiny_model_dir, killed), env=env, capture_output=True, text=True)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "round-1/pseudolabel: done earlier, skipped" in r2.stdout
    resumed = json.loads(loop_json.read_text())
    assert set(resumed["finished"]) == set(manifest["finished"])
    for rnd in ("round-1", "round-2"):
        for shard in ("consensus", "pairs"):
            assert _rows(killed / "e2e" / rnd / "pseudolabels" / shard) == _rows(run / rnd / "pseudolabels" / shard)
        assert resumed["finished"][f"{rnd}/pseudolabel"]["counts"] == manifest["finished"][f"{rnd}/pseudolabel"]["counts"]
        assert resumed["finished"][f"{rnd}/eval"]["accuracy"] == manifest["finished"][f"{rnd}/eval"]["accuracy"]
    assert (killed / "e2e" / "round-2/adapter/adapter_model.safetensors").exists()
    # both runs prove themselves: every catalog row of every pseudo-labeling and evaluation, every adapter
    for d in (run, killed / "e2e"):
        rep = audit(str(d))
        assert rep.ok, format_report(rep)
        assert rep.facts["input_rows"] > 0
    assert main(["audit", str(killed / "e2e")]) == 0
