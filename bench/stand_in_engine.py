"""A fixed-latency stand-in engine for measuring the data plane. It lives only in bench/, never in the package.

Each generate() call sleeps ``latency_s`` per request (as a model would take time) and returns n well-formed chains
whose answers follow a fixed, seeded pattern, so consensus, pairs and writing do their full work. With
``$ATTRPIPE_BENCH_REQUEST_LOG`` set (a directory), each call appends how many requests it was sent to
``requests-<pid>.log`` there: the engine's own count (:func:`requests_sent`).
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
        log = os.environ.get("ATTRPIPE_BENCH_REQUEST_LOG")
        if log:
            with open(os.path.join(log, f"requests-{os.getpid()}.log"), "a") as f:
                f.write(f"{len(requests)}\n")
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


def requests_sent(log_dir: str) -> int:
    """The requests the stand-in engines logging to ``log_dir`` were sent, summed (then forgotten)."""
    total = 0
    for name in os.listdir(log_dir):
        if name.startswith("requests-"):
            with open(os.path.join(log_dir, name)) as f:
                total += sum(int(line) for line in f if line.strip())
            os.remove(os.path.join(log_dir, name))
    return total
