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


class CountingEngine(ScriptedEngine):
    """ScriptedEngine that records every request it is sent, one request id per line, in
    ``<model.path>/requests-<pid>.log``: the requests an engine received, counted by the engine. ``model.path`` names
    a directory holding a ``config.json`` (so the model has a fingerprint). ``$ATTRPIPE_TEST_ENGINE_DELAY_S`` (default
    0) is slept per request, to give a test time to kill a run in the middle."""

    def __init__(self, log_dir: str):
        super().__init__("scripted")
        self.log_dir = log_dir
        self.delay_s = float(os.environ.get("ATTRPIPE_TEST_ENGINE_DELAY_S", "0"))

    @classmethod
    def from_config(cls, cfg, adapter=None):
        return cls(cfg.model.path)

    def generate(self, requests, sampling):
        import time

        with open(os.path.join(self.log_dir, f"requests-{os.getpid()}.log"), "a") as f:
            f.writelines(f"{r.request_id}\n" for r in requests)
        time.sleep(self.delay_s * len(requests))
        return super().generate(requests, sampling)


def engine_requests(log_dir) -> list[str]:
    """Every request id a CountingEngine of ``log_dir`` was sent (then forgets them: the next call counts anew)."""
    import glob

    ids = []
    for path in sorted(glob.glob(os.path.join(str(log_dir), "requests-*.log"))):
        with open(path) as f:
            ids += f.read().split()
        os.remove(path)
    return ids


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
