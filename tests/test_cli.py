import json
import subprocess
import sys

import pytest

from attrpipe.cli import main


def test_help_lists_every_command_with_a_line(capsys):
    out = subprocess.run([sys.executable, "-m", "attrpipe.cli", "--help"], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    for cmd in ("config", "demo", "loop", "pseudolabel", "train", "evaluate", "predict", "study", "results", "report",
                "plan", "gpu-check", "synth", "model"):
        i = next(i for i, l in enumerate(lines) if l.strip().split()[:1] == [cmd])
        # the command and its one-line explanation (argparse puts it on the next line for long command names)
        explanation = lines[i].split(None, 1)[1] if len(lines[i].split(None, 1)) == 2 else lines[i + 1].strip()
        assert len(explanation) > 10, (cmd, explanation)


def test_config_prints_resolved_yaml_and_hash(capsys):
    assert main(["config", "conf/paper.yaml", "consensus.threshold=0.7"]) == 0
    out = capsys.readouterr().out
    assert "threshold: 0.7" in out and "# config hash:" in out


def test_config_error_is_one_line_and_exit_2(capsys):
    assert main(["config", "conf/tiny_cpu.yaml", "consensus.threshold=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "attrpipe: error: consensus.threshold: must be in [0, 1], got 2.0"


def test_synth_catalog_command(tmp_path, capsys):
    assert main(["synth", "catalog", "--out", str(tmp_path / "c"), "--listings", "4", "--seed", "3",
                 "--seed-per-vertical", "1", "--test-per-vertical", "1", "--verticals", "watch", "sari"]) == 0
    meta = json.loads((tmp_path / "c" / "catalog.json").read_text())
    assert meta["counts"]["unlabeled"]["listings"] == 4 and meta["args"]["seed"] == 3
    assert meta["args"]["seed_per_vertical"] == 1


def test_model_tiny_command(tmp_path, capsys):
    assert main(["model", "tiny", "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "config.json").exists() and (tmp_path / "m" / "model.safetensors").exists()


@pytest.mark.parametrize("job, command", [("loop", "loop"), ("pseudolabel", "pseudolabel"), ("train", "train"),
                                          ("evaluate", "evaluate"), ("study", "study"), ("predict", "predict"),
                                          ("report", "report")])
def test_each_ray_job_entrypoint_runs_its_command(job, command):
    out = subprocess.run([sys.executable, f"ray_jobs/{job}.py", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: attrpipe {command} ")
