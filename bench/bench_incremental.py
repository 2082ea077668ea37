"""Benchmark of incremental labeling (``--since``): a catalog pseudo-labeled in full, then the same catalog a day
later, with a share of its listings changed, labeled against the first output. Prints a measured table
(docs/pseudolabel.md keeps the last one).

    python bench/bench_incremental.py --sizes 1000000 --changed 0.02

Day 2 differs from day 1 in ``--changed`` of its listings (new image bytes under the same listing ids), plus
``--churn`` of them removed and as many new ones added. Both passes run the pipeline with the data plane's stand-in
engine (bench/stand_in_engine.py, which counts the requests it is sent) on this machine's cores, and are measured
alike: wall time, engine requests, peak memory (PSS of the driver and its Ray, as bench_pseudolabel.py dataplane).
tests/test_bench_smoke.py runs it at its smallest size.
"""

from __future__ import annotations

import argparse
import io
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

from bench_pseudolabel import PeakRSS, _cfg  # noqa: E402
from stand_in_engine import requests_sent  # noqa: E402

VERTICALS = ["suitcase", "watch", "kurta"]


def _png(color) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def _day(n: int, changed: float, churn: float) -> tuple[list[tuple[str, int]], int, dict]:
    """Day 1 (``changed`` = ``churn`` = 0) or day 2 of a catalog of ``n`` listings: its (listing id, index) rows, the
    period of the listings with new image bytes (0: none), and what differs from day 1 (changed, removed, added)."""
    every_changed = round(1 / changed) if changed else 0
    every_gone = round(1 / churn) if churn else 0
    rows = [(f"p{i:09d}", i) for i in range(n) if not (every_gone and i % every_gone == every_gone // 2)]
    added = n // every_gone if every_gone else 0
    listings = [*rows, *((f"q{i:09d}", n + i) for i in range(added))]
    n_changed = sum(1 for _, i in listings if every_changed and i < n and i % every_changed == 0)
    return listings, every_changed, {"listings": len(listings), "changed": n_changed, "removed": n - len(rows),
                                     "added": added}


def write_day(path: Path, n: int, *, changed: float = 0.0, churn: float = 0.0) -> dict:
    """A catalog of ``n`` listings with one 8x8 inline PNG each, in files of 50,000. Day 2 (``changed`` > 0 or
    ``churn`` > 0): every 1/changed-th listing has other image bytes, every 1/churn-th is gone, and as many new
    ones come at the end. Returns what was changed, removed and added."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from attrpipe.schemas import CATALOG_SCHEMA

    day1, other = _png((200, 30, 30)), _png((30, 30, 200))
    listings, every_changed, counts = _day(n, changed, churn)
    path.mkdir(parents=True)
    per_file = 50_000
    for f, start in enumerate(range(0, len(listings), per_file)):
        part = listings[start:start + per_file]
        images = [[other if every_changed and i < n and i % every_changed == 0 else day1] for _, i in part]
        m = len(part)
        table = pa.table({
            "listing_id": [lid for lid, _ in part],
            "vertical": [VERTICALS[i % len(VERTICALS)] for _, i in part],
            "image_uris": pa.nulls(m, pa.list_(pa.string())),
            "image_bytes": images,
            "seller_attributes": pa.nulls(m, CATALOG_SCHEMA.field("seller_attributes").type),
        }, schema=CATALOG_SCHEMA)
        pq.write_table(table, path / f"part-{f:05d}.parquet", row_group_size=5_000)
    return counts


def _run(tmp: Path, catalog: Path, out: Path, unit: int, since: Path | None = None) -> tuple[dict, float, int, float]:
    from attrpipe.pseudolabel.pipeline import run_pseudolabel

    cfg = _cfg([f"data.root={tmp}", f"data.unlabeled={catalog}", "generation.engine=stand_in_engine:FixedLatencyEngine",
                "images.size=28", f"pseudolabel.listings_per_unit={unit}", f"pseudolabel.output={out}",
                "ray.engine.num_actors=1", "ray.engine.num_cpus_per_actor=0.5",
                "ray.preprocess.num_cpus_per_task=0.5", "ray.preprocess.max_actors=1",
                f"taxonomy.verticals=[{','.join(VERTICALS)}]"])
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        m = run_pseudolabel(cfg, since=None if since is None else str(since), verbose=False)
        seconds = time.perf_counter() - t0
    return m, seconds, requests_sent(os.environ["ATTRPIPE_BENCH_REQUEST_LOG"]), mem.peak / 2**20


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    p.add_argument("--changed", type=float, default=0.02, help="share of day 2's listings with new image bytes")
    p.add_argument("--churn", type=float, default=0.001, help="share removed, and as many added")
    p.add_argument("--unit", type=int, default=256, help="listings per unit")
    p.add_argument("--latency", type=float, default=0.0005, help="stand-in seconds per request")
    p.add_argument("--workdir", type=Path, help="keep the catalogs and outputs here (one size only), and resume: a "
                   "full pass that finished there (its full.json) is not run again")
    args = p.parse_args()
    if args.workdir and len(args.sizes) != 1:
        p.error("--workdir takes one size")
    before = benchlib.start("incremental")
    os.environ["ATTRPIPE_BENCH_LATENCY_S"] = str(args.latency)
    rows, notes = [], []
    for n in args.sizes:
        tmp = args.workdir or Path(tempfile.mkdtemp(prefix=f"bench-inc-{n}-"))
        log = tmp / "engine-log"
        log.mkdir(parents=True, exist_ok=True)
        os.environ["ATTRPIPE_BENCH_REQUEST_LOG"] = str(log)
        benchlib.init_ray(2, {"ATTRPIPE_BENCH_REQUEST_LOG": str(log)})
        if not (tmp / "day2").is_dir():
            shutil.rmtree(tmp / "day1", ignore_errors=True)
            write_day(tmp / "day1", n)
            write_day(tmp / "day2", n, changed=args.changed, churn=args.churn)
        day2 = _day(n, args.changed, args.churn)[2]
        full = tmp / "full.json"
        if full.is_file():  # a full pass that finished in this workdir
            t1, r1, mem1 = (json.loads(full.read_text())[k] for k in ("seconds", "requests", "peak_mib"))
            print(f"  {n} listings, full pass (measured earlier, {full}): {t1:.0f}s, {r1} requests, peak "
                  f"{mem1:.0f} MiB", flush=True)
        else:
            shutil.rmtree(tmp / "out1", ignore_errors=True)
            requests_sent(str(log))  # what an interrupted pass left in the log is not this pass's
            _, t1, r1, mem1 = _run(tmp, tmp / "day1", tmp / "out1", args.unit)
            full.write_text(json.dumps({"seconds": t1, "requests": r1, "peak_mib": mem1}))
            print(f"  {n} listings, full pass: {t1:.0f}s, {r1} requests, peak {mem1:.0f} MiB, load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        shutil.rmtree(tmp / "out2", ignore_errors=True)
        requests_sent(str(log))
        m2, t2, r2, mem2 = _run(tmp, tmp / "day2", tmp / "out2", args.unit, since=tmp / "out1")
        index = json.loads((tmp / "out2" / "_since" / "_index.json").read_text())
        inc = m2["incremental"]
        print(f"  {n} listings, incremental: {t2:.0f}s (index {index['seconds']:.0f}s), {r2} requests, peak "
              f"{mem2:.0f} MiB, {inc}, load average {os.getloadavg()[0]:.1f}", flush=True)
        assert (inc["relabeled"], inc["new"], inc["removed"]) == (day2["changed"], day2["added"], day2["removed"]), (
            inc, day2)
        rows.append((f"{n:,} full", n, r1, 100.0, t1, mem1))
        rows.append((f"{n:,} incremental", day2["listings"], r2, 100.0 * r2 / r1, t2, mem2))
        notes.append(f"{n:,}: day 2 has {day2['changed']:,} listings with new image bytes, {day2['removed']:,} "
                     f"removed, {day2['added']:,} added; {inc['carried_over']:,} carried over; the index (the join "
                     f"with day 1's keys) took {index['seconds']:.0f} s of the incremental pass; incremental / full: "
                     f"wall time {t2 / t1:.2f}, peak memory {mem2 / mem1:.2f}x")
        if not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)  # the 1M outputs are gigabytes
    benchlib.print_table(
        f"incremental labeling: stand-in engine ({args.latency * 1000:.1f} ms per request), 8x8 inline images, "
        f"{args.unit} listings per unit, 7 chains, {os.cpu_count()} cores",
        [("pass", None), ("listings", ",d"), ("engine requests", ",d"), ("requests, % of full", ".1f"),
         ("seconds", ".0f"), ("peak PSS, driver + its Ray (MiB)", ".0f")],
        rows, before=before, notes=notes)


if __name__ == "__main__":
    main()
