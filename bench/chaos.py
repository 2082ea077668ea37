"""Chaos: kill a 2-round `attrpipe loop` at moments drawn from a seed, many times, and check that nothing was lost.

    python bench/chaos.py --trials 30 --seed 0 [--hog] [--rounds 1] [--out runs/chaos]

Each trial runs the same loop (conf/tiny_cpu.yaml: seed SFT, 2 rounds of pseudo-labeling, DPO and evaluation, on a
small synthetic catalog) and kills one thing in it, drawn from the seed: the engine actor, a Ray Data worker, a Ray
Train worker of any rank (at a random moment, or in the middle of writing a checkpoint), the driver (the command is
rerun, as a user would), or the whole local Ray (rerun too). With ``--hog`` two busy processes share the cores, so
timings shift as on a busy node. A trial passes when the loop ends finished, ``attrpipe audit`` passes, and against a
clean run of the same loop: every pseudo-labeling and evaluation output holds the same rows (none lost, none
doubled), and the adapters and accuracies are equal. It prints a table by kind and by stage; every trial's record
is in ``<out>/trials.jsonl`` (a rerun of the command continues from it). ``--rounds 1`` runs and kills a 1-round
loop instead (CI's 2-trial check, tests/test_chaos.py). Exit 1 when a trial lost or doubled a row,
failed its audit, or did not finish.

The loop generates with the benchmark's stand-in engine (bench/stand_in_engine.py: well-formed chains seeded per
request, a fixed latency per request), so the pseudo-labels do not depend on the adapter: row equality checks the
data plane's exactly-once under kills, and adapter equality checks training's resume on its own (docs/reliability.md).
Kill moments: the stage is drawn among those where the kind of process exists, then a delay within the stage's clean
duration; a kill whose process does not appear before its stage ends is counted as missed (the driver's and Ray's
are made at once in the next stage instead).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import benchlib  # noqa: E402

KINDS = ("engine", "data", "train", "train-save", "driver", "ray")
RERUN_KINDS = ("driver", "ray")  # the command dies with them: rerun it
LOOP_STAGES = ("sft", "sft/eval", "round-1/pseudolabel", "round-1/train", "round-1/eval",
               "round-2/pseudolabel", "round-2/train", "round-2/eval")
# Each trial starts with the clean run's seed SFT and its evaluation (copied: the loop finds them done), so the kills
# land in the two rounds; a seed SFT's training is killed and resumed like a round's. Every run (the clean one and
# each trial) runs in the same directory, <out>/work (a loop's configuration, run.output_dir included, must match to
# go on), and is moved to <out>/clean or <out>/trial-NNN when it is checked.
SEEDED = ("sft", "sft/eval")
KILL_STAGES = tuple(s for s in LOOP_STAGES if s not in SEEDED)
# What each kind's process looks like (/proc/<pid>/cmdline, which Ray sets to the task or actor it runs).
TARGETS = {
    "engine": ("ray::", "Generate"),
    "data": ("ray::", "PrepareUnit", "ScoreAndWriteUnit", "ReadParquet", "ReadFiles"),
    "train": ("ray::", "RayTrainWorker"),
    "ray": ("gcs_server", "raylet"),
}
MAX_ATTEMPTS = 4
HANG_S = 180  # a command still running this long after its Ray was killed is killed and rerun (counted)


# --- the draw (pure) ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    index: int
    kind: str
    stage: str
    delay_frac: float  # of the stage's clean duration
    step: int          # train-save: the step whose checkpoint write is cut
    rank: int          # train-save: the rank that dies


def stages_for(kind: str, rounds: int = 2) -> tuple[str, ...]:
    """The stages (of the first ``rounds`` rounds) where a process of ``kind`` exists."""
    stages = tuple(s for s in KILL_STAGES if int(s.split("/")[0].split("-")[1]) <= rounds)
    if kind in ("engine", "data"):
        return tuple(s for s in stages if s.endswith(("eval", "pseudolabel")))
    if kind in ("train", "train-save"):
        return tuple(s for s in stages if s.endswith("/train"))
    return stages


def draw_trials(n: int, seed: int, kinds: tuple[str, ...] = KINDS, max_step: int = 3, rounds: int = 2) -> list[Trial]:
    """``n`` trials from ``seed``: the kinds in turn (a seeded shuffle of each round of kinds, so every kind gets its
    share), each with a stage where that kind lives, a delay and (for a cut checkpoint write) a step and a rank."""
    rng = random.Random(seed)
    order: list[str] = []
    while len(order) < n:
        block = list(kinds)
        rng.shuffle(block)
        order += block
    return [Trial(i, k, rng.choice(stages_for(k, rounds)), round(rng.random(), 3), rng.randint(1, max_step), rng.randint(0, 1))
            for i, k in enumerate(order[:n])]


def row_diff(clean: list[str], trial: list[str]) -> dict:
    """Rows (by key) lost and doubled in ``trial`` against ``clean``: a key missing, or more often than in clean."""
    from collections import Counter

    c, t = Counter(clean), Counter(trial)
    lost = sum(max(0, c[k] - t[k]) for k in c)
    doubled = sum(max(0, t[k] - c[k]) for k in t)
    return {"lost": lost, "doubled": doubled}


def summarise(records: list[dict], by: str) -> list[tuple]:
    """One table row per value of ``by`` (``kind`` or ``stage``), and a total row."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r[by], []).append(r)
    order = [k for k in (KINDS if by == "kind" else LOOP_STAGES) if k in groups]
    rows = []
    for key, rs in [(k, groups[k]) for k in order] + [("all", records)]:
        killed = [r for r in rs if r["killed"]]
        lost_s = [r["wall_s"] - r["clean_s"] for r in killed]
        rows.append((key, len(rs), len(killed), sum(r["recovered"] for r in killed), len(rs) - len(killed),
                     sum(r["attempts"] - 1 for r in rs),
                     sum(lost_s) / len(lost_s) if lost_s else float("nan"), max(lost_s, default=float("nan")),
                     sum(r["lost"] for r in rs), sum(r["doubled"] for r in rs),
                     sum(r["audit_ok"] for r in rs), sum(r["rows_equal"] for r in rs),
                     sum(r["adapters_equal"] for r in rs), sum(r["eval_equal"] for r in rs)))
    return rows


COLUMNS = [("{by}", None), ("trials", "d"), ("killed", "d"), ("recovered", "d"), ("missed", "d"), ("reruns", "d"),
           ("time lost per kill, mean s", ".0f"), ("max s", ".0f"), ("rows lost", "d"), ("rows doubled", "d"),
           ("audit passed", "d"), ("rows equal clean", "d"), ("adapters equal clean", "d"), ("accuracy equal", "d")]


def failed(r: dict) -> bool:
    return bool(r["lost"] or r["doubled"] or not r["audit_ok"] or not r["finished"])


# --- running a loop and killing in it -------------------------------------------------------------------------------


def loop_cmd(ctx: dict) -> list[str]:
    return [sys.executable, "-m", "attrpipe.cli", "loop", "conf/tiny_cpu.yaml", f"data.root={ctx['catalog']}",
            f"model.path={ctx['model']}", "model.build_tiny=false", "taxonomy.verticals=[suitcase,watch]",
            "generation.engine=stand_in_engine:FixedLatencyEngine", f"loop.rounds={ctx['rounds']}",
            "sft.max_steps=4", "sft.save_steps=1", "dpo.max_steps=4", "dpo.save_steps=1",
            "pseudolabel.listings_per_unit=2", f"run.output_dir={ctx['work']}", "run.name=loop"]


def _env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.update({"PYTHONPATH": os.pathsep.join([str(benchlib.REPO), str(BENCH)]), "OMP_NUM_THREADS": "1",
                "TQDM_DISABLE": "1", "ATTRPIPE_BENCH_LATENCY_S": "0.1", **(extra or {})})
    return env


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def targets(kind: str, driver: int) -> list[int]:
    if kind == "driver":
        return [driver]
    first, *rest = TARGETS[kind]
    hits = []
    for p in descendants(driver):
        cmd = _cmdline(p)
        if kind == "ray":
            if any(cmd.split(" ", 1)[0].endswith(name) for name in TARGETS["ray"]):
                hits.append(p)
        elif cmd.startswith(first) and any(r in cmd.split(" ", 1)[0] for r in rest):
            hits.append(p)
    return sorted(hits)


def current_stage(run: Path) -> str | None:
    try:
        finished = json.loads((run / "loop.json").read_text())["finished"]
    except (OSError, ValueError, KeyError):
        return LOOP_STAGES[0]
    return next((s for s in LOOP_STAGES if s not in finished), None)


def _kill_tree(pid: int, seen: set[int]) -> None:
    for p in [pid, *descendants(pid), *seen]:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_trial(trial: Trial, ctx: dict, dest: Path) -> dict:
    """Run the loop with ``trial``'s kill, rerunning the command until it finishes (at most MAX_ATTEMPTS); check it
    against the clean run; move it to ``dest``."""
    import shutil

    out = ctx["work"]
    shutil.rmtree(out, ignore_errors=True)
    run = out / "loop"
    _seed_from_clean(ctx["clean_run"], run)
    extra = {}
    marker = out / "fault"
    if trial.kind == "train-save":
        where = "sft" if trial.stage == "sft" else trial.stage.split("/")[0]
        extra["ATTRPIPE_INJECT_FAULT"] = json.dumps({"where": where, "step": trial.step, "at": "save", "kill": True,
                                                     "ranks": [trial.rank], "marker": str(marker)})
    t0 = time.perf_counter()
    killed, kill_note, attempts, rc = False, "", 0, None
    with (out / "log.txt").open("a") as log:
        while attempts < MAX_ATTEMPTS:
            attempts += 1
            proc = subprocess.Popen(loop_cmd(ctx), cwd=benchlib.REPO, env=_env(extra), stdout=log, stderr=log,
                                    start_new_session=True)
            seen: set[int] = set()
            if not killed and trial.kind not in ("train-save",):
                killed, kill_note = _watch_and_kill(trial, ctx, proc, run, seen)
            hung_since = time.perf_counter() if killed and trial.kind == "ray" else None
            while proc.poll() is None:
                seen.update(descendants(proc.pid))
                if hung_since is not None and time.perf_counter() - hung_since > HANG_S:
                    kill_note += f"; the driver hung {HANG_S} s after its Ray died, killed"
                    _kill_tree(proc.pid, seen)
                time.sleep(0.5)
            rc = proc.returncode
            _kill_tree(proc.pid, seen)  # whatever the command left (a killed Ray's workers)
            if trial.kind == "train-save" and not killed:
                hits = sorted(marker.parent.glob(marker.name + ".*"))
                killed = bool(hits)
                kill_note = hits[0].read_text().strip() if hits else ""
            if rc == 0:
                break
    wall = time.perf_counter() - t0
    rec = {**asdict(trial), "killed": killed, "kill": kill_note, "attempts": attempts, "rc": rc,
           "wall_s": round(wall, 1), "clean_s": ctx["clean_s"],
           "recovered": rc == 0}
    rec.update(compare(ctx["clean_run"], run))
    shutil.rmtree(dest, ignore_errors=True)
    shutil.move(str(out), str(dest))
    return rec


def _seed_from_clean(clean: Path, run: Path) -> None:
    """The clean run's seed SFT and its evaluation, as finished stages of ``run``."""
    import shutil

    shutil.copytree(clean / "sft", run / "sft")
    state = json.loads((clean / "loop.json").read_text())
    state["finished"] = {k: v for k, v in state["finished"].items() if k in SEEDED}
    (run / "loop.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")


def _watch_and_kill(trial: Trial, ctx: dict, proc: subprocess.Popen, run: Path, seen: set[int]) -> tuple[bool, str]:
    """Wait for the trial's stage, then its delay, then SIGKILL one process of its kind (a seeded choice)."""
    rng = random.Random(f"{trial.index}-{trial.kind}")
    while proc.poll() is None and current_stage(run) != trial.stage:
        if LOOP_STAGES.index(current_stage(run) or LOOP_STAGES[-1]) > LOOP_STAGES.index(trial.stage):
            return False, "the stage was done before its kill (an earlier attempt)"
        seen.update(descendants(proc.pid))
        time.sleep(0.1)
    t_stage = time.perf_counter()
    deadline = t_stage + trial.delay_frac * ctx["stage_s"].get(trial.stage, 10.0)
    while proc.poll() is None and time.perf_counter() < deadline and current_stage(run) == trial.stage:
        seen.update(descendants(proc.pid))
        time.sleep(0.1)
    # The driver and Ray live through every stage: one whose stage ended before its moment (a stage can run faster
    # than in the clean run) is killed at once, in the next stage, rather than missed.
    while proc.poll() is None and (current_stage(run) == trial.stage or trial.kind in RERUN_KINDS):
        seen.update(descendants(proc.pid))
        pids = targets(trial.kind, proc.pid)
        if pids:
            chosen = pids if trial.kind == "ray" else [rng.choice(pids)]
            names = ", ".join(_cmdline(p).strip()[:60] or str(p) for p in chosen)
            for p in chosen:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            late = "" if current_stage(run) == trial.stage else f" (in {current_stage(run)}: its stage had ended)"
            return True, f"{trial.stage} +{time.perf_counter() - t_stage:.1f} s{late}: SIGKILL {names or chosen}"
        time.sleep(0.05)
    return False, "no process of its kind while its stage ran"


# --- checking a trial against the clean run -------------------------------------------------------------------------


def _rows(d: Path) -> list[dict]:
    import pyarrow.parquet as pq

    from attrpipe.pseudolabel.output import committed_files

    drop = ("adapter", "adapter_fingerprint")
    rows = []
    for f in committed_files(str(d)) or []:
        rows += [{k: v for k, v in r.items() if k not in drop} for r in pq.read_table(f).to_pylist()]
    return rows


def compare(clean: Path, run: Path) -> dict:
    """The trial's run against the clean one: finished, audit, rows (lost, doubled, equal), adapters, accuracies."""
    from attrpipe.audit import audit

    res = {"finished": False, "audit_ok": False, "lost": 0, "doubled": 0, "rows_equal": False,
           "adapters_equal": False, "eval_equal": False, "problems": []}
    try:
        lj, cj = json.loads((run / "loop.json").read_text()), json.loads((clean / "loop.json").read_text())
    except (OSError, ValueError) as e:
        res["problems"].append(f"loop.json: {e}")
        return res
    res["finished"] = set(lj["finished"]) == set(lj["stages"])
    rep = audit(str(run))
    res["audit_ok"] = rep.ok
    if not rep.ok:
        res["problems"] += [p for ps in rep.checks.values() for p in ps][:5]
    equal = True
    for units in sorted(clean.rglob("_units")):
        out = units.parent
        for shard in ("consensus", "pairs", "quarantine"):
            c = out / shard
            if not c.is_dir():
                continue
            t = run / c.relative_to(clean)
            ck = [json.dumps(r, sort_keys=True, default=str) for r in _rows(c)]
            tk = [json.dumps(r, sort_keys=True, default=str) for r in _rows(t)] if t.is_dir() else []
            d = row_diff(ck, tk)
            res["lost"] += d["lost"]
            res["doubled"] += d["doubled"]
            if d["lost"] or d["doubled"]:
                equal = False
                res["problems"].append(f"{t.relative_to(run)}: {d['lost']} lost, {d['doubled']} doubled")
    res["rows_equal"] = equal
    adapters = sorted(p.relative_to(clean) for p in clean.glob("*/adapter/adapter_model.safetensors"))
    res["adapters_equal"] = bool(adapters) and all(
        (run / a).is_file() and (run / a).read_bytes() == (clean / a).read_bytes() for a in adapters)
    evals = [s for s in cj["stages"] if s.endswith("eval")]
    res["eval_equal"] = all(lj["finished"].get(s, {}).get("accuracy") == cj["finished"][s].get("accuracy")
                            for s in evals)
    return res


# --- the command ----------------------------------------------------------------------------------------------------


def _prepare(out: Path, rounds: int) -> dict:
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    cat = out / "catalog"
    if not (cat / "catalog.json").is_file():
        write_synthetic_catalog(cat, taxonomy=load_taxonomy("conf/taxonomy", ["suitcase", "watch"]), listings=8,
                                seed=0, seed_per_vertical=2, test_per_vertical=2)
    ctx = {"catalog": str(cat), "model": benchlib.tiny_model(), "work": out / "work", "rounds": rounds}
    clean = out / "clean"
    timing_file = clean / "timing.json"
    if not timing_file.is_file() or json.loads(timing_file.read_text()).get("rounds", 2) != rounds:
        import shutil

        shutil.rmtree(ctx["work"], ignore_errors=True)
        t0 = time.perf_counter()
        with (out / "clean-log.txt").open("w") as log:
            rc = subprocess.run(loop_cmd(ctx), cwd=benchlib.REPO, env=_env(), stdout=log, stderr=log).returncode
        if rc != 0:
            sys.exit(f"the clean loop failed ({rc}): {out / 'clean-log.txt'}")
        wall = time.perf_counter() - t0
        finished = json.loads((ctx["work"] / "loop" / "loop.json").read_text())["finished"]
        shutil.rmtree(clean, ignore_errors=True)
        shutil.move(str(ctx["work"]), str(clean))
        # a trial runs the rounds only (the seed SFT is copied): its clean time is the rounds' share of the run
        rounds = sum(float(v.get("seconds", 0.0)) for k, v in finished.items() if k not in SEEDED)
        seeded = sum(float(v.get("seconds", 0.0)) for k, v in finished.items() if k in SEEDED)
        (clean / "timing.json").write_text(json.dumps({"rounds": rounds, "wall_s": round(wall, 1), "rounds_wall_s": round(
            wall - seeded, 1), "rounds_stage_s": round(rounds, 1), "stage_s": {
            s: float(v.get("seconds", 10.0)) for s, v in finished.items()}}))
    timing = json.loads((clean / "timing.json").read_text())
    return {**ctx, "clean_run": clean / "loop", "clean_s": timing["rounds_wall_s"], "stage_s": timing["stage_s"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--hog", action="store_true", help="two busy processes beside the trials (a loaded node)")
    ap.add_argument("--out", default="runs/chaos")
    ap.add_argument("--rounds", type=int, choices=(1, 2), default=2, help="loop rounds of each run (CI's check: 1)")
    args = ap.parse_args(argv)
    benchlib.use_this_checkout()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if set(kinds) - set(KINDS):
        ap.error(f"--kinds: {sorted(set(kinds) - set(KINDS))} not among {KINDS}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    before = benchlib.start("chaos")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)] if args.hog else []
    try:
        ctx = _prepare(out, args.rounds)
        journal = out / "trials.jsonl"
        done = {json.loads(line)["index"]: json.loads(line) for line in journal.read_text().splitlines()} \
            if journal.is_file() else {}
        for trial in draw_trials(args.trials, args.seed, kinds, rounds=args.rounds):
            if trial.index in done and done[trial.index]["kind"] == trial.kind:
                continue
            rec = run_trial(trial, ctx, out / f"trial-{trial.index:03d}")
            rec["hog"] = bool(args.hog)
            done[trial.index] = rec
            with journal.open("a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
            print(f"trial {trial.index}: {trial.kind} in {trial.stage}: "
                  f"{'killed' if rec['killed'] else 'missed'} ({rec['kill']}), {rec['attempts']} attempt(s), "
                  f"{rec['wall_s']:.0f} s, lost {rec['lost']}, doubled {rec['doubled']}, audit "
                  f"{'passed' if rec['audit_ok'] else 'FAILED'}, adapters "
                  f"{'equal' if rec['adapters_equal'] else 'differ'}", flush=True)
    finally:
        for h in hogs:
            h.kill()
    records = [done[t.index] for t in draw_trials(args.trials, args.seed, kinds, rounds=args.rounds) if t.index in done]
    notes = [f"clean rounds (a trial's work without a kill): {ctx['clean_s']:.0f} s; trials: {out}/trials.jsonl"
             + ("; with a CPU hog (2 busy processes)" if args.hog else "")]
    for by in ("kind", "stage"):
        cols = [(name.format(by=by), fmt) for name, fmt in COLUMNS]
        benchlib.print_table(f"chaos: {len(records)} trials by {by}, seed {args.seed}", cols, summarise(records, by),
                             before=before, notes=notes if by == "stage" else [])
    bad = [r for r in records if failed(r)]
    for r in bad:
        print(f"trial {r['index']} ({r['kind']} in {r['stage']}): {'; '.join(r['problems']) or 'did not finish'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
