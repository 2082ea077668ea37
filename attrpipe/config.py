"""Configuration: a typed OmegaConf schema, loaded from conf/base.yaml + a preset + dotlist overrides.

``load_config("conf/tiny_cpu.yaml", ["consensus.threshold=0.7"])`` merges, in order:

1. the schema below (types only: every value is MISSING here, so conf/base.yaml is the one place defaults live),
2. ``conf/base.yaml`` (the ``base.yaml`` next to the preset, or the project's own),
3. the preset file (skipped when it *is* base.yaml),
4. the overrides.

An unknown key, a value of the wrong type, a value left unset or an impossible value raises :class:`ConfigError`
with a one-line message that starts with the key, e.g. ``consensus.threshold: must be in [0, 1], got 1.5``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from attrpipe.methods import METHODS, is_oracle, training_kind

# attrpipe.synth.catalog.TEACHERS and attrpipe.synth.vqa.REASONING, named here so that loading a configuration (and
# building the CLI) does not import the renderer (tests/test_pretrain.py checks that they agree)
SYNTHETIC_TEACHERS = ("explained", "evidence", "views", "descriptors")
PRETRAIN_REASONING = ("evidence", "explained", "descriptors")

__all__ = ["ConfigError", "load_config", "config_hash", "SYNTHETIC_TEACHERS", "PRETRAIN_REASONING",
           "drop_inert_defaults", "to_yaml", "PROJECT_CONF_DIR"]

PROJECT_CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """An invalid configuration; the message is one line and starts with the offending key."""


# --- schema (types only; values come from conf/base.yaml) ---------------------------------------------------------


@dataclass
class RunConf:
    name: str = MISSING
    output_dir: str = MISSING
    seed: int = MISSING


@dataclass
class ModelConf:
    path: str = MISSING
    dtype: str = MISSING
    trust_remote_code: bool = MISSING
    build_tiny: bool = MISSING


@dataclass
class LoraConf:
    r: int = MISSING
    alpha: int = MISSING
    dropout: float = MISSING
    target_modules: str = MISSING


@dataclass
class HttpConf:
    connect_timeout_s: float = MISSING
    read_timeout_s: float = MISSING
    total_timeout_s: float = MISSING
    retries: int = MISSING
    backoff_s: float = MISSING
    max_redirects: int = MISSING
    concurrency: int = MISSING
    allow_private_hosts: bool = MISSING
    allowed_hosts: List[str] = MISSING


@dataclass
class ImagesConf:
    max_images: int = MISSING
    size: int = MISSING
    max_pixels: int = MISSING
    max_bytes: int = MISSING
    allowed_schemes: List[str] = MISSING
    http: HttpConf = field(default_factory=HttpConf)


@dataclass
class TaxonomyConf:
    path: str = MISSING
    verticals: List[str] = MISSING
    skip_non_inferable: bool = MISSING
    category_question: bool = MISSING


@dataclass
class DataConf:
    root: str = MISSING
    seed: str = MISSING
    unlabeled: str = MISSING
    test: str = MISSING
    unlabeled_limit: Optional[int] = MISSING
    truth: Optional[str] = MISSING
    columns: Dict[str, str] = MISSING
    match_vertical_names: bool = MISSING


@dataclass
class SyntheticConf:
    listings: int = MISSING
    seed_per_vertical: int = MISSING
    test_per_vertical: int = MISSING
    max_views: int = MISSING
    difficulty: float = MISSING
    label_noise: float = MISSING
    teacher: str = "explained"
    min_views: int = 1
    view_noise: float = 0.0


@dataclass
class GenerationConf:
    engine: str = MISSING
    num_chains: int = MISSING
    temperature: float = MISSING
    top_p: float = MISSING
    max_new_tokens: int = MISSING
    batch_size: int = MISSING


@dataclass
class ConsensusConf:
    threshold: float = MISSING


@dataclass
class PseudolabelConf:
    listings_per_unit: int = MISSING
    output: Optional[str] = MISSING
    adapter: Optional[str] = MISSING
    round: int = MISSING


@dataclass
class SftConf:
    learning_rate: float = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    gradient_accumulation_steps: int = MISSING
    max_steps: int = MISSING
    save_steps: int = MISSING
    gradient_checkpointing: bool = MISSING


@dataclass
class DpoConf:
    beta: float = MISSING
    sft_weight: float = 0.0
    nll_weight: float = 1.0
    learning_rate: float = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    gradient_accumulation_steps: int = MISSING
    reference: str = MISSING
    max_steps: int = MISSING
    save_steps: int = MISSING
    gradient_checkpointing: bool = MISSING


@dataclass
class SlConf:
    learning_rate: float = MISSING
    epochs: int = MISSING
    init: str = MISSING
    max_steps: int = MISSING


@dataclass
class VisionStageConf:  # attrpipe synth pretrain's first stage: the vision tower on a direct objective
    examples: int = MISSING
    steps: int = MISSING
    batch_size: int = MISSING
    learning_rate: float = MISSING


@dataclass
class PretrainOptionsConf:  # what a product part/feature question offers (attrpipe.synth.vqa.Offer)
    attribute_values: int = MISSING
    distractors: float = MISSING


@dataclass
class PretrainConf(SftConf):  # the training knobs of SFT, plus what to build and render
    output: str = MISSING
    examples: int = MISSING
    eval_examples: int = MISSING
    image_size: int = MISSING
    text: Dict[str, Any] = MISSING
    vision: Dict[str, Any] = MISSING
    products: bool = MISSING
    schedule: Optional[List[str]] = None
    options: PretrainOptionsConf = field(default_factory=PretrainOptionsConf)
    reasoning: str = "evidence"
    vision_tower: str = "train"
    start_from: Optional[str] = None
    picture_labels: bool = False
    vision_stage: VisionStageConf = field(default_factory=VisionStageConf)


@dataclass
class LoopConf:
    rounds: int = MISSING
    method: str = MISSING
    seed_sft: bool = MISSING
    reference: str = MISSING


@dataclass
class StudyConf:
    thresholds: List[float] = MISSING
    pool_sizes: List[int] = MISSING
    methods: List[str] = MISSING
    seeds: List[int] = MISSING
    rounds: int = MISSING
    objective: str = "dpo"
    name: Optional[str] = None
    summary: Optional[str] = None
    max_concurrent_arms: Optional[int] = None


@dataclass
class PredictConf:
    mode: str = MISSING
    review_below: float = MISSING
    adapter: Optional[str] = MISSING
    output: Optional[str] = MISSING


@dataclass
class EvalConf:
    max_new_tokens: int = MISSING
    batch_size: int = MISSING
    fit: bool = MISSING
    vote: bool = MISSING
    pool_greedy: bool = MISSING


@dataclass
class TrackingConf:
    enabled: bool = MISSING
    uri: Optional[str] = MISSING
    experiment: Optional[str] = MISSING
    timeout_s: float = MISSING
    retries: int = MISSING
    adapter_max_mb: float = MISSING
    ui_url: Optional[str] = MISSING


@dataclass
class RayEngineConf:
    num_actors: int = MISSING
    num_gpus_per_actor: float = MISSING
    num_cpus_per_actor: float = MISSING
    tensor_parallel_size: int = MISSING
    units_in_flight: int = MISSING


@dataclass
class RayPreprocessConf:
    num_cpus_per_task: float = MISSING
    max_actors: Optional[int] = MISSING
    cpus_available: Optional[float] = MISSING


@dataclass
class RayTrainConf:
    num_workers: int = MISSING
    use_gpu: bool = MISSING
    num_cpus_per_worker: float = MISSING
    backend: str = MISSING
    max_failures: int = MISSING
    checkpoints_to_keep: int = MISSING
    storage_path: Optional[str] = MISSING
    shuffle_buffer_size: int = MISSING
    preserve_order: bool = MISSING


@dataclass
class RayConf:
    address: Optional[str] = MISSING
    engine: RayEngineConf = field(default_factory=RayEngineConf)
    preprocess: RayPreprocessConf = field(default_factory=RayPreprocessConf)
    train: RayTrainConf = field(default_factory=RayTrainConf)


@dataclass
class DeepSpeedConf:
    enabled: bool = MISSING
    zero_stage: int = MISSING
    bf16: bool = MISSING


@dataclass
class VllmConf:
    gpu_memory_utilization: float = MISSING
    max_model_len: int = MISSING
    enable_prefix_caching: bool = MISSING
    enable_chunked_prefill: bool = MISSING
    enforce_eager: bool = MISSING
    max_lora_rank: int = MISSING


@dataclass
class Config:
    run: RunConf = field(default_factory=RunConf)
    model: ModelConf = field(default_factory=ModelConf)
    lora: LoraConf = field(default_factory=LoraConf)
    images: ImagesConf = field(default_factory=ImagesConf)
    taxonomy: TaxonomyConf = field(default_factory=TaxonomyConf)
    data: DataConf = field(default_factory=DataConf)
    synthetic: SyntheticConf = field(default_factory=SyntheticConf)
    generation: GenerationConf = field(default_factory=GenerationConf)
    consensus: ConsensusConf = field(default_factory=ConsensusConf)
    pseudolabel: PseudolabelConf = field(default_factory=PseudolabelConf)
    sft: SftConf = field(default_factory=SftConf)
    dpo: DpoConf = field(default_factory=DpoConf)
    sl: SlConf = field(default_factory=SlConf)
    pretrain: PretrainConf = field(default_factory=PretrainConf)
    loop: LoopConf = field(default_factory=LoopConf)
    study: StudyConf = field(default_factory=StudyConf)
    predict: PredictConf = field(default_factory=PredictConf)
    eval: EvalConf = field(default_factory=EvalConf)
    tracking: TrackingConf = field(default_factory=TrackingConf)
    ray: RayConf = field(default_factory=RayConf)
    deepspeed: DeepSpeedConf = field(default_factory=DeepSpeedConf)
    vllm: VllmConf = field(default_factory=VllmConf)


# --- value rules ----------------------------------------------------------------------------------------------------

_CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("auto", "float32", "bfloat16", "float16"),
    "dpo.reference": ("sft_adapter", "base"),
    "loop.method": METHODS,
    "loop.reference": ("sft", "previous"),
    "predict.mode": ("greedy", "self_consistency"),
    "sl.init": ("sft_adapter", "base"),
    "ray.train.backend": ("nccl", "gloo"),
}
_CATALOG_COLUMNS = ("listing_id", "vertical", "image_uris", "image_bytes", "seller_attributes", "labels", "reasoning")
_KNOWN_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "abfs", "az", "http", "https")


def _ranges(c: DictConfig) -> list[tuple[str, bool, str]]:
    """(key, ok, what it must be) for every numeric rule."""
    return [
        ("run.seed", c.run.seed >= 0, "must be >= 0"),
        ("lora.r", c.lora.r >= 1, "must be >= 1"),
        ("lora.alpha", c.lora.alpha >= 1, "must be >= 1"),
        ("lora.dropout", 0.0 <= c.lora.dropout < 1.0, "must be in [0, 1)"),
        ("images.max_images", c.images.max_images >= 1, "must be >= 1"),
        ("images.size", c.images.size >= 28, "must be >= 28 (one merged vision patch)"),
        ("images.max_pixels", c.images.max_pixels >= c.images.size**2, "must be >= images.size squared"),
        ("images.max_bytes", c.images.max_bytes >= 1, "must be >= 1"),
        ("images.http.connect_timeout_s", c.images.http.connect_timeout_s > 0, "must be > 0"),
        ("images.http.read_timeout_s", c.images.http.read_timeout_s > 0, "must be > 0"),
        ("images.http.total_timeout_s", c.images.http.total_timeout_s > 0, "must be > 0"),
        ("images.http.retries", 0 <= c.images.http.retries <= 10, "must be in [0, 10]"),
        ("images.http.backoff_s", c.images.http.backoff_s >= 0, "must be >= 0"),
        ("images.http.max_redirects", 0 <= c.images.http.max_redirects <= 10, "must be in [0, 10]"),
        ("images.http.concurrency", c.images.http.concurrency >= 1, "must be >= 1"),
        ("synthetic.listings", c.synthetic.listings >= 0, "must be >= 0"),
        ("synthetic.seed_per_vertical", c.synthetic.seed_per_vertical >= 0, "must be >= 0"),
        ("synthetic.test_per_vertical", c.synthetic.test_per_vertical >= 0, "must be >= 0"),
        ("synthetic.max_views", 1 <= c.synthetic.max_views <= 20, "must be in [1, 20]"),
        ("synthetic.difficulty", 0.0 <= c.synthetic.difficulty <= 1.0, "must be in [0, 1]"),
        ("synthetic.label_noise", 0.0 <= c.synthetic.label_noise <= 1.0, "must be in [0, 1]"),
        ("synthetic.teacher", c.synthetic.teacher in SYNTHETIC_TEACHERS,
         f"must be one of {', '.join(SYNTHETIC_TEACHERS)}"),
        ("synthetic.min_views", 1 <= c.synthetic.min_views <= c.synthetic.max_views, "must be in [1, max_views]"),
        ("synthetic.view_noise", 0.0 <= c.synthetic.view_noise < 1.0, "must be in [0, 1)"),
        ("generation.num_chains", c.generation.num_chains >= 2, "must be >= 2 (consensus needs several chains)"),
        ("generation.temperature", c.generation.temperature > 0.0, "must be > 0 (sampling; eval is greedy)"),
        ("generation.top_p", 0.0 < c.generation.top_p <= 1.0, "must be in (0, 1]"),
        ("generation.max_new_tokens", c.generation.max_new_tokens >= 1, "must be >= 1"),
        ("generation.batch_size", c.generation.batch_size >= 1, "must be >= 1"),
        ("consensus.threshold", 0.0 <= c.consensus.threshold <= 1.0, "must be in [0, 1]"),
        ("pseudolabel.listings_per_unit", c.pseudolabel.listings_per_unit >= 1, "must be >= 1"),
        ("pseudolabel.round", c.pseudolabel.round >= 0, "must be >= 0"),
        ("pretrain.examples", c.pretrain.examples >= 1, "must be >= 1"),
        ("pretrain.eval_examples", c.pretrain.eval_examples >= 0, "must be >= 0"),
        ("pretrain.vision_stage.examples", c.pretrain.vision_stage.examples >= 0, "must be >= 0 (0: no vision stage)"),
        ("pretrain.vision_stage.steps", c.pretrain.vision_stage.steps >= 0, "must be >= 0"),
        ("pretrain.vision_stage.batch_size", c.pretrain.vision_stage.batch_size >= 1, "must be >= 1"),
        ("pretrain.vision_stage.learning_rate", c.pretrain.vision_stage.learning_rate > 0, "must be > 0"),
        ("pretrain.options.attribute_values",
         c.pretrain.options.attribute_values == 0 or c.pretrain.options.attribute_values >= 2,
         "must be 0 (every value of the attribute) or >= 2"),
        ("pretrain.options.distractors", 0.0 <= c.pretrain.options.distractors <= 1.0, "must be in [0, 1]"),
        ("pretrain.reasoning", c.pretrain.reasoning in PRETRAIN_REASONING,
         f"must be one of {', '.join(PRETRAIN_REASONING)}"),
        ("pretrain.vision_tower", c.pretrain.vision_tower in ("train", "freeze"), "must be train or freeze"),
        ("pretrain.vision_tower", c.pretrain.vision_tower != "freeze"
         or (c.pretrain.vision_stage.examples > 0 and c.pretrain.vision_stage.steps > 0),
         "freeze keeps the tower the vision stage trained: it needs pretrain.vision_stage.examples and steps > 0"),
        ("pretrain.image_size", c.pretrain.image_size >= 28, "must be >= 28 (one merged vision patch)"),
        ("pretrain.learning_rate", c.pretrain.learning_rate > 0, "must be > 0"),
        ("pretrain.epochs", c.pretrain.epochs >= 1, "must be >= 1"),
        ("pretrain.batch_size", c.pretrain.batch_size >= 1, "must be >= 1"),
        ("pretrain.gradient_accumulation_steps", c.pretrain.gradient_accumulation_steps >= 1, "must be >= 1"),
        ("sft.learning_rate", c.sft.learning_rate > 0, "must be > 0"),
        ("sft.epochs", c.sft.epochs >= 1, "must be >= 1"),
        ("sft.batch_size", c.sft.batch_size >= 1, "must be >= 1"),
        ("sft.gradient_accumulation_steps", c.sft.gradient_accumulation_steps >= 1, "must be >= 1"),
        ("dpo.beta", c.dpo.beta > 0, "must be > 0"),
        ("dpo.sft_weight", c.dpo.sft_weight >= 0, "must be >= 0 (0: the paper's DPO loss alone)"),
        ("dpo.nll_weight", c.dpo.nll_weight >= 0, "must be >= 0 (the NLL weight of dpo-nll and scpo; 0: none)"),
        ("dpo.learning_rate", c.dpo.learning_rate > 0, "must be > 0"),
        ("dpo.epochs", c.dpo.epochs >= 1, "must be >= 1"),
        ("dpo.batch_size", c.dpo.batch_size >= 1, "must be >= 1"),
        ("dpo.gradient_accumulation_steps", c.dpo.gradient_accumulation_steps >= 1, "must be >= 1"),
        ("sl.learning_rate", c.sl.learning_rate > 0, "must be > 0"),
        ("sl.epochs", c.sl.epochs >= 1, "must be >= 1"),
        ("sft.max_steps", c.sft.max_steps == -1 or c.sft.max_steps >= 1, "must be -1 (from epochs) or >= 1"),
        ("sft.save_steps", c.sft.save_steps >= 1, "must be >= 1"),
        ("dpo.max_steps", c.dpo.max_steps == -1 or c.dpo.max_steps >= 1, "must be -1 (from epochs) or >= 1"),
        ("dpo.save_steps", c.dpo.save_steps >= 1, "must be >= 1"),
        ("sl.max_steps", c.sl.max_steps == -1 or c.sl.max_steps >= 1, "must be -1 (from epochs) or >= 1"),
        ("loop.rounds", c.loop.rounds >= 0, "must be >= 0"),
        ("data.unlabeled_limit", c.data.unlabeled_limit is None or c.data.unlabeled_limit >= 1,
         "must be null (the whole pool) or >= 1"),
        ("study.thresholds", len(c.study.thresholds) >= 1 and all(0.0 <= t <= 1.0 for t in c.study.thresholds),
         "must be a non-empty list of values in [0, 1]"),
        ("study.pool_sizes", len(c.study.pool_sizes) >= 1 and all(n >= 1 for n in c.study.pool_sizes),
         "must be a non-empty list of sizes >= 1"),
        ("study.methods", len(c.study.methods) >= 1 and set(c.study.methods) <= set(METHODS)
         and len(set(c.study.methods)) == len(c.study.methods),
         f"must be a non-empty list of distinct {', '.join(METHODS)}"),
        ("study.seeds", len(c.study.seeds) >= 1 and len(set(c.study.seeds)) == len(c.study.seeds)
         and all(x >= 0 for x in c.study.seeds), "must be a non-empty list of distinct seeds >= 0"),
        ("study.rounds", c.study.rounds >= 1, "must be >= 1"),
        ("study.max_concurrent_arms", c.study.max_concurrent_arms is None or c.study.max_concurrent_arms >= 1,
         "must be null (as many arms at once as fit in the cluster) or >= 1"),
        ("study.objective", c.study.objective in METHODS and not is_oracle(c.study.objective)
         and training_kind(c.study.objective) != "sl", "must be a preference method (dpo or another objective of "
         "attrpipe.methods, not sl or an oracle)"),
        ("predict.review_below", 0.0 <= c.predict.review_below <= 1.0, "must be in [0, 1]"),
        ("eval.max_new_tokens", c.eval.max_new_tokens >= 1, "must be >= 1"),
        ("eval.batch_size", c.eval.batch_size >= 1, "must be >= 1"),
        ("tracking.uri", c.tracking.uri is None or bool(str(c.tracking.uri).strip()),
         "must be null (the environment's MLFLOW_TRACKING_URI, else a local store) or a tracking URI"),
        ("tracking.experiment", c.tracking.experiment is None or bool(str(c.tracking.experiment).strip()),
         "must be null (run.name) or a name"),
        ("tracking.timeout_s", c.tracking.timeout_s > 0, "must be > 0"),
        ("tracking.retries", 0 <= c.tracking.retries <= 10, "must be in [0, 10]"),
        ("tracking.adapter_max_mb", c.tracking.adapter_max_mb >= 0, "must be >= 0 (0: adapters by their path only)"),
        ("ray.engine.num_actors", c.ray.engine.num_actors >= 1, "must be >= 1"),
        ("ray.engine.num_gpus_per_actor", c.ray.engine.num_gpus_per_actor >= 0, "must be >= 0"),
        ("ray.engine.num_cpus_per_actor", c.ray.engine.num_cpus_per_actor > 0, "must be > 0"),
        ("ray.engine.tensor_parallel_size", c.ray.engine.tensor_parallel_size >= 1, "must be >= 1"),
        ("ray.engine.units_in_flight", c.ray.engine.units_in_flight >= 1, "must be >= 1"),
        ("ray.preprocess.num_cpus_per_task", c.ray.preprocess.num_cpus_per_task > 0, "must be > 0"),
        ("ray.preprocess.max_actors", c.ray.preprocess.max_actors is None or c.ray.preprocess.max_actors >= 1,
         "must be null (scale with the work) or >= 1"),
        ("ray.preprocess.cpus_available", c.ray.preprocess.cpus_available is None
         or c.ray.preprocess.cpus_available > 0, "must be null (the cluster's CPUs) or > 0"),
        ("ray.train.num_workers", c.ray.train.num_workers >= 1, "must be >= 1"),
        ("ray.train.num_cpus_per_worker", c.ray.train.num_cpus_per_worker > 0, "must be > 0"),
        ("ray.train.max_failures", c.ray.train.max_failures >= -1, "must be >= -1 (-1: retry forever)"),
        ("ray.train.checkpoints_to_keep", c.ray.train.checkpoints_to_keep >= 1, "must be >= 1"),
        ("ray.train.shuffle_buffer_size", c.ray.train.shuffle_buffer_size >= 0, "must be >= 0 (0: no shuffle)"),
        ("deepspeed.zero_stage", c.deepspeed.zero_stage in (2, 3), "must be 2 or 3"),
        ("vllm.gpu_memory_utilization", 0.0 < c.vllm.gpu_memory_utilization <= 1.0, "must be in (0, 1]"),
        ("vllm.max_model_len", c.vllm.max_model_len >= 1, "must be >= 1"),
        ("vllm.max_lora_rank", c.vllm.max_lora_rank >= c.lora.r, "must be >= lora.r (vLLM must fit the adapter)"),
    ]


def _validate(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]}: no value set (every key needs one; see conf/base.yaml)")
    for key, ok, rule in _ranges(cfg):
        if not ok:
            raise ConfigError(f"{key}: {rule}, got {OmegaConf.select(cfg, key)!r}")
    for key, choices in _CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {value!r}")
    for key, methods in (("loop.method", [cfg.loop.method]), ("study.methods", list(cfg.study.methods))):
        oracle = [m for m in methods if is_oracle(m)]
        if oracle and not cfg.data.truth:
            raise ConfigError(f"{key}: {oracle[0]} (a diagnostic ceiling, not the method) scores the chains against "
                              "the true labels of the pool, and data.truth is not set")
    engine = cfg.generation.engine
    if engine not in ("vllm", "hf") and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", engine):
        raise ConfigError(f"generation.engine: must be vllm, hf or package.module:Class, got {engine!r}")
    if engine == "hf" and cfg.ray.engine.units_in_flight > 1:
        raise ConfigError("ray.engine.units_in_flight: more than one unit in flight needs an engine that generates "
                          f"asynchronously (vllm); hf works on one unit at a time, got {cfg.ray.engine.units_in_flight}")
    for name, col in cfg.data.columns.items():
        if name not in _CATALOG_COLUMNS:
            raise ConfigError(f"data.columns.{name}: not a column attrpipe reads; map one of "
                              f"{', '.join(_CATALOG_COLUMNS)} to your file's column name")
        if not col or not str(col).strip():
            raise ConfigError(f"data.columns.{name}: must name a column of the files, got {col!r}")
    files_cols = list(cfg.data.columns.values())
    if len(set(files_cols)) != len(files_cols):
        raise ConfigError(f"data.columns: two of attrpipe's columns are mapped to the same column ({files_cols})")
    for s in cfg.images.allowed_schemes:
        if s not in _KNOWN_SCHEMES:
            raise ConfigError(f"images.allowed_schemes: unknown scheme {s!r}; known: {', '.join(_KNOWN_SCHEMES)}")
    try:
        re.compile(cfg.lora.target_modules)
    except re.error as e:
        raise ConfigError(f"lora.target_modules: not a valid regular expression ({e})") from None
    for key in ("run.name",):
        value = OmegaConf.select(cfg, key)
        if not value or "/" in value or value in (".", ".."):
            raise ConfigError(f"{key}: must be a non-empty name without '/', got {value!r}")


def _one_line(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None) or "config"
    msg = str(e).splitlines()[0].strip() if str(e) else type(e).__name__
    return f"{key}: {msg}"


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """Load, merge and validate a configuration. ``path=None`` means conf/base.yaml alone."""
    base = PROJECT_CONF_DIR / "base.yaml"
    layers: list[Any] = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config: file {str(path)!r} does not exist")
        sibling = path.parent / "base.yaml"
        base = sibling if sibling.is_file() else base
    try:
        layers.append(OmegaConf.load(base))
        if path is not None and path.resolve() != base.resolve():
            layers.append(OmegaConf.load(path))
        for o in overrides:
            if "=" not in o:
                raise ConfigError(f"{o}: an override must look like key=value")
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        cfg = OmegaConf.merge(OmegaConf.structured(Config), *layers)
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from None
    except Exception as e:  # yaml syntax errors and the like
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"config: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    _validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def drop_inert_defaults(c: dict) -> dict:
    """A resolved config container without the settings that were added later and change no result at their
    defaults: ``images.http`` while no http(s) scheme is allowed, ``data.columns`` when empty,
    ``data.match_vertical_names`` when true, ``dpo.sft_weight`` when 0, ``dpo.nll_weight`` when 1 (read by the methods
    dpo-nll and scpo only, which came with it). Keys of results (a loop's, a pseudo-labeling run's) leave them out,
    so runs written before they existed are resumed, not refused."""
    c = dict(c)
    images = dict(c.get("images") or {})
    if not any(s in ("http", "https") for s in images.get("allowed_schemes", [])):
        images.pop("http", None)
    if images:
        c["images"] = images
    data = dict(c.get("data") or {})
    if not data.get("columns"):
        data.pop("columns", None)
    if data.get("match_vertical_names", True):
        data.pop("match_vertical_names", None)
    if data:
        c["data"] = data
    dpo = dict(c.get("dpo") or {})
    if not dpo.get("sft_weight"):
        dpo.pop("sft_weight", None)
    if dpo.get("nll_weight", 1.0) == 1.0:
        dpo.pop("nll_weight", None)
    if dpo:
        c["dpo"] = dpo
    return c


def config_hash(cfg: DictConfig) -> str:
    """A stable short hash of the resolved configuration (for manifests and caches)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:16]
