"""The chaos harness (bench/chaos.py): its draw and its arithmetic without Ray, and a 3-trial run of the real thing.

The 3-trial run kills the engine actor, a training worker in the middle of a checkpoint write, and the driver (then
reruns the command), each in a 2-round loop, and passes only when no row was lost or doubled and every audit passed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import chaos  # noqa: E402


def test_the_draw_is_seeded_and_gives_every_kind_its_share():
    a, b = chaos.draw_trials(30, 0), chaos.draw_trials(30, 0)
    assert a == b and a != chaos.draw_trials(30, 1)
    counts = {k: sum(t.kind == k for t in a) for k in chaos.KINDS}
    assert counts == {k: 5 for k in chaos.KINDS}
    for t in a:
        assert t.stage in chaos.stages_for(t.kind) and 0 <= t.delay_frac < 1
        assert 1 <= t.step <= 3 and t.rank in (0, 1)
    assert set(chaos.stages_for("train")) == {"round-1/train", "round-2/train"}
    assert "round-2/train" not in chaos.stages_for("engine") and "round-1/eval" in chaos.stages_for("data")
    assert chaos.stages_for("driver") == chaos.KILL_STAGES and "sft" not in chaos.KILL_STAGES
    # a 1-round loop (CI's check): only round 1's stages are drawn
    assert chaos.stages_for("train", rounds=1) == ("round-1/train",)
    assert {t.stage for t in chaos.draw_trials(30, 0, rounds=1)} <= {"round-1/pseudolabel", "round-1/train",
                                                                     "round-1/eval"}
    only = chaos.draw_trials(4, 0, ("engine", "driver"))
    assert {t.kind for t in only} == {"engine", "driver"}


def test_rows_lost_and_doubled_are_counted_against_the_clean_run():
    assert chaos.row_diff(["a", "b", "c"], ["a", "b", "c"]) == {"lost": 0, "doubled": 0}
    assert chaos.row_diff(["a", "b", "c"], ["c", "b", "a"]) == {"lost": 0, "doubled": 0}  # order is free
    assert chaos.row_diff(["a", "b", "c"], ["a", "b"]) == {"lost": 1, "doubled": 0}
    assert chaos.row_diff(["a", "b"], ["a", "b", "b"]) == {"lost": 0, "doubled": 1}
    assert chaos.row_diff(["a", "b"], ["a", "x"]) == {"lost": 1, "doubled": 1}  # a changed row is both


def _rec(i, kind, stage, *, killed=True, wall=130.0, lost=0, doubled=0, audit_ok=True, attempts=1, adapters=True):
    return {"index": i, "kind": kind, "stage": stage, "killed": killed, "recovered": True, "attempts": attempts,
            "wall_s": wall, "clean_s": 100.0, "lost": lost, "doubled": doubled, "audit_ok": audit_ok,
            "rows_equal": not (lost or doubled), "adapters_equal": adapters, "eval_equal": True, "finished": True,
            "problems": []}


def test_the_table_sums_by_kind_and_by_stage():
    recs = [_rec(0, "engine", "sft/eval", wall=120), _rec(1, "engine", "round-1/pseudolabel", wall=140),
            _rec(2, "driver", "sft", attempts=2, wall=160, adapters=False), _rec(3, "data", "sft/eval", killed=False),
            _rec(4, "ray", "round-2/eval", lost=2, audit_ok=False)]
    by_kind = {r[0]: r for r in chaos.summarise(recs, "kind")}
    assert list(by_kind) == ["engine", "data", "driver", "ray", "all"]  # the kinds' own order, then the total
    eng = by_kind["engine"]
    assert eng[1:6] == (2, 2, 2, 0, 0) and eng[6] == pytest.approx(30.0) and eng[7] == pytest.approx(40.0)
    assert by_kind["data"][2:5] == (0, 0, 1) and math.isnan(by_kind["data"][6])  # missed: no time lost counted
    assert by_kind["driver"][5] == 1 and by_kind["driver"][12] == 0  # one rerun; its adapters differ
    total = by_kind["all"]
    assert total[1:5] == (5, 4, 4, 1) and total[8:11] == (2, 0, 4)
    by_stage = [r[0] for r in chaos.summarise(recs, "stage")]
    assert by_stage == ["sft", "sft/eval", "round-1/pseudolabel", "round-2/eval", "all"]
    assert [chaos.failed(r) for r in recs] == [False, False, False, False, True]
    assert len(chaos.COLUMNS) == len(total)


@pytest.mark.slow
def test_two_chaos_trials_lose_nothing(tmp_path):
    """`python bench/chaos.py --trials 2` with the engine and the driver killed: exit 0 (no row
    lost or doubled, every audit passed, every loop finished) and the table says so."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    out = tmp_path / "chaos"
    proc = subprocess.run([sys.executable, "bench/chaos.py", "--trials", "2", "--seed", "0",
                           "--kinds", "engine,driver", "--rounds", "1", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    recs = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["kind"] for r in recs) == ["driver", "engine"]
    for r in recs:
        assert r["finished"] and r["audit_ok"] and r["lost"] == 0 and r["doubled"] == 0, r
        assert r["rows_equal"] and r["eval_equal"], r
    assert next(r for r in recs if r["kind"] == "driver")["killed"], recs
    assert next(r for r in recs if r["kind"] == "driver")["attempts"] == 2
    total = next(line for line in proc.stdout.splitlines() if line.startswith("| all |"))
    cells = [c.strip() for c in total.strip("|").split("|")]
    assert cells[1] == "2" and cells[8:10] == ["0", "0"] and cells[10] == "2"
