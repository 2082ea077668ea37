"""``attrpipe gpu-check``: the first thing to run on a machine with CUDA GPUs.

It renders a small synthetic catalog (conf/gpu_check.yaml: 48 unlabeled listings), runs one loop round with the
production engines on the machine's GPUs (seed SFT and DPO with DeepSpeed over NCCL, pseudo-labeling and evaluation
with vLLM serving the trained LoRA adapter), audits the run (attrpipe.audit), and prints the figures ``attrpipe plan``
takes, measured on that run:

- ``--tokens-per-s``: generated tokens per second per GPU: the tokens of every sampled chain of the round (the chain
  texts tokenized again with the model's tokenizer; the end-of-sequence token is not counted) over the engine actor's
  busy seconds (``generate_seconds`` of the pseudo-labeling output: the engine's calls only, not its start) times the
  GPUs of an actor;
- ``--train-tokens-per-s``: DPO tokens per second per GPU, counted as ``attrpipe plan`` counts them, 2 x (prompt +
  chain) per pair (the prompt with its image tokens, as the processor expands them), over the pairs the run trained
  on, divided by the trainer's own run time (``train_runtime``: from the trainer's start, DeepSpeed's set-up included,
  to its end) times the workers;
- ``--tokens-per-chain``: the mean generated tokens of a chain; ``--startup-s``: the larger of the two stages' wall
  time minus their busy time (Ray, model loading, CUDA graphs, DeepSpeed set-up).

What can be checked before anything loads is checked first, each failure one line (``attrpipe: error: ...``, exit 2):
overrides the command sets itself, GPUs that torch sees, vLLM installed, and the model: a hub id is downloaded once
into the Hugging Face cache (so the engine and the training workers read the same local files), then its config and
processor are loaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

from attrpipe import storage
from attrpipe.console import command_session, echo
from attrpipe.preflight import InputError

__all__ = ["DEFAULT_CONFIG", "add_gpu_check_parser", "cmd_gpu_check", "require_gpus", "generation_rate",
           "trained_pairs", "pair_tokens", "measured_figures", "format_figures", "run_gpu_check"]

DEFAULT_CONFIG = "conf/gpu_check.yaml"
PLAN_LISTINGS = 5000  # the paste line's pool size: the paper's round (set your own)


# --- pure: arguments, the GPU refusal, the figures -------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def require_gpus(visible: int, wanted: int | None, *, torch_version: str, cuda_version: str | None) -> int:
    """The GPUs the check trains on: ``wanted`` (``--gpus``) or every one torch sees; none visible is refused."""
    if visible < 1:
        build = f"a CUDA {cuda_version} build" if cuda_version else "a CPU-only build"
        raise InputError(f"gpu-check needs CUDA GPUs on this machine: torch {torch_version} ({build}) sees none "
                         "(check nvidia-smi, the driver and CUDA_VISIBLE_DEVICES)")
    if wanted is None:
        return visible
    if wanted > visible:
        raise InputError(f"--gpus: {wanted} asked, torch sees {visible} CUDA GPU(s) on this machine")
    return wanted


def generation_rate(generated_tokens: int, engine_seconds: float, gpus_per_actor: float) -> float:
    """Generated tokens per second per GPU: the tokens over the engine's busy GPU-seconds."""
    if engine_seconds <= 0 or gpus_per_actor <= 0:
        raise ValueError(f"no engine time to divide by ({engine_seconds} s x {gpus_per_actor} GPU)")
    return generated_tokens / (engine_seconds * gpus_per_actor)


def trained_pairs(plan: dict, global_step: int) -> float:
    """Pairs a DPO run went through: each worker's share of the data per pass (``per_worker``), over the passes its
    steps made (``global_step / steps_per_epoch``), times the workers (attrpipe.train.plan.StepPlan's fields)."""
    if plan["steps_per_epoch"] < 1:
        raise ValueError("a training plan without steps")
    return plan["workers"] * plan["per_worker"] * global_step / plan["steps_per_epoch"]


def pair_tokens(prompt: int, chosen: int, rejected: int) -> int:
    """Tokens of one DPO pair as ``attrpipe plan`` counts them: the prompt with each chain, 2 x (prompt + chain)."""
    return 2 * prompt + chosen + rejected


def measured_figures(*, generated_tokens: int, chains: int, engine_seconds: float, gpus_per_actor: float,
                     pseudolabel_seconds: float, pair_token_counts: list[int], plan: dict | None,
                     global_step: int | None, train_seconds: float | None, workers: int,
                     dpo_seconds: float | None) -> dict:
    """The figures of one gpu-check run (pure). DPO's are None when the round trained nothing (no pairs)."""
    if chains < 1:
        raise ValueError("the round sampled no chain")
    fig = {
        "generated_tokens": generated_tokens,
        "chains": chains,
        "tokens_per_chain": generated_tokens / chains,
        "engine_seconds": engine_seconds,
        "tokens_per_s": generation_rate(generated_tokens, engine_seconds, gpus_per_actor),
        "pseudolabel_startup_s": max(0.0, pseudolabel_seconds - engine_seconds),
        "pairs": len(pair_token_counts), "pairs_trained": None, "train_tokens": None, "train_seconds": train_seconds,
        "workers": workers, "train_tokens_per_s": None, "dpo_startup_s": None,
    }
    if pair_token_counts and plan and global_step and train_seconds:
        pairs = trained_pairs(plan, global_step)
        tokens = pairs * sum(pair_token_counts) / len(pair_token_counts)
        fig.update(pairs_trained=pairs, train_tokens=tokens, train_tokens_per_s=tokens / (train_seconds * workers),
                   dpo_startup_s=None if dpo_seconds is None else max(0.0, dpo_seconds - train_seconds))
    starts = [s for s in (fig["pseudolabel_startup_s"], fig["dpo_startup_s"]) if s is not None]
    fig["startup_s"] = max(starts)
    return fig


def format_figures(fig: dict, *, gpus: int, gpu_name: str, config: str = "conf/paper.yaml") -> str:
    """The measured figures, what they rest on, and the ``attrpipe plan`` line with them filled in."""
    lines = [f"measured on {gpus} x {gpu_name}:",
             f"  generation: {fig['generated_tokens']:,} tokens in {fig['chains']:,} chains "
             f"({fig['tokens_per_chain']:.1f} a chain) in {fig['engine_seconds']:.1f} engine-seconds: "
             f"{fig['tokens_per_s']:,.0f} generated tokens/s per GPU",
             f"  pseudo-labeling start-up (stage wall time minus engine time): {fig['pseudolabel_startup_s']:.0f} s"]
    if fig["train_tokens_per_s"] is None:
        lines.append("  DPO: nothing trained (the round wrote no pairs): no training figure")
    else:
        lines += [f"  DPO: {fig['pairs_trained']:,.0f} pairs, {fig['train_tokens']:,.0f} tokens (2 x (prompt + "
                  f"chain) a pair) in {fig['train_seconds']:.1f} s of training on {fig['workers']} GPU(s): "
                  f"{fig['train_tokens_per_s']:,.0f} training tokens/s per GPU",
                  f"  DPO start-up (stage wall time minus training time): {fig['dpo_startup_s']:.0f} s"]
    paste = (f"attrpipe plan {config} --listings {PLAN_LISTINGS} --tokens-per-s {fig['tokens_per_s']:.0f} "
             f"--tokens-per-chain {fig['tokens_per_chain']:.0f} --startup-s {fig['startup_s']:.0f}")
    if fig["train_tokens_per_s"] is not None:
        paste += f" --train-tokens-per-s {fig['train_tokens_per_s']:.0f}"
    lines += ["", "for attrpipe plan (set --listings to your pool):", f"  {paste}"]
    return "\n".join(lines)


# --- what the run wrote, counted in tokens ----------------------------------------------------------------------------


def chain_token_counts(pseudolabel_out: str, tokenizer) -> tuple[int, int]:
    """(generated tokens, chains) of a pseudo-labeling output: every chain text of its committed consensus shards,
    tokenized without special tokens."""
    from attrpipe.pseudolabel.output import committed_files

    tokens = chains = 0
    for f in committed_files(storage.join(pseudolabel_out, "consensus")) or []:
        texts = [c["text"] or "" for row in storage.read_parquet(f, columns=["chains"]).to_pylist()
                 for c in row["chains"]]
        if texts:
            tokens += sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
            chains += len(texts)
    return tokens, chains


def pair_token_counts(pseudolabel_out: str, processor, *, image_size: int, max_images: int) -> list[int]:
    """:func:`pair_tokens` of every pair of a pseudo-labeling output: the prompt as training builds it (system
    prompt, one image slot per image, the user text; attrpipe.prompts.messages_for) put through the processor with
    images of the training size, so the image tokens are the processor's own count."""
    from PIL import Image

    from attrpipe.prompts import messages_for
    from attrpipe.pseudolabel.output import committed_files

    blank = Image.new("RGB", (image_size, image_size))
    tok = processor.tokenizer
    prompts: dict[tuple[str, int], int] = {}
    out = []
    for f in committed_files(storage.join(pseudolabel_out, "pairs")) or []:
        rows = storage.read_parquet(f, columns=["prompt", "chosen", "rejected", "image_uris", "image_bytes"])
        for r in rows.to_pylist():
            n = min(max_images, len(r["image_bytes"] or []) or len(r["image_uris"] or []))
            key = (r["prompt"], n)
            if key not in prompts:
                text = processor.apply_chat_template(messages_for(r["prompt"], n), tokenize=False,
                                                     add_generation_prompt=True)
                enc = processor(text=[text], images=[blank] * n if n else None)
                prompts[key] = len(enc["input_ids"][0])
            chosen, rejected = (len(ids) for ids in tok([r["chosen"], r["rejected"]],
                                                         add_special_tokens=False)["input_ids"])
            out.append(pair_tokens(prompts[key], chosen, rejected))
    return out


# --- the run ----------------------------------------------------------------------------------------------------------


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def resolve_model(path: str, source: str, *, trust_remote_code: bool, image_size: int) -> str:
    """A local model directory for ``path``: itself, or a hub id's snapshot in the Hugging Face cache (downloaded
    here, once); its config and processor loaded to prove it loads. Any failure is one :class:`InputError`."""
    from attrpipe.models.loader import load_processor, locate_checkpoint

    try:
        local = locate_checkpoint(path, "model", "config.json")
    except (FileNotFoundError, NotADirectoryError) as e:
        raise InputError(f"{source}: {e}") from None
    if not Path(local).is_dir():  # a hub id
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja",
                                                            "*.model", "*.tiktoken"])
        except Exception as e:  # noqa: BLE001 - any hub failure (network, auth, no such repo) is one line
            raise InputError(f"{source}: {path} cannot be downloaded from the Hugging Face Hub: "
                             f"{_first_line(e)}") from None
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(local, trust_remote_code=trust_remote_code)
        load_processor(local, trust_remote_code=trust_remote_code, image_size=image_size)
    except Exception as e:  # noqa: BLE001 - whatever stops the config or processor loading is one line
        raise InputError(f"{source}: {path} cannot be loaded: {_first_line(e)}") from None
    return local


def _have_vllm() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _cuda():
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    name = torch.cuda.get_device_name(0) if visible else ""
    return visible, name, torch.__version__, torch.version.cuda


def run_gpu_check(cfg, *, gpus: int, gpu_name: str) -> int:
    """Render the catalog, run the round, audit it, print the figures; 0 when the audit passes and both figures were
    measured, 1 otherwise. ``cfg.model.path`` is a local model directory (:func:`resolve_model`)."""
    from attrpipe.audit import audit, format_report
    from attrpipe.demo import ensure_demo_assets
    from attrpipe.loop import run_loop
    from attrpipe.models.loader import load_processor
    from attrpipe.preflight import check_loop

    t0 = time.perf_counter()
    local = str(cfg.model.path)
    ensure_demo_assets(cfg)
    check_loop(cfg)
    echo(f"gpu-check: catalog {cfg.data.root}, {gpus} GPU(s) ({gpu_name}), ready in "
          f"{time.perf_counter() - t0:.0f}s")
    manifest = run_loop(cfg, verbose=True)
    run_dir = storage.join(str(cfg.run.output_dir), str(cfg.run.name))  # where run_loop wrote it
    if "://" not in run_dir:
        run_dir = str(Path(run_dir).resolve())

    rep = audit(run_dir)
    echo(format_report(rep))

    done = manifest["finished"]
    pl_out = storage.join(run_dir, "round-1", "pseudolabels")
    pl_manifest = storage.read_json(storage.join(pl_out, "manifest.json"))
    processor = load_processor(local, trust_remote_code=bool(cfg.model.trust_remote_code),
                               image_size=int(cfg.images.size))
    tokens, chains = chain_token_counts(pl_out, processor.tokenizer)
    trained = done["round-1/train"]
    result = None if "skipped" in trained else storage.read_json(storage.join(run_dir, "round-1",
                                                                              "train_result.json"))
    train_seconds = None if result is None else result.get("train_runtime")  # the trainer's own run time
    e = cfg.ray.engine
    fig = measured_figures(
        generated_tokens=tokens, chains=chains, engine_seconds=float(pl_manifest["generate_seconds"]),
        gpus_per_actor=float(e.num_gpus_per_actor) * int(e.tensor_parallel_size),
        pseudolabel_seconds=float(done["round-1/pseudolabel"]["seconds"]),
        pair_token_counts=[] if result is None else pair_token_counts(
            pl_out, processor, image_size=int(cfg.images.size), max_images=int(cfg.images.max_images)),
        plan=None if result is None else result["plan"],
        global_step=None if result is None else int(result["global_step"]),
        train_seconds=None if train_seconds is None else float(train_seconds),
        workers=gpus if result is None else int(result["workers"]), dpo_seconds=float(trained["seconds"]))
    echo()
    echo(format_figures(fig, gpus=gpus, gpu_name=gpu_name))
    echo(f"\ngpu-check finished in {time.perf_counter() - t0:.0f}s; run directory {run_dir}")
    if not rep.ok:
        echo("gpu-check: FAILED: the audit found problems (above)")
        return 1
    if fig["train_tokens_per_s"] is None:
        echo("gpu-check: FAILED: the round wrote no DPO pairs, so DPO did not run on the GPUs; no training figure")
        return 1
    echo("gpu-check: passed")
    return 0


# --- command line (registered in attrpipe/cli.py) ---------------------------------------------------------------------


def add_gpu_check_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "gpu-check", help="on a machine with CUDA GPUs: one loop round with vLLM and DeepSpeed DPO on a small "
        "synthetic catalog, audited, and the throughput figures `attrpipe plan` takes")
    p.add_argument("overrides", nargs="*", help="dotlist overrides of the config, e.g. vllm.gpu_memory_utilization=0.8")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"the config (default {DEFAULT_CONFIG}), merged over "
                   "base.yaml")
    p.add_argument("--model", help="model directory or Hugging Face Hub id (default: the config's model.path, "
                   "Qwen/Qwen2.5-VL-3B-Instruct)")
    p.add_argument("--gpus", type=_positive_int, help="GPUs for the DPO workers (default: every GPU torch sees); "
                   "generation uses one")
    p.add_argument("-v", "--verbose", action="store_true", help="the full logs on the terminal (by default they go "
                   "to a log file in the run directory)")
    p.set_defaults(func=cmd_gpu_check)
    return p


def cmd_gpu_check(args) -> int:
    from omegaconf import OmegaConf

    from attrpipe.config import load_config
    from attrpipe.preflight import refuse_overrides

    refuse_overrides("gpu-check", args.overrides)
    extra = [f"model.path={args.model}"] if args.model else []
    cfg = load_config(args.config, [*args.overrides, *extra])  # a bad config or override: refused before the GPUs
    visible, gpu_name, torch_version, cuda_version = _cuda()
    gpus = require_gpus(visible, args.gpus, torch_version=torch_version, cuda_version=cuda_version)
    if not _have_vllm():
        raise InputError("gpu-check runs the vLLM engine and vllm is not installed in this environment: "
                         "pip install -e '.[vllm]' (docs/install.md)")
    # a fresh run each time (the figures are this run's), on the GPUs chosen
    extra += [f"run.name={cfg.run.name}-{time.strftime('%Y%m%d-%H%M%S')}", f"ray.train.num_workers={gpus}"]
    cfg = load_config(args.config, [*args.overrides, *extra])
    t0 = time.perf_counter()
    local = resolve_model(str(cfg.model.path), "--model" if args.model else "model.path",
                          trust_remote_code=bool(cfg.model.trust_remote_code), image_size=int(cfg.images.size))
    echo(f"gpu-check: model {cfg.model.path} loads ({local}, {time.perf_counter() - t0:.0f}s)")
    cfg = OmegaConf.merge(cfg, {"model": {"path": local}})
    run_dir = storage.join(str(cfg.run.output_dir), str(cfg.run.name))
    with command_session(run_dir, "gpu-check", verbose=args.verbose, shutdown_ray=getattr(args, "cli_process", False)):
        return run_gpu_check(cfg, gpus=gpus, gpu_name=gpu_name)
