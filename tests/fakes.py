"""Test doubles that plug into attrpipe through its public engine hook (``generation.engine: fakes:ScriptedEngine``).

ScriptedEngine answers like a model with an opinion: per example it picks a favourite option and an agreement
rate, then samples each chain from those, deterministically from (run seed, request id). So consensus, thresholds
and pairs get exercised with known, varied outcomes, without a trained model.
"""

from __future__ import annotations

import os
import random
import signal

from attrpipe.engines.base import GenerationRequest, SamplingSpec, request_seed


def options_of(request: GenerationRequest) -> list[str]:
    text = request.messages[-1]["content"][-1]["text"]
    return text.rsplit("Options: ", 1)[1].split(", ")


class ScriptedEngine:
    def __init__(self, model: str = "scripted"):
        self.model = model
        self.calls = 0

    @classmethod
    def from_config(cls, cfg, adapter=None):
        return cls(cfg.model.path)

    def identity(self) -> dict:
        return {"model": self.model, "model_fingerprint": "scripted", "adapter": None, "adapter_fingerprint": None}

    def generate(self, requests: list[GenerationRequest], sampling: SamplingSpec) -> list[list[str]]:
        self.calls += 1
        out = []
        for r in requests:
            options = options_of(r)
            rng = random.Random(request_seed(sampling.seed, r.request_id))
            favourite = rng.choice(options)
            agree = rng.choice([0.3, 0.5, 0.7, 0.9, 1.0])
            chains = []
            for i in range(1 if sampling.greedy else sampling.n):
                u = rng.random()
                if sampling.greedy or u < agree:
                    answer = favourite
                elif u < agree + (1 - agree) / 2:
                    answer = rng.choice(options)
                else:
                    chains.append(f"I am not sure about chain {i}.")
                    continue
                chains.append(f"<reasoning> chain {i} looked at {len(r.images)} images </reasoning><answer> {answer} </answer>")
            out.append(chains)
        return out


class CrashOnceEngine(ScriptedEngine):
    """ScriptedEngine whose actor process dies (SIGKILL, as on a preempted node) in its second batch, once per crash
    directory: ``model.path`` names that directory, and the engine leaves ``crashed`` in it before dying."""

    def __init__(self, model: str):
        super().__init__(model)
        self.marker = os.path.join(model, "crashed")

    def identity(self) -> dict:
        return {**super().identity(), "model": "scripted"}

    def generate(self, requests, sampling):
        if self.calls == 1 and not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(f"engine actor {os.getpid()} killed itself in its second batch\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().generate(requests, sampling)
