"""The engine interface: a list of requests in, ``n`` generated texts per request out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["GenerationRequest", "SamplingSpec", "Engine", "request_seed"]


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str  # the example id, "<listing_id>::<attribute>"
    messages: list[dict]  # chat messages from attrpipe.prompts.build_messages
    images: list[Any] = field(default_factory=list)  # PIL images, already validated and resized


@dataclass(frozen=True)
class SamplingSpec:
    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    greedy: bool = False
    seed: int = 0  # the run seed; each request's own seed derives from it and the request id

    @classmethod
    def sampling(cls, generation_conf, seed: int) -> "SamplingSpec":
        g = generation_conf
        return cls(g.num_chains, g.temperature, g.top_p, g.max_new_tokens, False, seed)

    @classmethod
    def greedy_decoding(cls, max_new_tokens: int) -> "SamplingSpec":
        return cls(1, 1.0, 1.0, max_new_tokens, True, 0)


def request_seed(run_seed: int, request_id: str) -> int:
    """Per-request sampling seed: depends on (run seed, request id) only, so a rerun samples the same chains."""
    digest = hashlib.sha256(f"sample\x00{run_seed}\x00{request_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Engine(Protocol):
    def generate(self, requests: list[GenerationRequest], sampling: SamplingSpec) -> list[list[str]]:
        """``sampling.n`` texts per request, in request order."""

    def identity(self) -> dict:
        """What produced the texts (model path, adapter path and hash), for the output shards."""
