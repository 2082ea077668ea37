"""A fixed-latency stand-in engine for measuring the data plane. It lives only in bench/, never in the package.

Each generate() call sleeps ``latency_s`` per request (as a model would take time) and returns n well-formed chains
whose answers follow a fixed, seeded pattern, so consensus, pairs and writing do their full work.
"""

from __future__ import annotations

import os
import random
import time

from attrpipe.engines.base import request_seed


class FixedLatencyEngine:
    def __init__(self, latency_s: float):
        self.latency_s = latency_s

    @classmethod
    def from_config(cls, cfg, adapter=None):
        return cls(float(os.environ.get("ATTRPIPE_BENCH_LATENCY_S", "0.001")))

    def identity(self) -> dict:
        return {"model": "stand-in", "model_fingerprint": "stand-in", "adapter": None, "adapter_fingerprint": None}

    def generate(self, requests, sampling):
        time.sleep(self.latency_s * len(requests))
        out = []
        for r in requests:
            options = r.messages[-1]["content"][-1]["text"].rsplit("Options: ", 1)[1].split(", ")
            rng = random.Random(request_seed(sampling.seed, r.request_id))
            fav = rng.choice(options)
            out.append([
                f"<reasoning> view {i}: the product shows {fav if rng.random() < 0.7 else rng.choice(options)} "
                f"features. </reasoning><answer> {fav if rng.random() < 0.7 else rng.choice(options)} </answer>"
                for i in range(sampling.n)
            ])
        return out
