"""What a training run will do, decided from the configuration alone: hyperparameters, step counts, where the policy
starts and what the DPO reference is, the DeepSpeed config, the default paths, and which checkpoint to resume from.

Plain functions (no Ray, no model); :mod:`attrpipe.train.driver` and :mod:`attrpipe.train.worker` only execute the
plan.
"""

from __future__ import annotations

import json
import math
import posixpath
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "KINDS",
    "FULL_KINDS",
    "PREFERENCE_KINDS",
    "output_subdir",
    "Hyper",
    "StepPlan",
    "Start",
    "hyperparameters",
    "plan_steps",
    "resolve_start",
    "deepspeed_config",
    "default_paths",
    "find_resume_checkpoint",
    "checkpoint_step",
]

KINDS = ("sft", "dpo", "sl", "pretrain", "scpo")
# scpo: Self-Consistency Preference Optimization (attrpipe.objectives) on consensus/ shards, with DPO's knobs (dpo.*)
PREFERENCE_KINDS = ("dpo", "scpo")
# pretrain: every weight of the model trains on ready-made records (``attrpipe synth pretrain``); no adapter.
FULL_KINDS = ("pretrain",)


@dataclass(frozen=True)
class Hyper:
    learning_rate: float
    epochs: int
    batch_size: int  # per worker
    gradient_accumulation_steps: int
    max_steps: int  # -1: from epochs
    save_steps: int
    gradient_checkpointing: bool
    beta: float | None = None  # DPO and ScPO only
    # DPO and ScPO only: weight of an SFT (negative log-likelihood) term on the chosen chains; dpo: dpo.sft_weight,
    # scpo: dpo.nll_weight (its alpha, a length-normalised NLL)
    sft_weight: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def hyperparameters(kind: str, cfg) -> Hyper:
    """Per-kind knobs. Self-learning is SFT on other data: its learning rate, epochs and max_steps are ``sl.*``; batch
    size, accumulation, checkpoint interval and gradient checkpointing are the SFT ones."""
    if kind == "sft":
        s = cfg.sft
        return Hyper(s.learning_rate, s.epochs, s.batch_size, s.gradient_accumulation_steps, s.max_steps,
                     s.save_steps, s.gradient_checkpointing)
    if kind == "sl":
        s = cfg.sft
        return Hyper(cfg.sl.learning_rate, cfg.sl.epochs, s.batch_size, s.gradient_accumulation_steps,
                     cfg.sl.max_steps, s.save_steps, s.gradient_checkpointing)
    if kind in PREFERENCE_KINDS:
        d = cfg.dpo
        return Hyper(d.learning_rate, d.epochs, d.batch_size, d.gradient_accumulation_steps, d.max_steps,
                     d.save_steps, d.gradient_checkpointing, beta=d.beta,
                     sft_weight=d.nll_weight if kind == "scpo" else d.sft_weight)
    if kind == "pretrain":
        s = cfg.pretrain
        return Hyper(s.learning_rate, s.epochs, s.batch_size, s.gradient_accumulation_steps, s.max_steps,
                     s.save_steps, s.gradient_checkpointing)
    raise ValueError(f"unknown training kind {kind!r}; one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class StepPlan:
    examples: int  # records in the whole training set
    workers: int
    per_worker: int  # records each worker sees per pass (Ray's equal streaming split drops the remainder)
    batches_per_pass: int  # micro-batches per worker per pass over the data
    steps_per_epoch: int  # optimizer steps per pass
    max_steps: int  # optimizer steps of the whole run
    passes: int  # passes over the data the worker's stream provides (>= epochs when max_steps asks for more)

    def to_dict(self) -> dict:
        return asdict(self)


def plan_steps(
    examples: int, *, workers: int, batch_size: int, gradient_accumulation_steps: int, epochs: int, max_steps: int = -1
) -> StepPlan:
    """Optimizer steps of a data-parallel run over ``examples`` records.

    Each worker gets ``examples // workers`` records per pass; a pass is ``ceil(per_worker / batch_size)``
    micro-batches (the last one may be smaller) and ``floor(batches / accumulation)`` optimizer steps. ``max_steps``
    (when not -1) overrides ``epochs``; the data stream then repeats as often as needed.
    """
    if workers < 1 or batch_size < 1 or gradient_accumulation_steps < 1 or epochs < 1:
        raise ValueError("workers, batch_size, gradient_accumulation_steps and epochs must be >= 1")
    per_worker = examples // workers
    if per_worker < 1:
        raise ValueError(f"{examples} training examples cannot feed {workers} workers (need at least one each)")
    batches = math.ceil(per_worker / batch_size)
    if batches < gradient_accumulation_steps:
        raise ValueError(
            f"{per_worker} examples per worker make {batches} micro-batches of {batch_size}, fewer than "
            f"gradient_accumulation_steps={gradient_accumulation_steps}: not one optimizer step per pass"
        )
    steps_per_epoch = batches // gradient_accumulation_steps
    total = max_steps if max_steps > 0 else epochs * steps_per_epoch
    passes = math.ceil(total / steps_per_epoch)
    return StepPlan(examples, workers, per_worker, batches, steps_per_epoch, total, passes)


@dataclass(frozen=True)
class Start:
    """Where the policy starts and, for DPO, what the frozen reference is.

    - ``init_adapter=None``: a fresh LoRA adapter (``lora.*``) on the pretrained checkpoint. For DPO the reference is
      then the base with the adapter disabled (``reference="base"``, the paper's "PT" start).
    - ``init_adapter=PATH``: training continues that adapter. For DPO the reference is a frozen copy of it
      (``reference="sft_adapter"``, the paper's "Peft-10" start), or of ``reference_adapter`` when given (later
      rounds: continue the previous round's adapter, scored against the frozen SFT adapter). Either way no second
      full model is loaded.
    """

    init_adapter: str | None
    reference: str | None  # DPO: "base" | "sft_adapter"; SFT and SL: None
    reference_adapter: str | None = None  # DPO "sft_adapter": the adapter whose frozen copy is the reference


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.rstrip("/") == b.rstrip("/")


def resolve_start(
    kind: str, cfg, init_adapter: str | None, default_sft_adapter: str, reference_adapter: str | None = None
) -> Start:
    if reference_adapter is not None and kind not in PREFERENCE_KINDS:
        raise ValueError(f"{kind}: a reference adapter is for DPO only (the kinds dpo and scpo)")
    if kind == "sft":
        return Start(init_adapter, None)
    if kind == "pretrain":
        if init_adapter is not None:
            raise ValueError("pretrain trains every weight of the model; it takes no adapter")
        return Start(None, None)
    if kind in PREFERENCE_KINDS:  # ScPO: DPO's reference handling, dpo.reference
        ref = cfg.dpo.reference
        if ref == "base":
            if init_adapter is not None or reference_adapter is not None:
                raise ValueError(
                    "dpo.reference=base starts from the pretrained checkpoint with a fresh adapter (reference: the "
                    "base with the adapter disabled); it takes no init adapter. Use dpo.reference=sft_adapter to "
                    "start from a trained adapter (reference: its frozen copy)."
                )
            return Start(None, "base")
        start = init_adapter or default_sft_adapter
        ref_adapter = None if reference_adapter is None or _same(reference_adapter, start) else reference_adapter
        return Start(start, "sft_adapter", ref_adapter)
    if kind == "sl":
        if cfg.sl.init == "base":
            if init_adapter is not None:
                raise ValueError("sl.init=base trains a fresh adapter; it takes no init adapter")
            return Start(None, None)
        return Start(init_adapter or default_sft_adapter, None)
    raise ValueError(f"unknown training kind {kind!r}; one of {', '.join(KINDS)}")


def deepspeed_config(zero_stage: int, *, bf16: bool) -> dict[str, Any]:
    """The DeepSpeed config handed to the HF/TRL trainer. Sizes, clipping and accumulation are ``"auto"``: the trainer
    fills them from its own arguments, so the two can never disagree.

    ZeRO-3 gathers the 16-bit weights when saving, so the saved adapter is whole. The optimizer is torch's (the
    trainer's AdamW), allowed with ZeRO on any device (``zero_force_ds_cpu_optimizer: false``); bf16 is DeepSpeed's
    mixed precision (fp32 master weights), fp16 is never used.
    """
    if zero_stage not in (2, 3):
        raise ValueError(f"zero_stage must be 2 or 3, got {zero_stage}")
    zero: dict[str, Any] = {"stage": zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": zero,
        "bf16": {"enabled": bool(bf16)},
        "fp16": {"enabled": False},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def output_subdir(kind: str) -> str:
    """Where a run's result lands inside its output directory: ``adapter`` (LoRA kinds) or ``model`` (pretrain)."""
    return "model" if kind in FULL_KINDS else "adapter"


def default_paths(kind: str, cfg) -> dict[str, str]:
    """``<run.output_dir>/<run.name>/<kind>`` for outputs; inputs: the seed split for SFT, ``<run>/pairs`` for DPO,
    ``<run>/consensus`` for self-learning and ScPO, ``<pretrain.output>/data/train`` for pretrain; the SFT adapter at
    ``<run>/sft/adapter``."""
    if kind not in KINDS:
        raise ValueError(f"unknown training kind {kind!r}; one of {', '.join(KINDS)}")
    run_dir = posixpath.join(str(cfg.run.output_dir), str(cfg.run.name))
    data = {"sft": str(cfg.data.seed), "dpo": posixpath.join(run_dir, "pairs"), "sl": posixpath.join(run_dir, "consensus"),
            "scpo": posixpath.join(run_dir, "consensus"),
            "pretrain": posixpath.join(str(cfg.pretrain.output), "data", "train")}
    return {
        "run_dir": run_dir,
        "out_dir": posixpath.join(str(cfg.pretrain.output), "train") if kind == "pretrain" else posixpath.join(run_dir, kind),
        "data": data[kind],
        "sft_adapter": posixpath.join(run_dir, "sft", "adapter"),
    }


_TRAINER_STATE = "trainer_state.json"


def checkpoint_step(path: str | Path) -> int | None:
    """The global step of a checkpoint directory (local or URI): an HF checkpoint (``trainer_state.json``) or a Ray
    Train checkpoint holding one under ``checkpoint/``; None if it is neither."""
    from attrpipe import storage

    p = str(path)
    for f in (storage.join(p, _TRAINER_STATE), storage.join(p, "checkpoint", _TRAINER_STATE)):
        try:
            if not storage.exists(f):
                continue
            return int(storage.read_json(f)["global_step"])
        except (ValueError, KeyError, OSError):
            return None
    return None


def find_resume_checkpoint(path: str | Path) -> str:
    """The checkpoint to resume from, given a checkpoint or any directory above checkpoints, local or URI.

    ``path`` may be an HF checkpoint (``trainer_state.json``), a Ray Train checkpoint (``checkpoint_*/checkpoint/``),
    a Ray run directory, or a training output directory (``<run>/sft``): the *complete* checkpoint
    (:func:`attrpipe.train.checkpoints.checkpoint_problems`) with the highest global step found below it wins; one
    left half-written by a killed process is passed over. A checkpoint named directly must be complete.
    """
    from attrpipe import storage
    from attrpipe.train.checkpoints import checkpoint_problems

    s = str(path)
    if not storage.exists(s):
        raise FileNotFoundError(f"resume path {s!r} does not exist")
    if checkpoint_step(s) is not None or storage.exists(storage.join(s, "checkpoint")):
        problems = checkpoint_problems(s)
        if problems:
            raise ValueError(f"checkpoint {s!r} is incomplete: {'; '.join(problems)}")
        return s
    found: dict[str, int] = {}
    for state in storage.find_files(s, _TRAINER_STATE):
        ckpt = posixpath.dirname(state)
        # A Ray checkpoint wraps the HF one as <ray ckpt>/checkpoint/; prefer the Ray directory (what Ray reports).
        if posixpath.basename(ckpt) == "checkpoint":
            ckpt = posixpath.dirname(ckpt)
        step = checkpoint_step(ckpt)
        if step is not None:
            found[ckpt] = step
    skipped = []
    for ckpt, _ in sorted(found.items(), key=lambda kv: (kv[1], kv[0]), reverse=True):
        problems = checkpoint_problems(ckpt)
        if not problems:
            return ckpt
        skipped.append(f"{ckpt} ({problems[0]})")
    if skipped:
        raise FileNotFoundError(f"no complete training checkpoint under {s!r}; incomplete: {', '.join(skipped)}")
    raise FileNotFoundError(f"no training checkpoint (trainer_state.json) under {s!r}")
