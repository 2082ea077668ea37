"""The TRL side of training: the trainer arguments, the policy model, the trainer, the batch collation of Ray Data
records, and the Ray Train loop that runs on every worker.

Everything model-specific goes through :mod:`attrpipe.models.loader`; everything data-specific through
:mod:`attrpipe.train.examples`. :func:`build_trainer` is also what the benchmark uses (without Ray).

How data reaches the trainer on a worker: the worker's Ray Data shard (``ray.train.get_dataset_shard("train")``)
is iterated with ``iter_torch_batches``, whose ``collate_fn`` (:class:`RecordCollator`) decodes the batch's images
and calls *TRL's own* vision collator (``trainer.data_collator``); ``prepare_trainer`` then makes the trainer take
those ready batches as they come, without re-sharding them (each worker already has its own shard). TRL's
constructors insist on a ``datasets`` dataset and look at one example to pick their vision path, so they are built
with a one-example probe dataset of the right shape, which the Ray iterable replaces before training.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from attrpipe import storage
from attrpipe.train.examples import dpo_example, scpo_example, sft_example

__all__ = [
    "trl_args",
    "load_policy",
    "dpo_loss",
    "load_reference_adapter",
    "build_trainer",
    "export_trained",
    "decode_images",
    "RecordCollator",
    "probe_dataset",
    "train_loop_per_worker",
    "step_logs",
    "FINAL_CHECKPOINT_MARKER",
]

log = logging.getLogger("attrpipe.train")

FINAL_CHECKPOINT_MARKER = "attrpipe_final.json"
METRICS_FILE = "metrics.jsonl"


# --- trainer pieces (no Ray) ----------------------------------------------------------------------------------------


def trl_args(
    kind: str,
    hyper: dict,
    *,
    output_dir: str,
    max_steps: int,
    seed: int,
    bf16: bool,
    use_cpu: bool,
    deepspeed: dict | None,
    save_total_limit: int = 2,
    **overrides: Any,
):
    """``SFTConfig`` (sft, sl, pretrain) or ``DPOConfig`` (dpo, scpo) for one run.

    ``max_length=None``: nothing is truncated, so image tokens are never cut. Loss on the completion only (SFT's
    prompt-completion format). Logging every step (the metrics file is the trainer's log history).
    """
    common = dict(
        output_dir=output_dir,
        per_device_train_batch_size=int(hyper["batch_size"]),
        gradient_accumulation_steps=int(hyper["gradient_accumulation_steps"]),
        learning_rate=float(hyper["learning_rate"]),
        max_steps=int(max_steps),
        logging_steps=1,
        save_strategy="steps",
        save_steps=int(hyper["save_steps"]),
        save_total_limit=save_total_limit,
        seed=int(seed),
        data_seed=int(seed),
        bf16=bool(bf16),
        fp16=False,
        use_cpu=bool(use_cpu),
        deepspeed=deepspeed,
        gradient_checkpointing=bool(hyper["gradient_checkpointing"]),
        max_length=None,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    common.update(overrides)
    if kind in ("sft", "sl", "pretrain"):
        from trl import SFTConfig

        return SFTConfig(completion_only_loss=True, **common)
    if kind in ("dpo", "scpo"):  # scpo: the same config; ScPOTrainer reads its NLL weight from the loss weights
        from trl import DPOConfig

        return DPOConfig(beta=float(hyper["beta"]), precompute_ref_log_probs=False, **dpo_loss(hyper), **common)
    raise ValueError(f"unknown training kind {kind!r}")


def dpo_loss(hyper: dict) -> dict:
    """TRL's loss arguments for DPO: the paper's sigmoid loss alone, or (``sft_weight`` > 0) TRL's multi-loss sum with
    an SFT term on the chosen chains (the RPO recipe: it keeps the preferred chains likely while the margin grows,
    so that DPO does not lower both chains and break the answer's format). The method ``dpo-nll`` (IRPO) is this with
    ``dpo.sft_weight`` = ``dpo.nll_weight``; ScPO reads ``[1, w]`` as its DPO and NLL weights (attrpipe.train.scpo).

    How TRL 1.16 normalises its ``"sft"`` term (trl/trainer/dpo_trainer.py, ``_compute_loss``): it is
    ``-chosen_per_token_logps[chosen_mask].mean()``, the chosen chains' NLL per token, averaged over every chosen
    token of the micro-batch together (total NLL / total chosen tokens), so it *is* length-normalised, but pooled:
    a long chosen chain weighs more than a short one. IRPO's NLL(y+)/|y+| averages each chain's own mean; the two are
    equal when the chosen chains of a micro-batch have one length (always at batch size 1). ScPO's term is the
    per-example form."""
    weight = float(hyper.get("sft_weight") or 0.0)
    if weight < 0:
        raise ValueError(f"dpo.sft_weight must be >= 0, got {weight}")
    if weight == 0:
        return {"loss_type": ["sigmoid"]}
    return {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, weight]}


def load_policy(model_cfg: dict, lora_cfg: dict | None, init_adapter: str | None, *,
                freeze_vision_tower: bool = False):
    """(model, peft_config): the pretrained checkpoint with a fresh LoRA config for the trainer to apply, or a
    ``PeftModel`` continuing ``init_adapter`` (its LoRA weights trainable, everything else frozen). ``lora_cfg=None``
    (pretrain): the checkpoint itself, every weight trainable, no adapter; with ``freeze_vision_tower`` every weight but
    the vision tower's patch embedding and blocks (:func:`_freeze_vision_tower`)."""
    from attrpipe.models.loader import load_model, lora_config

    model = load_model(
        model_cfg["path"],
        dtype=model_cfg["dtype"],
        trust_remote_code=bool(model_cfg["trust_remote_code"]),
        adapter=init_adapter,
        adapter_trainable=init_adapter is not None,
    )
    if init_adapter is not None:
        return model, None
    model.train()
    if lora_cfg is None:
        model.requires_grad_(True)
        if freeze_vision_tower:
            _freeze_vision_tower(model)
        return model, None
    return model, lora_config(
        r=int(lora_cfg["r"]),
        alpha=int(lora_cfg["alpha"]),
        dropout=float(lora_cfg["dropout"]),
        target_modules=lora_cfg["target_modules"],
    )


def _freeze_vision_tower(model) -> None:
    """Freeze the vision tower's patch embedding and blocks, leaving its merger (the projection of the merged image
    tokens into the language model) trainable: LLaVA's recipe for a tower that already sees."""
    visual = model.model.visual
    visual.requires_grad_(False)
    visual.merger.requires_grad_(True)


def probe_dataset(kind: str):
    """A one-example ``datasets.IterableDataset`` of the right shape (vision, conversational, prompt-completion or
    preference) for TRL's constructor; never trained on."""
    import datasets

    record = {"example_id": "probe", "prompt": "probe", "completion": "probe", "chosen": "a", "rejected": "b",
              "weight": 1.0}
    example = {"dpo": dpo_example, "scpo": scpo_example}.get(kind, sft_example)(record, [])
    return datasets.IterableDataset.from_generator(_one, gen_kwargs={"example": example})


def _one(example):
    yield example


def build_trainer(kind: str, *, model, peft_config, processor, args, train_dataset, callbacks: Iterable = ()):
    """TRL's ``SFTTrainer`` (sft, sl, pretrain), ``DPOTrainer`` (dpo) or its subclass
    :class:`attrpipe.train.scpo.ScPOTrainer` (scpo).

    DPO's reference (never a second model): with ``peft_config`` (a fresh adapter on the base) it is the base with the
    adapter disabled; with a ``PeftModel`` continuing a trained adapter, TRL adds a frozen copy of that adapter named
    ``ref`` and uses it.
    """
    if kind in ("sft", "sl", "pretrain"):
        from trl import SFTTrainer

        trainer, extra = SFTTrainer, {}
    elif kind == "dpo":
        from trl import DPOTrainer

        trainer, extra = DPOTrainer, {"ref_model": None}
    elif kind == "scpo":
        from attrpipe.train.scpo import ScPOTrainer

        trainer, extra = ScPOTrainer, {"ref_model": None}
    else:
        raise ValueError(f"unknown training kind {kind!r}")
    return trainer(model=model, args=args, train_dataset=train_dataset, processing_class=processor,
                   peft_config=peft_config, callbacks=list(callbacks), **extra)


def load_reference_adapter(model, path: str) -> None:
    """Make DPO's frozen reference adapter (TRL's ``ref``, a copy of the start adapter) a copy of another adapter.

    Called after the trainer is built and before training (the weights are not sharded yet). The two adapters must
    have the same LoRA shape (rank, target modules).
    """
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    if "ref" not in getattr(model, "peft_config", {}):
        raise ValueError("the policy has no 'ref' adapter: a reference adapter needs a PeftModel start")
    from attrpipe.storage import local_copy

    weights = load_peft_weights(local_copy(path))
    result = set_peft_model_state_dict(model, weights, adapter_name="ref")
    bad = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if bad:
        raise ValueError(f"reference adapter {path!r} does not fit the start adapter (unexpected: {bad[:3]})")


_MODEL_FILES = ("adapter_config.json", "config.json", "generation_config.json", "README.md")  # what save_model
# writes beside the safetensors; a checkpoint's other files (optimizer, scheduler, RNG, trainer state) are not the model


def export_trained(saved_dir: str | Path, processor, dest: str | Path, *, full_model: bool = False) -> Path:
    """The shipped directory from what ``trainer.save_model(saved_dir)`` wrote, plus the processor and tokenizer
    files; never the trainer's pickled ``training_args.bin``.

    - An adapter (default): PEFT's adapter_config.json + adapter_model.safetensors of the trained ("default") adapter
      only, never TRL's frozen ``ref`` copy. peft and vLLM's LoRA loading read it as it is.
    - ``full_model`` (pretrain): config, generation config and safetensors weights.
      :func:`attrpipe.models.loader.load_model` reads it like any checkpoint.
    """
    dest = Path(dest)
    dropped = ("training_args.bin",) if full_model else ("training_args.bin", "ref")
    top = Path(saved_dir)
    shutil.copytree(saved_dir, dest, ignore=lambda d, names: [n for n in names if n in dropped and Path(d) == top])
    if full_model and not any(dest.glob("*.safetensors")):
        raise RuntimeError(f"{saved_dir} holds no safetensors weights: not a model save")
    if not full_model and not (dest / "adapter_model.safetensors").is_file():
        raise RuntimeError(f"{saved_dir} holds no adapter_model.safetensors: not a PEFT adapter save")
    processor.save_pretrained(dest)
    return dest


def decode_images(record: dict, images_cfg: dict) -> list:
    """The record's images, decoded, validated and resized with :func:`attrpipe.images.load_image` (its URIs are
    already resolved; inline bytes win). A bad image raises ``ImageError`` naming the example."""
    from attrpipe.http_images import HttpSettings
    from attrpipe.images import ImageError, load_image

    kw = dict(
        root=None,
        size=int(images_cfg["size"]),
        max_pixels=int(images_cfg["max_pixels"]),
        max_bytes=int(images_cfg["max_bytes"]),
        allowed_schemes=list(images_cfg["allowed_schemes"]),
        http=HttpSettings.from_conf(images_cfg),
    )
    try:
        data = record.get("image_bytes") or []
        if data:
            return [load_image(None, bytes(b), **kw) for b in data]
        return [load_image(u, None, **kw) for u in record.get("image_uris") or []]
    except ImageError as e:
        raise ImageError(e.reason, f"example {record.get('example_id')!r}: {e.detail}") from None


def _arrow_collate_base():
    from ray.data.collate_fn import ArrowBatchCollateFn

    return ArrowBatchCollateFn


class RecordCollator:
    """Records (a pyarrow batch from Ray Data, or a list of dicts) -> TRL examples -> TRL's collator -> tensors."""

    def __init__(self, kind: str, images_cfg: dict, trl_collator: Callable):
        self.to_example = {"dpo": dpo_example, "scpo": scpo_example}.get(kind, sft_example)
        self.images_cfg = dict(images_cfg)
        self.trl_collator = trl_collator

    def examples(self, records: list[dict]) -> list[dict]:
        return [self.to_example(r, decode_images(r, self.images_cfg)) for r in records]

    def __call__(self, batch) -> dict:
        records = batch.to_pylist() if hasattr(batch, "to_pylist") else list(batch)
        return self.trl_collator(self.examples(records))


def _ray_collate(collator: RecordCollator):
    """Wrap a RecordCollator as Ray Data's ``ArrowBatchCollateFn`` (pyarrow batches in)."""
    base = _arrow_collate_base()

    class _Collate(base):
        def __call__(self, batch):
            return collator(batch)

    return _Collate()


def step_logs(log_history: list[dict]) -> list[dict]:
    """The per-step entries of a trainer's log history (the final summary entry is not a step)."""
    return [dict(e) for e in log_history if "loss" in e and "step" in e]


# --- the Ray Train loop ---------------------------------------------------------------------------------------------


def _progress_callback(path: str | None, every_s: float = 2.0):
    """Rank 0 writes its step, the plan's steps and the last loss to ``path`` (the training output's
    ``_progress.json``) at most every ``every_s`` seconds and at the end: the driver's progress line reads it."""
    if not path:
        return None
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        last = 0.0
        loss = None

        def _write(self, state, force: bool = False):
            now = time.monotonic()
            if state.is_world_process_zero and (force or now - self.last >= every_s):
                self.last = now
                storage.write_json_atomic(path, {"step": state.global_step, "max_steps": state.max_steps,
                                                 "loss": self.loss})

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])
            self._write(state)

        def on_train_end(self, args, state, control, **kwargs):
            self._write(state, force=True)

    return _Progress()


def _report_callback(fault: dict | None = None):
    """Ray Train's ``RayTrainReportCallback``, made to upload only complete checkpoints.

    Ray's own callback has every rank copy ``get_last_checkpoint(output_dir)`` as soon as the trainer's ``on_save``
    fires; but only the trainer's rank 0 writes the weights, the optimizer and ``trainer_state.json``, with nothing
    between its writes and the other ranks' copies. Ranks that share a node (and so the output directory) then copy
    rank 0's files while it still writes them, and all ranks upload into the same checkpoint directory: a short
    ``optimizer.pt`` could replace the whole one, and the restart failed in ``torch.load`` (EOFError). Here every rank
    first waits for the others (a collective, which also counts the nodes), then one process per node (local rank 0)
    copies the step's own checkpoint directory with a manifest of its files and sizes
    (:mod:`attrpipe.train.checkpoints`) and reports it; the others report no checkpoint. Ray Train registers the
    checkpoint only when every rank has reported, so a registered checkpoint is whole, and the manifests prove it."""
    from ray.train.huggingface.transformers import RayTrainReportCallback

    class _CompleteCheckpointReport(RayTrainReportCallback):
        def on_save(self, args, state, control, **kwargs):
            import ray.train
            import torch.distributed as dist
            from ray.train import Checkpoint

            from attrpipe.train.checkpoints import write_manifest

            ctx = ray.train.get_context()
            leader = ctx.get_local_rank() == 0
            if dist.is_available() and dist.is_initialized():
                leaders: list = [None] * dist.get_world_size()
                dist.all_gather_object(leaders, leader)  # every rank's writes are done past this point
                nodes = sum(bool(x) for x in leaders)
            else:
                nodes = 1
            metrics: dict = {}
            for entry in state.log_history:
                metrics.update(entry)
            src = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            _maybe_fail(fault, "report", state.global_step)
            if not (leader and src.is_dir()):
                ray.train.report(metrics=metrics, checkpoint=None)
                return
            with tempfile.TemporaryDirectory() as tmp:
                dest = Path(tmp) / self.CHECKPOINT_NAME
                shutil.copytree(src, dest)
                write_manifest(dest, world_rank=ctx.get_world_rank(), nodes=nodes, step=state.global_step)
                ray.train.report(metrics=metrics, checkpoint=Checkpoint.from_directory(tmp))

    return _CompleteCheckpointReport()


def _maybe_fail(spec: dict | None, at: str, step: int) -> None:
    """Test hook: fail once when the run reaches ``spec["step"]`` at the moment ``spec["at"]`` (one marker file per
    rank), to exercise FailureConfig recovery. Moments: ``step`` (default; after the step's update), ``save`` (in the
    middle of writing the step's checkpoint: after the weights and the optimizer, before the RNG state and the trainer
    state), ``report`` (the checkpoint written, before Ray Train has it).

    ``spec["kill"]``: the worker process SIGKILLs itself, as on a preempted node, instead of raising; ``spec["ranks"]``:
    only these ranks fail (default: all); ``spec["delay_s"]``: wait this long first. A restarted group resumes from
    the run's latest complete checkpoint (:func:`_resume_checkpoint`).
    """
    if not spec or spec.get("at", "step") != at or step != int(spec["step"]):
        return
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    if spec.get("ranks") is not None and rank not in spec["ranks"]:
        return
    marker = Path(f"{spec['marker']}.{rank}")
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    how = "killed (SIGKILL)" if spec.get("kill") else "failed"
    marker.write_text(f"{how} once at step {step} ({at}), pid {os.getpid()}\n")
    if spec.get("delay_s"):
        time.sleep(float(spec["delay_s"]))
    if spec.get("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected failure at step {step} ({at}, rank {rank})")


def _fault_callback(spec: dict | None):
    """The :func:`_maybe_fail` hook at the end of a step."""
    if not spec or spec.get("at", "step") != "step":
        return None
    from transformers import TrainerCallback

    class _Fault(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            _maybe_fail(spec, "step", state.global_step)

    return _Fault()


def _fault_in_save(trainer, spec: dict | None) -> None:
    """The :func:`_maybe_fail` hook in the middle of the trainer's checkpoint write (before its RNG state)."""
    if not spec or spec.get("at") != "save":
        return
    write_rng = trainer._save_rng_state

    def _save_rng_state(output_dir):
        _maybe_fail(spec, "save", trainer.state.global_step)
        return write_rng(output_dir)

    trainer._save_rng_state = _save_rng_state


def _adapter_to_model_dtype(model) -> None:
    """ZeRO-3 gathers parameters in buffers of one dtype: a loaded adapter that peft upcast to float32 on a bf16 base
    must follow the base (TRL does the same for the adapters it creates, trl#6089)."""
    base = getattr(model.get_base_model(), "dtype", None)
    if base is None:
        return
    for name, p in model.named_parameters():
        if "lora_" in name and p.dtype != base:
            p.data = p.data.to(base)


def _local_scratch(experiment: str) -> str:
    # One directory per node and run: the HF checkpoints before Ray Train copies them to storage.
    d = Path(tempfile.gettempdir()) / "attrpipe-train" / experiment
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def _resume_checkpoint(job: dict):
    """Where a worker group starts: the latest complete checkpoint of this run (after a worker failure), else the
    explicit ``resume_from``, else None (from the start).

    This run's checkpoints are read from its storage directory rather than from ``ray.train.get_checkpoint()``
    alone: Ray Train registers a checkpoint when its controller collects every rank's report, and a worker killed
    after its upload but before that poll takes the registration with it, though the checkpoint is whole in storage
    (seen: a kill two steps after a save restarted the run from scratch). The manifests
    (:mod:`attrpipe.train.checkpoints`) say which stored checkpoints are whole; a registered one is always among
    them."""
    import ray.train
    from ray.train import Checkpoint

    from attrpipe.train.plan import find_resume_checkpoint

    try:
        stored = find_resume_checkpoint(job["ray_run"]) if job.get("ray_run") else None
    except FileNotFoundError:  # no checkpoint yet: the first attempt, or a failure before the first save
        stored = None
    if stored is not None:
        return Checkpoint(stored)
    registered = ray.train.get_checkpoint()
    if registered is not None:
        return registered
    return Checkpoint(job["resume_from"]) if job.get("resume_from") else None


def train_loop_per_worker(job: dict) -> None:
    """The plain-dict ``job`` comes from :func:`attrpipe.train.driver.run_training`. One Ray Train worker: build the TRL trainer, stream its shard, train (resuming if there is a checkpoint), and
    report the final adapter + metrics as the run's last checkpoint (rank 0 writes it)."""
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train import Checkpoint
    from ray.train.huggingface.transformers import prepare_trainer

    from attrpipe.models.loader import load_processor
    from attrpipe.train.checkpoints import checkpoint_problems, finished_in_checkpoint, hf_dir
    from attrpipe.train.plan import FULL_KINDS, checkpoint_step, output_subdir

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    kind = job["kind"]
    if not job["use_gpu"]:
        torch.set_num_threads(max(1, int(job["cpus_per_worker"])))

    processor = load_processor(
        job["model"]["path"], trust_remote_code=bool(job["model"]["trust_remote_code"]),
        image_size=int(job["images"]["size"]),
    )
    scratch = _local_scratch(ctx.get_experiment_name())
    # A restarted worker group must not find the failed attempt's half-written checkpoints in the node's scratch
    # (the trainer would write beside them, and a copy could mix them in).
    if ctx.get_local_rank() == 0:
        shutil.rmtree(Path(scratch) / "hf", ignore_errors=True)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    if job["deepspeed"] is not None:
        # DeepSpeed joins the process group Ray Train made (gloo on CPUs, NCCL on GPUs) instead of discovering its
        # own (MPI discovery fails outside a launcher); ZeRO-3's partitioned loading needs it before the model.
        import deepspeed

        deepspeed.init_distributed(dist_backend=dist.get_backend(), auto_mpi_discovery=False)
    # The arguments come before the model: with ZeRO-3 they make from_pretrained partition the weights as it loads.
    args = trl_args(
        kind,
        job["hyper"],
        output_dir=os.path.join(scratch, "hf"),
        max_steps=job["plan"]["max_steps"],
        seed=job["seed"],
        bf16=job["bf16"],
        use_cpu=not job["use_gpu"],
        deepspeed=job["deepspeed"],
        save_total_limit=int(job["checkpoints_to_keep"]),
    )
    model, peft_config = load_policy(job["model"], job["lora"], job["start"]["init_adapter"],
                                     freeze_vision_tower=bool(job.get("freeze_vision_tower")))
    if job["start"]["init_adapter"] is not None and job["deepspeed"] and \
            job["deepspeed"]["zero_optimization"]["stage"] == 3:
        _adapter_to_model_dtype(model)
    callbacks = [_report_callback(job.get("fault"))]
    progress = _progress_callback(job.get("progress"))
    if progress is not None:
        callbacks.append(progress)
    if rank == 0:  # the trainer's curves in MLflow, live (attrpipe.tracking.callback)
        from attrpipe.tracking.callback import trainer_callback

        callbacks += [cb for cb in [trainer_callback(job.get("tracking"))] if cb is not None]
    fault = _fault_callback(job.get("fault"))
    if fault is not None:
        callbacks.append(fault)
    trainer = build_trainer(
        kind, model=model, peft_config=peft_config, processor=processor, args=args,
        train_dataset=probe_dataset(kind), callbacks=callbacks,
    )

    _fault_in_save(trainer, job.get("fault"))
    if job["start"].get("reference_adapter"):
        load_reference_adapter(trainer.model, job["start"]["reference_adapter"])

    shard = ray.train.get_dataset_shard("train")
    collate = _ray_collate(RecordCollator(kind, job["images"], trainer.data_collator))
    batch_size, passes, seed = int(job["hyper"]["batch_size"]), int(job["plan"]["passes"]), int(job["seed"])
    shuffle = int(job["shuffle_buffer_size"]) or None

    def stream():
        # One iterable over every pass: the trainer sees a single stream of max_steps x accumulation batches, so a
        # resumed run skips exactly the batches it had trained on.
        for p in range(passes):
            yield from shard.iter_torch_batches(
                batch_size=batch_size, collate_fn=collate, local_shuffle_buffer_size=shuffle,
                local_shuffle_seed=None if shuffle is None else seed + p,
            )

    from ray.data.iterator import _IterableFromIterator  # what prepare_trainer recognises as a Ray Data iterable

    trainer.train_dataset = _IterableFromIterator(stream)
    trainer = prepare_trainer(trainer)

    checkpoint = _resume_checkpoint(job)
    resumed_from, done = None, None
    final_dir = os.path.join(scratch, "final")
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            problems = checkpoint_problems(d)
            if problems:  # never resume from a half-written state
                raise RuntimeError(f"{kind}: checkpoint {checkpoint.path} is incomplete: {'; '.join(problems)}")
            resume_dir = hf_dir(d)
            resumed_from = checkpoint_step(resume_dir)
            if rank == 0:
                log.warning("resuming %s from step %s (%s)", kind, resumed_from, resume_dir)
            done = finished_in_checkpoint(resume_dir, int(job["plan"]["max_steps"]))
            if done is None:
                output = trainer.train(resume_from_checkpoint=resume_dir)
            elif rank == 0:  # every step was trained: the checkpoint's model files are the result, exported as is
                shutil.copytree(resume_dir, final_dir, dirs_exist_ok=True, ignore=lambda d, names: [
                    n for n in names if Path(d, n).is_dir() or not (n.endswith(".safetensors") or n in _MODEL_FILES)])
    else:
        output = trainer.train()

    if done is None:  # the final adapter: every rank takes part (ZeRO-3 gathers the weights), the main process writes
        trainer.save_model(final_dir)
        done = {"global_step": int(trainer.state.global_step), "train_loss": float(output.training_loss),
                "log_history": trainer.state.log_history,
                **{k: v for k, v in (output.metrics or {}).items() if isinstance(v, (int, float))}}
    log_history = done.pop("log_history")
    summary = {**done, "resumed_from_step": resumed_from}
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            export_trained(final_dir, processor, Path(tmp) / output_subdir(kind), full_model=kind in FULL_KINDS)
            with open(Path(tmp) / METRICS_FILE, "w", encoding="utf-8") as f:
                for entry in step_logs(log_history):
                    f.write(json.dumps(entry, sort_keys=True) + "\n")
            (Path(tmp) / FINAL_CHECKPOINT_MARKER).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
            ray.train.report(summary, checkpoint=Checkpoint.from_directory(tmp))
    else:
        ray.train.report(summary, checkpoint=None)
    # Ray Train holds every checkpoint now; the node-local copies (optimizer states included) can go.
    if dist.is_initialized():
        dist.barrier()
    if ctx.get_local_rank() == 0:
        shutil.rmtree(scratch, ignore_errors=True)
