"""Benchmark: a study's arms one at a time against two at once, on this machine. Prints a measured table
(docs/loop.md keeps the last one).

    python bench/bench_study_arms.py [--latency 0.05] [--pools 8 16] [--steps 4]

A pool-size study of 2 pools x 2 methods (DPO, SL) x 1 seed on conf/tiny_cpu.yaml: the tiny Qwen2.5-VL, real
training on Ray Train, and the benchmark's stand-in engine (bench/stand_in_engine.py: a fixed latency per request
stands in for a GPU's time). The seed's shared stages (seed SFT, chains) are made first, by the first run; then the
same four arms run under two study names: ``study.max_concurrent_arms=1``, then 2. The local Ray has 4 logical CPUs
so that two arms fit at once (an arm's largest stage asks for 2); the machine's cores are what they are, and both
runs share them. Measured from each arm's loop.json (its own stages' start and end): the arms' wall time (first
start to last end), the sum of the arms' own times, and their ratio (arms running at once, on average).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

benchlib.use_this_checkout()

VERTICALS = ["suitcase", "watch"]


def _spans(study_dir: Path) -> dict[str, tuple[float, float]]:
    spans = {}
    for loop in sorted(study_dir.glob("seed-*/*/loop.json")):
        own = [v for k, v in json.loads(loop.read_text())["finished"].items() if k.startswith("round-")]
        spans[loop.parent.name] = (min(v["started_at"] for v in own), max(v["ended_at"] for v in own))
    return spans


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency", type=float, default=0.05, help="stand-in seconds per request")
    p.add_argument("--pools", type=int, nargs=2, default=[8, 16])
    p.add_argument("--steps", type=int, default=4, help="DPO and SL steps per arm")
    args = p.parse_args()
    before = benchlib.start("study-arms")
    os.environ["ATTRPIPE_BENCH_LATENCY_S"] = str(args.latency)
    benchlib.init_ray(4, {"ATTRPIPE_BENCH_LATENCY_S": str(args.latency)})

    from attrpipe.config import load_config
    from attrpipe.study import run_study
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    tmp = Path(tempfile.mkdtemp(prefix="bench-study-arms-"))
    write_synthetic_catalog(tmp / "cat", taxonomy=load_taxonomy("conf/taxonomy", VERTICALS),
                            listings=max(args.pools), seed=1, seed_per_vertical=2, test_per_vertical=2)
    rows, notes = [], []
    for k in (1, 2):
        cfg = load_config("conf/tiny_cpu.yaml", [
            f"data.root={tmp / 'cat'}", f"model.path={benchlib.tiny_model()}", "model.build_tiny=false",
            f"taxonomy.verticals=[{','.join(VERTICALS)}]", "generation.engine=stand_in_engine:FixedLatencyEngine",
            "pseudolabel.listings_per_unit=4", "sft.max_steps=2", f"dpo.max_steps={args.steps}",
            f"sl.max_steps={args.steps}", f"run.output_dir={tmp / 'runs'}", "run.name=b", "study.seeds=[0]",
            "study.rounds=1", f"study.pool_sizes=[{args.pools[0]},{args.pools[1]}]", "study.methods=[dpo,sl]",
            f"study.max_concurrent_arms={k}", f"study.name=at-once-{k}", "ray.preprocess.num_cpus_per_task=0.5"])
        t0 = time.perf_counter()
        out = run_study(cfg, "pool-size", verbose=False)
        seconds = time.perf_counter() - t0
        assert not out["failed"], out["failed"]
        spans = _spans(tmp / "runs" / "b" / f"study-pool-size-at-once-{k}")
        wall = max(e for _, e in spans.values()) - min(s for s, _ in spans.values())
        busy = sum(e - s for s, e in spans.values())
        rows.append((f"{k} at once", out["concurrency"], len(spans), wall, busy, busy / wall, seconds))
        print(f"  {k} at once: arms {wall:.0f} s, their own times {busy:.0f} s, command {seconds:.0f} s "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        if k == 1:
            notes.append(f"the first run also made the shared seed SFT and chains: its command took {seconds:.0f} s "
                         "in all; the second found them done")
    one, two = rows
    notes.append(f"two at once / one at a time, the arms' wall time: {two[3] / one[3]:.2f}")
    shutil.rmtree(tmp, ignore_errors=True)
    benchlib.print_table(
        f"a study's arms (2 pools x DPO, SL; {args.steps} training steps each), stand-in engine "
        f"({args.latency * 1000:.0f} ms per request), a local Ray of 4 logical CPUs on {os.cpu_count()} cores",
        [("run", None), ("jobs at once", "d"), ("arms", "d"), ("arms' wall (s)", ".0f"),
         ("sum of the arms' own times (s)", ".0f"), ("arms running at once, on average", ".2f"),
         ("command (s)", ".0f")],
        rows, before=before, notes=notes)


if __name__ == "__main__":
    main()
