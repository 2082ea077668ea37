"""Generation engines: one interface (:class:`attrpipe.engines.base.Engine`), a transformers engine (``hf``, the
CPU engine) and a vLLM engine (``vllm``, GPUs)."""

from attrpipe.engines.base import Engine, GenerationRequest, SamplingSpec

__all__ = ["Engine", "GenerationRequest", "SamplingSpec", "make_engine"]


def make_engine(cfg, *, adapter: str | None = None) -> Engine:
    """The engine ``generation.engine`` names, for the model ``model.path`` and an optional LoRA adapter.

    ``hf`` and ``vllm`` are built in; ``package.module:Class`` plugs in any class with
    ``from_config(cfg, adapter=...)`` and the :class:`Engine` methods.
    """
    if cfg.generation.engine == "hf":
        import torch

        from attrpipe.engines.hf import HFEngine

        torch.set_num_threads(max(1, int(cfg.ray.engine.num_cpus_per_actor)))
        return HFEngine(cfg.model.path, adapter=adapter, dtype=cfg.model.dtype,
                        trust_remote_code=cfg.model.trust_remote_code, image_size=cfg.images.size)
    if cfg.generation.engine == "vllm":
        from attrpipe.engines.vllm import VLLMEngine

        return VLLMEngine.from_config(cfg, adapter=adapter)
    # "package.module:Class": an engine of the user's (or a benchmark's stand-in); it builds itself from the config.
    import importlib

    module, _, name = cfg.generation.engine.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return cls.from_config(cfg, adapter=adapter)
