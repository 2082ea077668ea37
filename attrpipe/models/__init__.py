"""Model loading (the one way the project loads processors, models and adapters) and the tiny test model."""

from attrpipe.models.loader import (
    DEFAULT_LORA_TARGET_MODULES,
    image_pixel_budget,
    load_model,
    load_processor,
    lora_config,
    lora_target_names,
    resolve_dtype,
)
from attrpipe.models.tiny import build_tiny_model, tiny_corpus, tiny_model_hash

__all__ = [
    "DEFAULT_LORA_TARGET_MODULES",
    "build_tiny_model",
    "image_pixel_budget",
    "load_model",
    "load_processor",
    "lora_config",
    "lora_target_names",
    "resolve_dtype",
    "tiny_corpus",
    "tiny_model_hash",
]
