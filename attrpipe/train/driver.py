"""``run_training``: one Ray Train ``TorchTrainer`` run of SFT, DPO, ScPO or self-learning on a LoRA adapter.

The driver reads nothing but Parquet metadata and small columns: it builds the Ray Data pipeline (input rows ->
records, images still encoded), counts the records once without the image columns to plan the steps, and hands the
pipeline to Ray Train, which streams an equal shard to every worker (``get_dataset_shard``). Workers
(:func:`attrpipe.train.worker.train_loop_per_worker`) run TRL under DeepSpeed and report checkpoints through
``RayTrainReportCallback``; the last checkpoint of a run holds the adapter, the processor files and the metrics,
which the driver copies to the output directory:

    <out_dir>/adapter/            adapter_config.json + adapter_model.safetensors (PEFT) + processor/tokenizer files
    <out_dir>/metrics.jsonl       one line per optimizer step (loss, lr, grad norm; DPO: rewards, accuracy, margins)
    <out_dir>/train_result.json   what ran: kind, plan, start/reference, paths, final step, timings
    <out_dir>/ray/<kind>-<time>/  Ray Train's checkpoints (unless ray.train.storage_path says elsewhere)
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tempfile
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from attrpipe import storage
from attrpipe.catalog_io import CatalogReading, canonical_row, catalog_files
from attrpipe.console import Progress
from attrpipe.pseudolabel.output import committed_files
from attrpipe.ray_utils import init_ray

from attrpipe.train.examples import (
    RECORD_COLUMNS,
    CONSENSUS_COLUMNS,
    IMAGE_COLUMNS,
    PAIRS_COLUMNS,
    SEED_COLUMNS,
    catalog_root,
    pair_record,
    records_to_table,
    scpo_records,
    seed_records,
    sl_records,
)
from attrpipe.train.plan import (
    FULL_KINDS,
    KINDS,
    default_paths,
    deepspeed_config,
    find_resume_checkpoint,
    hyperparameters,
    output_subdir,
    plan_steps,
    resolve_start,
)
from attrpipe.train.worker import FINAL_CHECKPOINT_MARKER, METRICS_FILE, train_loop_per_worker

__all__ = ["run_training", "RecordMapper", "training_records", "count_records"]

log = logging.getLogger("attrpipe.train")


class RecordMapper:
    """The Ray Data ``map_batches`` function: a pyarrow batch of input rows -> a pyarrow batch of records."""

    def __init__(self, kind: str, *, taxonomy=None, root: str | None = None, images: dict, taxonomy_opts: dict,
                 with_images: bool = True, reading: CatalogReading | None = None, seed: int = 0):
        self.kind, self.taxonomy, self.root, self.with_images = kind, taxonomy, root, with_images
        self.seed = seed  # scpo: the run seed of its pairs' tie-breaking draws (as pseudo-labeling's pairs)
        self.images, self.taxonomy_opts = images, taxonomy_opts
        # the seed set is a catalog: read with data.columns (canonical_row), its verticals matched as pseudo-labeling
        # matches them (data.match_vertical_names)
        self.reading = reading

    def rows_to_records(self, rows: list[dict]) -> list[dict]:
        m = int(self.images["max_images"])
        schemes = list(self.images["allowed_schemes"])  # images.allowed_schemes, as in pseudo-labeling
        out: list[dict] = []
        for row in rows:
            if self.kind == "sft":
                vertical = self.taxonomy.match_vertical(row.get("vertical"), self.reading is not None
                                                        and self.reading.match_vertical_names)
                if vertical is not None:
                    row = {**row, "vertical": vertical}
                out.extend(seed_records(
                    row, self.taxonomy, root=self.root, max_images=m, allowed_schemes=schemes,
                    with_images=self.with_images, **self.taxonomy_opts,
                ))
            elif self.kind == "dpo":
                out.append(pair_record(row, max_images=m, with_images=self.with_images, allowed_schemes=schemes))
            elif self.kind == "pretrain":  # already records (attrpipe.synth.vqa)
                out.append({c: row.get(c) for c in RECORD_COLUMNS})
            elif self.kind == "scpo":
                out.extend(scpo_records(row, self.taxonomy, seed=self.seed, max_images=m,
                                        with_images=self.with_images, allowed_schemes=schemes))
            else:
                out.extend(sl_records(row, self.taxonomy, max_images=m, with_images=self.with_images,
                                      allowed_schemes=schemes))
        return out

    def __call__(self, batch):
        rows = batch.to_pylist()
        if self.kind == "sft" and self.reading is not None:  # rows as Ray Data read them from the user's files
            rows = [canonical_row(r, self.reading) for r in rows]
        return records_to_table(self.rows_to_records(rows))


def _columns(kind: str) -> tuple[str, ...]:
    return {"sft": SEED_COLUMNS, "dpo": PAIRS_COLUMNS, "sl": CONSENSUS_COLUMNS, "scpo": CONSENSUS_COLUMNS,
            "pretrain": RECORD_COLUMNS}[kind]


def _present_columns(path: str | list[str], wanted: tuple[str, ...]) -> list[str]:
    import pyarrow.dataset as pads

    fs, p = storage.filesystem_for(path[0] if isinstance(path, list) else path)
    names = set(pads.dataset(p, format="parquet", filesystem=fs).schema.names)
    return [c for c in wanted if c in names]


def data_files(data: str) -> str | list[str]:
    """What to read of ``data``: inside a pseudo-labeling output (``<out>/pairs``, ``<out>/consensus``) only the shards
    its unit markers name, so a shard left behind by a killed run is never trained on; any other Parquet as it is."""
    files = committed_files(data)
    if files is None:
        return data
    if not files:
        raise ValueError(f"{data}: no committed shards (no finished unit of that pseudo-labeling output wrote one)")
    return files


def _mapper(kind: str, cfg, data: str, *, with_images: bool) -> RecordMapper:
    from attrpipe.taxonomy import load_taxonomy

    taxonomy = None
    if kind in ("sft", "sl", "scpo"):
        taxonomy = load_taxonomy(cfg.taxonomy.path, list(cfg.taxonomy.verticals) or None)
    return RecordMapper(
        kind, taxonomy=taxonomy, root=catalog_root(data) if kind == "sft" else None,
        images=OmegaConf.to_container(cfg.images, resolve=True),
        taxonomy_opts={"skip_non_inferable": bool(cfg.taxonomy.skip_non_inferable),
                       "category_question": bool(cfg.taxonomy.category_question)},
        with_images=with_images, reading=CatalogReading.from_conf(cfg) if kind == "sft" else None,
        seed=int(cfg.run.seed),
    )


def _read_catalog(data: str, reading: CatalogReading, wanted: tuple[str, ...]):
    """A labeled set (the seed split) as Ray Data reads it: ``read_parquet`` and ``read_json`` (JSON lines, gzipped
    or not), hive partition keys as columns; only the files' columns that hold ``wanted`` (data.columns)."""
    import ray.data
    from ray.data.datasource import Partitioning

    files = catalog_files(data)
    partitioning = None
    if any("/" in f.name for f in files):  # hive partition directories below ``data``
        partitioning = Partitioning("hive", base_dir=storage.filesystem_for(data)[1])
    parts = []
    for fmt, read in (("parquet", ray.data.read_parquet), ("jsonl", ray.data.read_json)):
        paths = [f.path for f in files if f.format == fmt]
        if paths:
            parts.append(read(paths, partitioning=partitioning))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    names = set(ds.schema().names)
    return ds.select_columns([c for c in dict.fromkeys(reading.file_column(w) for w in wanted) if c in names])


def training_records(kind: str, cfg, data: str, *, with_images: bool = True, num_cpus: float | None = None):
    """The Ray Data pipeline of a kind's training records (lazy; nothing is read until it is consumed)."""
    import ray.data

    mapper = _mapper(kind, cfg, data, with_images=with_images)
    wanted = tuple(c for c in _columns(kind) if with_images or c not in IMAGE_COLUMNS)
    if kind == "sft":
        ds = _read_catalog(data, mapper.reading, wanted)
    else:
        files = data_files(data)
        ds = ray.data.read_parquet(files).select_columns(_present_columns(files, wanted))
    kw = {} if num_cpus is None else {"num_cpus": num_cpus}
    return ds.map_batches(mapper, batch_format="pyarrow", **kw)


def _check_data_cpus(train_cpus: float) -> None:
    """Ray Data reads the training set while training runs, from the CPUs the workers leave: with none left it would
    wait forever, so say so up front."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 0.0))
    if total - train_cpus < 1.0:
        log.warning(
            "the Ray cluster has %.1f CPUs and the training workers take %.1f: Ray Data needs at least one more to "
            "read the training set (lower ray.train.num_cpus_per_worker or add CPUs), or training may wait forever",
            total, train_cpus,
        )


def count_records(kind: str, cfg, data: str) -> int:
    """How many records a kind's data makes, never reading images or texts: pairs from the Parquet metadata (one
    record a row); the seed split (small by nature: ~10 listings a vertical) by mapping its label columns here;
    consensus shards (large) from three numeric columns, streamed: a kept row gives one record per chain agreeing with
    its consensus, and those are round(C x n_chains) by the definition of C (tests check it against the mapper); for
    scpo one record when that is fewer than n_chains (some chain disagrees: attrpipe.objectives)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    if kind == "sft":  # the seed split, read as pseudo-labeling reads a catalog (rows already canonical)
        from attrpipe.pseudolabel.units import iter_rows

        mapper = _mapper(kind, cfg, data, with_images=False)
        cols = [c for c in SEED_COLUMNS if c not in IMAGE_COLUMNS]
        return sum(len(mapper.rows_to_records([r])) for r in iter_rows(data, cols, mapper.reading)
                   if "_error" not in r)
    files = data_files(data)
    fs, _ = storage.filesystem_for(files[0] if isinstance(files, list) else files)
    strip = lambda p: storage.filesystem_for(p)[1]  # noqa: E731
    dataset = pads.dataset([strip(f) for f in files] if isinstance(files, list) else strip(files), format="parquet",
                           filesystem=fs)
    if kind in ("dpo", "pretrain"):
        return int(dataset.count_rows())
    n = 0
    for batch in dataset.to_batches(columns=["kept", "consensus", "confidence", "n_chains"],
                                    filter=(pc.field("kept") == True) & pc.field("consensus").is_valid()):  # noqa: E712
        n_chains = pc.cast(batch.column("n_chains"), "float64")
        agree = pc.round(pc.multiply(batch.column("confidence"), n_chains))
        if kind == "scpo":
            n += int(pc.sum(pc.cast(pc.less(agree, n_chains), "int64")).as_py() or 0)
        else:
            n += int(pc.sum(agree).as_py() or 0)
    return n


def ingest_options(preserve_order: bool):
    """Ray Data's options for feeding the workers: Ray Train's defaults, with ``preserve_order`` (Ray's own switch).

    With it, Ray Data yields the blocks in the input's order and the equal streaming split hands them out by rows
    alone, not by which worker asks first: every worker gets the same records in the same order in every run, so a
    training run is reproducible (docs/results.md: without it, one DPO configuration ended between 20.0% and 26.1%
    in four runs). Without it, blocks go to whichever worker asks first, which can keep fast workers busier."""
    from ray.train import DataConfig

    opts = DataConfig.default_ingest_options()
    opts.preserve_order = preserve_order
    return opts


def _abs(p: str) -> str:
    return p if "://" in p else os.path.abspath(p)


PROGRESS_FILE = "_progress.json"  # rank 0's step and loss while training runs (the progress line)


def _progress_poll(path: str, max_steps: int):
    def poll() -> tuple[int, int, str]:
        p = storage.read_json(path) if storage.exists(path) else {}
        loss = p.get("loss")
        return int(p.get("step", 0)), int(p.get("max_steps") or max_steps), "" if loss is None else f"loss {loss:.4f}"

    return poll


FAULT_ENV = "ATTRPIPE_INJECT_FAULT"


def fault_from_env(out_dir: str) -> dict | None:
    """Test hook of the chaos harness (bench/chaos.py), which runs whole ``attrpipe loop`` commands: the environment
    variable ``ATTRPIPE_INJECT_FAULT`` holds a fault spec as JSON (what ``_fault`` takes: a worker fails or is killed
    at a step, at a moment, on some ranks; attrpipe.train.worker), applied to the training whose output directory is
    named ``spec["where"]`` (``sft``, ``round-1``, ...). Unset: None."""
    raw = os.environ.get(FAULT_ENV)
    if not raw:
        return None
    spec = json.loads(raw)
    return spec if posixpath.basename(str(out_dir).rstrip("/")) == spec.get("where") else None


def run_training(
    kind: str,
    cfg,
    *,
    out_dir: str | None = None,
    data: str | None = None,
    init_adapter: str | None = None,
    resume_from: str | None = None,
    reference_adapter: str | None = None,
    tracking: dict | None = None,
    _fault: dict | None = None,
) -> dict[str, Any]:
    """Train ``kind`` (``"sft"``, ``"dpo"``, ``"scpo"`` or ``"sl"``) with Ray Train; return what ran (also written to
    ``<out_dir>/train_result.json``).

    - ``out_dir``: default ``<run.output_dir>/<run.name>/<kind>``.
    - ``data``: a Parquet file or directory; default the seed split (``data.seed``) for sft, ``<run>/pairs`` for dpo,
      ``<run>/consensus`` for sl and scpo (a pseudo-labeling output's ``consensus/``).
    - ``init_adapter``: an adapter directory to continue. DPO and ScPO with ``dpo.reference=sft_adapter`` and SL with
      ``sl.init=sft_adapter`` default to ``<run>/sft/adapter``; with ``base`` they start a fresh adapter.
    - ``resume_from``: a checkpoint, or any directory above checkpoints (e.g. a previous ``out_dir``): the run
      continues from the latest one, step count included.
    - ``reference_adapter`` (DPO and ScPO with ``dpo.reference=sft_adapter``): the reference is a frozen copy of this
      adapter instead of the start adapter (later rounds: continue round k-1's adapter against the SFT adapter). It
      must have the start adapter's LoRA shape.
    - ``tracking`` (attrpipe.tracking.callback.worker_tracking): rank 0 logs the trainer's curves to that MLflow run.
    """
    import ray
    import ray.train
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if kind not in KINDS:
        raise ValueError(f"unknown training kind {kind!r}; one of {', '.join(KINDS)}")
    t0 = time.perf_counter()
    paths = default_paths(kind, cfg)
    out_dir = _abs(out_dir or paths["out_dir"])
    data = _abs(data or paths["data"])
    start = resolve_start(kind, cfg, init_adapter, paths["sft_adapter"], reference_adapter)
    if start.init_adapter is not None:
        adapter_path = _abs(start.init_adapter)
        if not storage.exists(storage.join(adapter_path, "adapter_config.json")):
            raise FileNotFoundError(
                f"{kind}: start adapter {adapter_path!r} has no adapter_config.json (train sft first, pass an "
                f"init adapter, or start from the base: {'sl.init' if kind == 'sl' else 'dpo.reference'}=base)"
            )
        ref_path = None if start.reference_adapter is None else _abs(start.reference_adapter)
        if ref_path is not None and not storage.exists(storage.join(ref_path, "adapter_config.json")):
            raise FileNotFoundError(f"{kind}: reference adapter {ref_path!r} has no adapter_config.json")
        start = type(start)(adapter_path, start.reference, ref_path)
    resume = find_resume_checkpoint(resume_from) if resume_from else None
    if _fault is None:
        _fault = fault_from_env(out_dir)
    hyper = hyperparameters(kind, cfg)
    tc = cfg.ray.train

    init_ray(cfg)

    _check_data_cpus(int(tc.num_workers) * float(tc.num_cpus_per_worker))
    n_records = count_records(kind, cfg, data)
    plan = plan_steps(
        n_records, workers=int(tc.num_workers), batch_size=hyper.batch_size,
        gradient_accumulation_steps=hyper.gradient_accumulation_steps, epochs=hyper.epochs,
        max_steps=hyper.max_steps,
    )
    records = training_records(kind, cfg, data, with_images=True)

    use_gpu = bool(tc.use_gpu)
    ds_conf = deepspeed_config(int(cfg.deepspeed.zero_stage), bf16=bool(cfg.deepspeed.bf16)) \
        if cfg.deepspeed.enabled else None
    job = {
        "kind": kind,
        "model": {"path": _abs(str(cfg.model.path)) if Path(str(cfg.model.path)).exists() else str(cfg.model.path),
                  "dtype": str(cfg.model.dtype), "trust_remote_code": bool(cfg.model.trust_remote_code)},
        "lora": None if kind in FULL_KINDS else OmegaConf.to_container(cfg.lora, resolve=True),
        "freeze_vision_tower": kind == "pretrain" and str(cfg.pretrain.vision_tower) == "freeze",
        "images": OmegaConf.to_container(cfg.images, resolve=True),
        "hyper": hyper.to_dict(),
        "plan": plan.to_dict(),
        "start": {"init_adapter": start.init_adapter, "reference": start.reference,
                  "reference_adapter": start.reference_adapter},
        "seed": int(cfg.run.seed),
        "bf16": bool(cfg.deepspeed.bf16),
        "use_gpu": use_gpu,
        "cpus_per_worker": float(tc.num_cpus_per_worker),
        "deepspeed": ds_conf,
        "checkpoints_to_keep": int(tc.checkpoints_to_keep),
        "shuffle_buffer_size": int(tc.shuffle_buffer_size),
        "resume_from": resume,
        "fault": _fault,
        "tracking": tracking,
        "progress": storage.join(out_dir, PROGRESS_FILE),
    }
    ray_storage = _abs(str(tc.storage_path)) if tc.storage_path else storage.join(out_dir, "ray")
    name = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    job["ray_run"] = storage.join(ray_storage, name)  # where a restarted worker group looks for checkpoints
    resources = {"CPU": float(tc.num_cpus_per_worker)}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=job,
        scaling_config=ScalingConfig(num_workers=int(tc.num_workers), use_gpu=use_gpu,
                                     resources_per_worker=resources),
        torch_config=TorchConfig(backend=str(tc.backend)),
        run_config=RunConfig(
            name=name,
            storage_path=ray_storage,
            failure_config=FailureConfig(max_failures=int(tc.max_failures)),
            checkpoint_config=CheckpointConfig(num_to_keep=int(tc.checkpoints_to_keep) + 1),
        ),
        datasets={"train": records},
        dataset_config=DataConfig(execution_options=ingest_options(bool(tc.preserve_order))),
    )
    with Progress(kind, _progress_poll(storage.join(out_dir, PROGRESS_FILE), plan.max_steps), unit="steps",
                  interval=2.0):
        result = trainer.fit()
    if result.error is not None:
        raise result.error
    final = result.checkpoint
    if final is None:
        raise RuntimeError(f"{kind}: the run {name} reported no checkpoint")

    with tempfile.TemporaryDirectory() as tmp:
        local = final.to_directory(tmp)
        marker = Path(local) / FINAL_CHECKPOINT_MARKER
        if not marker.is_file():
            raise RuntimeError(f"{kind}: the last checkpoint of {name} is not a final one ({final.path})")
        summary = json.loads(marker.read_text(encoding="utf-8"))
        dest = storage.join(out_dir, output_subdir(kind))
        storage.remove_tree(dest)
        storage.copy_tree(str(Path(local) / output_subdir(kind)), dest)
        storage.write_text_atomic(storage.join(out_dir, METRICS_FILE),
                                  (Path(local) / METRICS_FILE).read_text(encoding="utf-8"))

    out = {
        "kind": kind,
        "out_dir": out_dir,
        output_subdir(kind): storage.join(out_dir, output_subdir(kind)),
        "metrics": storage.join(out_dir, METRICS_FILE),
        "data": data,
        "records": n_records,
        "plan": plan.to_dict(),
        "hyper": hyper.to_dict(),
        "start": {"init_adapter": start.init_adapter, "reference": start.reference,
                  "reference_adapter": start.reference_adapter},
        "deepspeed": {"enabled": bool(cfg.deepspeed.enabled), "zero_stage": int(cfg.deepspeed.zero_stage),
                      "bf16": bool(cfg.deepspeed.bf16)},
        "workers": int(tc.num_workers),
        "use_gpu": use_gpu,
        "ray_run": storage.join(ray_storage, name),
        "resume_from": resume,
        **summary,
        "final_step": summary["global_step"],
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }
    storage.write_json_atomic(storage.join(out_dir, "train_result.json"), out)
    return out
