"""The vLLM engine (GPUs): one request per (listing, attribute) with ``n`` chains, so the prompt is prefilled once
and the n samples share it; prefix caching on, and a listing's images come first in every prompt, so all of its
attributes share that prefix; a LoRA adapter from our training served through vLLM's LoRA support.

With ``ray.engine.units_in_flight`` > 1 the engine is vLLM's async engine (``AsyncLLMEngine``) instead of
``vllm.LLM``: an actor then has several units in flight (:meth:`VLLMEngine.generate_async`), and vLLM's scheduler
batches their requests together, so the engine keeps stepping while one unit's last sequences finish and the next
unit's requests are built. The requests, their sampling parameters and per-request seeds are the same either way.

Request building and output mapping are plain functions (:func:`build_vllm_request`, :func:`sampling_params_kwargs`,
:func:`texts_from_outputs`) tested without vLLM; :class:`VLLMEngine` is the thin part that owns a ``vllm.LLM``.
docs/engines.md explains why this is a Ray Data actor owning ``vllm.LLM`` rather than ``ray.data.llm``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from attrpipe.engines.base import GenerationRequest, SamplingSpec, request_seed
from attrpipe.storage import fingerprint, local_copy

__all__ = ["VLLMEngine", "build_vllm_request", "sampling_params_kwargs", "texts_from_outputs", "engine_kwargs"]


def build_vllm_request(request: GenerationRequest, prompt_text: str) -> dict:
    """A vLLM prompt dict: the chat-templated text plus the request's images as multimodal data."""
    out: dict[str, Any] = {"prompt": prompt_text}
    if request.images:
        out["multi_modal_data"] = {"image": list(request.images)}
    return out


def sampling_params_kwargs(sampling: SamplingSpec, request_id: str) -> dict:
    """SamplingParams for one request. Everything is explicit: a checkpoint's generation_config (Qwen ships
    ``top_k=1`` style defaults) must never narrow the 7-chain sampling. The per-request seed makes the chains of an
    example independent of batching and of which actor ran it."""
    if sampling.greedy:
        return dict(n=1, temperature=0.0, top_p=1.0, top_k=-1, max_tokens=sampling.max_new_tokens,
                    repetition_penalty=1.0)
    return dict(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p, top_k=-1,
                max_tokens=sampling.max_new_tokens, repetition_penalty=1.0,
                seed=request_seed(sampling.seed, request_id))


def texts_from_outputs(outputs: list, n: int) -> list[list[str]]:
    """Map ``LLM.generate`` results (one RequestOutput per request, in order) to n texts per request."""
    texts = []
    for out in outputs:
        chains = [c.text for c in sorted(out.outputs, key=lambda c: c.index)]
        if len(chains) != n:
            raise RuntimeError(f"vLLM returned {len(chains)} completions for request {out.request_id}, expected {n}")
        texts.append(chains)
    return texts


def engine_kwargs(cfg) -> dict:
    """``vllm.LLM`` arguments from the configuration."""
    return dict(
        model=cfg.model.path,
        dtype=cfg.model.dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        tensor_parallel_size=cfg.ray.engine.tensor_parallel_size,
        gpu_memory_utilization=cfg.vllm.gpu_memory_utilization,
        max_model_len=cfg.vllm.max_model_len,
        enable_prefix_caching=cfg.vllm.enable_prefix_caching,
        enable_chunked_prefill=cfg.vllm.enable_chunked_prefill,
        enforce_eager=cfg.vllm.enforce_eager,
        enable_lora=True,
        max_lora_rank=cfg.vllm.max_lora_rank,
        limit_mm_per_prompt={"image": cfg.images.max_images},
        seed=cfg.run.seed,
    )


class VLLMEngine:
    def __init__(self, llm_kwargs: dict, *, adapter: str | None = None, image_size: int = 224,
                 async_engine: bool = False):
        from attrpipe.models.loader import load_processor, verify_model_files

        model = llm_kwargs["model"]
        llm_kwargs = {**llm_kwargs, "model": local_copy(model)}  # a model on object storage: a local copy
        if Path(llm_kwargs["model"]).is_dir():
            verify_model_files(llm_kwargs["model"])  # a shipped model's weights, checked before vLLM reads them
        self.llm = self.async_llm = None
        if async_engine:
            from vllm import AsyncEngineArgs, AsyncLLMEngine

            self.async_llm = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**llm_kwargs))
            self._ids = itertools.count()  # vLLM request ids, unique among the units in flight
        else:
            from vllm import LLM

            self.llm = LLM(**llm_kwargs)
        self.processor = load_processor(llm_kwargs["model"], trust_remote_code=llm_kwargs.get("trust_remote_code",
                                                                                                False),
                                        image_size=image_size)
        self.adapter = adapter
        self.lora_request = None
        if adapter:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("attrpipe", 1, local_copy(adapter))  # vLLM reads a local directory
        self._identity = {"model": model, "model_fingerprint": fingerprint(model),
                          "adapter": adapter, "adapter_fingerprint": fingerprint(adapter)}

    @classmethod
    def from_config(cls, cfg, *, adapter: str | None = None) -> "VLLMEngine":
        return cls(engine_kwargs(cfg), adapter=adapter, image_size=cfg.images.size,
                   async_engine=cfg.ray.engine.units_in_flight > 1)

    def identity(self) -> dict:
        return dict(self._identity)

    def _prompts(self, requests: list[GenerationRequest]) -> list[dict]:
        return [build_vllm_request(r, self.processor.apply_chat_template(r.messages, tokenize=False,
                                                                         add_generation_prompt=True))
                for r in requests]

    def generate(self, requests: list[GenerationRequest], sampling: SamplingSpec) -> list[list[str]]:
        """All requests in one ``LLM.generate`` call; the engine is idle when the call returns."""
        from vllm import SamplingParams

        if self.llm is None:
            raise RuntimeError("this VLLMEngine runs vLLM's async engine (ray.engine.units_in_flight > 1): "
                               "use generate_async")
        params = [SamplingParams(**sampling_params_kwargs(sampling, r.request_id)) for r in requests]
        outputs = self.llm.generate(self._prompts(requests), params, lora_request=self.lora_request,
                                    use_tqdm=False)
        return texts_from_outputs(outputs, 1 if sampling.greedy else sampling.n)

    async def generate_async(self, requests: list[GenerationRequest], sampling: SamplingSpec) -> list[list[str]]:
        """The same texts as :meth:`generate`, from vLLM's async engine: every request is submitted at once and
        awaited, so the requests of other units in flight on this actor are batched with these."""
        import asyncio

        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if self.async_llm is None:
            raise RuntimeError("this VLLMEngine runs vllm.LLM (ray.engine.units_in_flight = 1): use generate")

        async def final(prompt: dict, request: GenerationRequest):
            params = SamplingParams(**sampling_params_kwargs(sampling, request.request_id),
                                    output_kind=RequestOutputKind.FINAL_ONLY)  # one output, all n completions
            last = None
            async for out in self.async_llm.generate(prompt, params, f"{next(self._ids)}:{request.request_id}",
                                                     lora_request=self.lora_request):
                last = out
            return last

        outputs = await asyncio.gather(*(final(p, r) for p, r in zip(self._prompts(requests), requests, strict=True)))
        return texts_from_outputs(outputs, 1 if sampling.greedy else sampling.n)
