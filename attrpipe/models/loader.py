"""The one way attrpipe loads processors, models, LoRA adapters and LoRA configs.

Every stage (SFT, generation, DPO, evaluation) goes through these functions, so a local tiny checkpoint
(:func:`attrpipe.models.tiny.build_tiny_model`) and ``Qwen/Qwen2.5-VL-3B-Instruct`` on a cluster take the same path:
``AutoProcessor`` / ``AutoModelForImageTextToText`` and ``peft.PeftModel``.

- Weights are read from safetensors only (``use_safetensors=True``): no pickle is ever unpickled.
- The image processor's pixel budget is set from ``image_size``: a ``image_size x image_size`` image keeps its size
  (up to Qwen's rounding to multiples of patch*merge = 28), so 224x224 -> 64 image tokens on the tiny and on the 3B
  model; larger images are scaled down to about that many pixels, keeping their aspect ratio.
- The tokenizer pads on the left, as batched generation needs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_LORA_TARGET_MODULES",
    "MODEL_CARD_FILE",
    "ModelChecksumError",
    "file_sha256",
    "verify_model_files",
    "model_identity",
    "locate_checkpoint",
    "load_processor",
    "load_model",
    "lora_config",
    "lora_target_names",
    "image_pixel_budget",
    "resolve_dtype",
]

# Matches the text model's q/v projections, named ``model.language_model.layers.<i>.self_attn.{q,v}_proj`` by
# transformers 5.x's Qwen2_5_VLForConditionalGeneration (peft fullmatches it against each module name). The vision
# tower's attention is a fused ``model.visual.blocks.<i>.attn.qkv``, which it does not match.
DEFAULT_LORA_TARGET_MODULES = r".*language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"

_DTYPES = ("auto", "float32", "bfloat16", "float16")
# "org/name" (the hub's repo id shape): letters, digits, "-", "_", "."; no leading "." or "/", exactly one "/".
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


# A shipped model directory (models/miniature) carries this JSON: its recipe and the sha256 of each weight file.
MODEL_CARD_FILE = "attrpipe-model.json"


class ModelChecksumError(ValueError):
    """A shipped model's weight file does not match the sha256 its model card records."""


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_model_files(model_dir: str | os.PathLike) -> dict | None:
    """If ``model_dir`` holds a model card (:data:`MODEL_CARD_FILE`), check every file it lists against its sha256
    and return the card; a missing or changed file is a one-line :class:`ModelChecksumError`. No card: None."""
    import json

    d = Path(model_dir)
    card_file = d / MODEL_CARD_FILE
    if not card_file.is_file():
        return None
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
        files = dict(card["sha256"])
    except (ValueError, KeyError, TypeError) as e:
        raise ModelChecksumError(f"{card_file}: not a model card with a 'sha256' table ({e})") from None
    for name, expected in sorted(files.items()):
        f = d / name
        if not f.is_file():
            raise ModelChecksumError(f"{f} is missing (listed in {MODEL_CARD_FILE})")
        got = file_sha256(f)
        if got != expected:
            raise ModelChecksumError(f"{f}: sha256 {got[:16]}... does not match {expected[:16]}... recorded in "
                                     f"{MODEL_CARD_FILE}; restore the file (git checkout) or rebuild it "
                                     "(docs/pretrain.md)")
    return card


def model_identity(path: str | os.PathLike | None) -> dict | None:
    """Which model a result came from, as a summary records it: the path, and where the directory carries a model
    card, its recipe hash and its weights' sha256 (two paths to the same weights are the same model; one path whose
    weights were replaced is not). None for no path."""
    import json

    if path is None:
        return None
    ident: dict[str, Any] = {"path": str(path)}
    card_file = Path(str(path)) / MODEL_CARD_FILE
    if card_file.is_file():
        try:
            card = json.loads(card_file.read_text(encoding="utf-8"))
            ident["recipe_hash"] = card.get("recipe_hash")
            ident["weights_sha256"] = dict(card.get("sha256") or {}).get("model.safetensors")
        except (ValueError, TypeError, AttributeError):
            pass  # not a card: verify_model_files says so when the model loads
    return ident


def _looks_like_hub_id(path: str) -> bool:
    return bool(_HUB_ID_RE.match(path)) and ".." not in path


def locate_checkpoint(path: str, what: str, required_file: str) -> str:
    """Where a checkpoint is, without loading or fetching anything: a local directory (checked to hold
    ``required_file``) or a hub id; anything else is FileNotFoundError (NotADirectoryError for a file). A URI is not
    looked up here (:func:`_resolve` copies it to a local cache first; attrpipe.preflight checks it in place)."""
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise NotADirectoryError(f"{what} path {str(p)!r} is a file, expected a checkpoint directory")
        if not (p / required_file).is_file():
            raise FileNotFoundError(
                f"{what} directory {str(p)!r} has no {required_file}; is it a saved checkpoint directory?"
            )
        return str(p)
    # "org/name" is a hub id unless "org" is a local directory: then it is a mistyped local path, and failing here
    # beats ~50 s of hub retries on a machine without network.
    if _looks_like_hub_id(path) and not p.parent.is_dir():
        return path
    raise FileNotFoundError(
        f"{what} {path!r} does not exist (resolved to {str(p.resolve())!r}) and is not a Hugging Face Hub id "
        "('org/name' where 'org' is not a local directory)"
    )


def _resolve(path: str | os.PathLike, what: str, required_file: str) -> str:
    """A local directory (checked to hold ``required_file``) or a hub id (:func:`locate_checkpoint`); a model directory
    with a model card is checked against it. A URI (an adapter or model on object storage) is copied to a local cache
    first (attrpipe.storage.local_copy)."""
    s = os.fspath(path)
    if not s:
        raise FileNotFoundError(f"{what} path is empty")
    if "://" in s:
        from attrpipe.storage import local_copy

        s = local_copy(s)
    src = locate_checkpoint(s, what, required_file)
    if what == "model" and Path(src).is_dir():
        verify_model_files(src)
    return src


def _hub_error(what: str, path: str, err: Exception) -> Exception:
    if Path(path).expanduser().exists() or not _looks_like_hub_id(path):
        return err
    return FileNotFoundError(
        f"{what} {path!r} is not a local directory (cwd {os.getcwd()!r}) and loading it as a Hugging Face Hub id "
        f"failed: {type(err).__name__}: {err}"
    )


def resolve_dtype(dtype: str) -> Any:
    """``"auto"`` or a torch dtype for ``"float32" | "bfloat16" | "float16"``."""
    import torch

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def image_pixel_budget(image_size: int, factor: int = 28) -> tuple[int, int]:
    """(min_pixels, max_pixels) such that an ``image_size`` square keeps its size up to rounding to ``factor``.

    Qwen's ``smart_resize`` rounds each side to the nearest multiple of ``factor`` and only rescales when the rounded
    area leaves [min_pixels, max_pixels]; with max_pixels = (rounded side)^2 the square is never scaled, and larger
    images are scaled down to at most that many pixels.
    """
    if not isinstance(image_size, int) or image_size < factor:
        raise ValueError(f"image_size must be an int >= {factor}, got {image_size!r}")
    side = max(factor, round(image_size / factor) * factor)
    max_pixels = side * side
    min_pixels = min(4 * factor * factor, max_pixels)  # Qwen's own minimum (56*56), 2x2 merged tokens
    return min_pixels, max_pixels


def load_processor(path: str | os.PathLike, *, trust_remote_code: bool = False, image_size: int = 224):
    """``AutoProcessor.from_pretrained(path)`` with the image pixel budget set for ``image_size`` and left padding."""
    from transformers import AutoProcessor
    from transformers.image_utils import SizeDict

    src = _resolve(path, "processor", "tokenizer_config.json")
    try:
        processor = AutoProcessor.from_pretrained(src, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise _hub_error("processor", src, e) from e

    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        raise TypeError(f"{src!r} loaded a {type(processor).__name__} without an image processor")
    patch = int(getattr(image_processor, "patch_size", 14))
    merge = int(getattr(image_processor, "merge_size", 2))
    min_pixels, max_pixels = image_pixel_budget(image_size, factor=patch * merge)
    # transformers 5.x: the Qwen2-VL image processor reads the budget from size = {shortest_edge: min_pixels,
    # longest_edge: max_pixels} (passing min_pixels/max_pixels at call time is deprecated).
    image_processor.size = SizeDict(shortest_edge=min_pixels, longest_edge=max_pixels)
    for attr, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if hasattr(image_processor, attr):  # older releases kept copies of the budget as attributes
            setattr(image_processor, attr, value)

    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        raise TypeError(f"{src!r} loaded a {type(processor).__name__} without a tokenizer")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


def load_model(
    path: str | os.PathLike,
    *,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    device: str | None = None,
    adapter: str | os.PathLike | None = None,
    adapter_trainable: bool = False,
):
    """``AutoModelForImageTextToText.from_pretrained(path)`` from safetensors, optionally with a LoRA adapter.

    ``adapter``: a directory saved by ``PeftModel.save_pretrained`` (or a hub id); the result is then a
    ``peft.PeftModel`` whose adapter weights are trainable only if ``adapter_trainable``.
    """
    from transformers import AutoModelForImageTextToText

    torch_dtype = resolve_dtype(dtype)
    src = _resolve(path, "model", "config.json")
    adapter_src = None if adapter is None else _resolve(adapter, "adapter", "adapter_config.json")
    if adapter_src is not None and Path(adapter_src).is_dir() and \
            not (Path(adapter_src) / "adapter_model.safetensors").is_file():
        # peft would fall back to a pickled adapter_model.bin: attrpipe reads weights from safetensors only
        raise FileNotFoundError(f"adapter directory {adapter_src!r} has no adapter_model.safetensors (attrpipe reads "
                                "adapter weights from safetensors only, never a pickled .bin)")
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            src, dtype=torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except OSError as e:
        raise _hub_error("model", src, e) from e
    if device is not None:
        model = model.to(device)
    if adapter_src is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter_src, is_trainable=adapter_trainable)
        except OSError as e:
            raise _hub_error("adapter", adapter_src, e) from e
    if not adapter_trainable:
        model.eval()
    return model


def lora_config(
    r: int = 32,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: str | list[str] = DEFAULT_LORA_TARGET_MODULES,
):
    """A ``peft.LoraConfig`` for causal-LM LoRA on the language model's q/v projections (the method's setting)."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, bias="none",
                      task_type="CAUSAL_LM")


def lora_target_names(model, target_modules: str | list[str] = DEFAULT_LORA_TARGET_MODULES) -> list[str]:
    """Names of the modules of ``model`` that ``target_modules`` selects, by peft's rule.

    A string is a regex fullmatched against each module name; a list matches names equal to or ending in
    ``.<entry>``. Useful to check a config against an architecture before training.
    """
    import torch

    names = []
    for name, module in model.named_modules():
        if not name or not isinstance(module, torch.nn.Linear):
            continue
        if isinstance(target_modules, str):
            hit = re.fullmatch(target_modules, name) is not None
        else:
            hit = any(name == t or name.endswith("." + t) for t in target_modules)
        if hit:
            names.append(name)
    return names
