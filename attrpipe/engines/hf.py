"""The transformers engine: ``generate`` with ``num_return_sequences``, an optional peft adapter. The CPU engine.

Each request is generated with its own seed (:func:`attrpipe.engines.base.request_seed`), so the chains of an
example do not depend on which other examples share its batch: a resumed run samples exactly what an uninterrupted
run would have. The ``n`` chains of a request are one batched ``generate`` call (the prompt is encoded once and
expanded), which is where this engine's parallelism comes from.
"""

from __future__ import annotations

import torch

from attrpipe.engines.base import GenerationRequest, SamplingSpec, request_seed
from attrpipe.storage import fingerprint

__all__ = ["HFEngine"]


class HFEngine:
    def __init__(
        self,
        model_path: str,
        *,
        adapter: str | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        image_size: int = 224,
        device: str | None = None,
    ):
        from attrpipe.models.loader import load_model, load_processor

        self.model_path = model_path
        self.adapter = adapter
        self.processor = load_processor(model_path, trust_remote_code=trust_remote_code, image_size=image_size)
        self.model = load_model(
            model_path, dtype=dtype, trust_remote_code=trust_remote_code, device=device, adapter=adapter
        )
        self.model.eval()
        self._identity = {
            "model": model_path,
            "model_fingerprint": fingerprint(model_path),
            "adapter": adapter,
            "adapter_fingerprint": fingerprint(adapter),
        }

    def identity(self) -> dict:
        return dict(self._identity)

    @torch.inference_mode()
    def generate(self, requests: list[GenerationRequest], sampling: SamplingSpec) -> list[list[str]]:
        return [self._generate_one(r, sampling) for r in requests]

    def _generate_one(self, request: GenerationRequest, sampling: SamplingSpec) -> list[str]:
        text = self.processor.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(
            text=[text], images=list(request.images) or None, return_tensors="pt", padding=True
        ).to(self.model.device)
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.n)
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None, repetition_penalty=1.0)
        else:
            torch.manual_seed(request_seed(sampling.seed, request.request_id))
            # Everything explicit: a checkpoint's generation_config (Qwen ships top_k=1 defaults) must not narrow it.
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0,
                          repetition_penalty=1.0)
        out = self.model.generate(**inputs, **kwargs)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)
