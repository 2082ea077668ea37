"""Capacity planning of a whole study: GPU-hours per stage, and its wall time on a cluster of N GPUs with its arms side
by side (``attrpipe plan CONFIG --study pool-size|threshold``; attrpipe.plan keeps the arithmetic of one round).

Pure arithmetic on declared figures, as attrpipe.plan. The study is what ``attrpipe study`` runs
(attrpipe.study, attrpipe.study_cluster):

- per seed, one shared job: the seed SFT (``seed_listings x attributes`` examples of prompt + chain tokens, ``sft
  epochs``), its evaluation (greedy on the test split; with ``vote``, ``chains`` sampled chains more; with ``fit``,
  greedy on its own seed split) and the round-1 chains over the largest pool;
- per arm (value x method x seed): round 1 trains on its pool's pairs (its chains are the shared ones, re-scored), then
  evaluates (greedy, plus the vote); each later round samples its pool again first. DPO and SL are counted alike
  (``pairs_per_kept`` records of 2 x (prompt + chain) tokens per kept example): an upper bound for SL, which trains on
  one chain per record and has no reference model.

A stage runs on its own GPUs (the configuration's: engine actors x tensor parallelism for generation, training
workers for training): wall = GPU-seconds / (its GPUs x efficiency) + start-up. An arm needs the larger of the two;
on N GPUs ``min(max_concurrent_arms, N // arm GPUs)`` jobs run at once, in the order attrpipe.study_cluster.run_jobs
takes them (each seed's shared job first, a seed's arms after it), which :func:`schedule` replays.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

__all__ = ["StudyJob", "schedule", "plan_study", "format_study_plan"]


@dataclass(frozen=True)
class StudyJob:
    name: str
    hours: float  # wall
    after: str | None = None


def schedule(jobs: list[StudyJob], k: int) -> float:
    """The study's wall hours with at most ``k`` jobs at once: each job starts as soon as a slot is free and the job it
    runs after has ended, the first such job in order first (attrpipe.study_cluster.run_jobs)."""
    if k < 1:
        raise ValueError("k: at least 1 job at once")
    t, running, ended, waiting = 0.0, [], {}, list(jobs)
    while waiting or running:
        for job in list(waiting):
            if len(running) >= k:
                break
            if job.after is not None and job.after not in ended:
                continue
            waiting.remove(job)
            heapq.heappush(running, (t + job.hours, job.name))
        if not running:
            raise ValueError(f"{waiting[0].name} runs after a job that is not in the study")
        t, name = heapq.heappop(running)
        ended[name] = t
    return t


def plan_study(*, kind: str, values: list, methods: list[str], seeds: list[int], rounds: int,
               listings: int | None, seed_listings: int, attributes_per_listing: float, chains: int,
               tokens_per_chain: float, prompt_tokens: float, tokens_per_s: float, train_tokens_per_s: float,
               engine_gpus: int, train_gpus: int, cluster_gpus: list[int], prefill_tokens_per_s: float | None = None,
               keep_rate: float = 0.6, pairs_per_kept: float = 2.0, train_epochs: int = 1, sft_epochs: int = 1,
               eval_listings: int = 0, eval_tokens: float = 200, vote: bool = True, fit: bool = True,
               max_concurrent_arms: int | None = None, efficiency: float = 1.0, startup_s: float = 0.0) -> dict:
    """A study's stages (runs, GPU-hours), every job's wall hours, and per cluster size its concurrency and wall time
    (also one job at a time). ``listings``: the pool of a threshold study (a pool-size study's pools are its
    ``values``)."""
    checks = {"kind": kind in ("threshold", "pool-size"), "values": len(values) >= 1, "methods": len(methods) >= 1,
              "seeds": len(seeds) >= 1, "rounds": rounds >= 1, "listings": kind == "pool-size" or
              (listings is not None and listings >= 1), "seed_listings": seed_listings >= 0,
              "attributes_per_listing": attributes_per_listing > 0, "chains": chains >= 1,
              "tokens_per_chain": tokens_per_chain > 0, "prompt_tokens": prompt_tokens >= 0,
              "tokens_per_s": tokens_per_s > 0, "train_tokens_per_s": train_tokens_per_s > 0,
              "engine_gpus": engine_gpus >= 1, "train_gpus": train_gpus >= 1,
              "cluster_gpus": len(cluster_gpus) >= 1 and all(n >= 1 for n in cluster_gpus),
              "prefill_tokens_per_s": prefill_tokens_per_s is None or prefill_tokens_per_s > 0,
              "keep_rate": 0 <= keep_rate <= 1, "pairs_per_kept": pairs_per_kept >= 0, "train_epochs": train_epochs >= 1,
              "sft_epochs": sft_epochs >= 1, "eval_listings": eval_listings >= 0, "eval_tokens": eval_tokens > 0,
              "max_concurrent_arms": max_concurrent_arms is None or max_concurrent_arms >= 1,
              "efficiency": 0 < efficiency <= 1, "startup_s": startup_s >= 0}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"{bad[0]}: out of range")
    a = attributes_per_listing

    def generate(listings_: float, n: int, tokens: float) -> float:  # GPU-seconds
        s = listings_ * a * n * tokens / tokens_per_s
        return s + (listings_ * a * prompt_tokens / prefill_tokens_per_s if prefill_tokens_per_s else 0.0)

    def train(records: float, tokens: float, epochs: int) -> float:
        return records * epochs * tokens / train_tokens_per_s

    pair_tokens = 2 * (prompt_tokens + tokens_per_chain)

    def evaluate(with_fit: bool) -> float:
        s = generate(eval_listings, 1, eval_tokens)
        if vote:
            s += generate(eval_listings, chains, tokens_per_chain)
        if with_fit:
            s += generate(seed_listings, 1, eval_tokens)
        return s

    def pool(value) -> int:
        return int(value) if kind == "pool-size" else int(listings)

    largest = max(pool(v) for v in values)
    stages: dict[str, dict] = {}
    jobs: list[StudyJob] = []

    def add(stage: str, gpu_seconds: float, gpus: int) -> float:
        st = stages.setdefault(stage, {"runs": 0, "gpu_hours": 0.0, "gpus": gpus})
        st["runs"] += 1
        st["gpu_hours"] += gpu_seconds / 3600
        return (gpu_seconds / (gpus * efficiency) + startup_s) / 3600

    for s in seeds:
        wall = add("seed SFT: training", train(seed_listings * a, prompt_tokens + tokens_per_chain, sft_epochs),
                   train_gpus)
        wall += add("seed SFT: evaluation", evaluate(fit), engine_gpus)
        wall += add(f"round-1 chains ({largest:,} listings, shared)", generate(largest, chains, tokens_per_chain),
                    engine_gpus)
        jobs.append(StudyJob(f"seed {s}: shared", wall))
    for s in seeds:
        for v in values:
            for m in methods:
                wall = 0.0
                for r in range(1, rounds + 1):
                    if r > 1:
                        wall += add("arms: pseudo-labeling (rounds 2+)", generate(pool(v), chains, tokens_per_chain),
                                    engine_gpus)
                    pairs = pool(v) * a * keep_rate * pairs_per_kept
                    wall += add("arms: training (DPO, SL)", train(pairs, pair_tokens, train_epochs), train_gpus)
                    wall += add("arms: evaluation", evaluate(False), engine_gpus)
                jobs.append(StudyJob(f"seed {s}: {m} {v}", wall, after=f"seed {s}: shared"))
    arm_gpus = max(engine_gpus, train_gpus)
    clusters = []
    for n in cluster_gpus:
        if n < arm_gpus:
            raise ValueError(f"cluster_gpus: {n} GPUs cannot hold one arm, which needs {arm_gpus}")
        k = min(n // arm_gpus, len(jobs), max_concurrent_arms or len(jobs))
        clusters.append({"gpus": n, "concurrency": k, "wall_hours": schedule(jobs, k)})
    assumptions = dict(kind=kind, values=list(values), methods=list(methods), seeds=list(seeds), rounds=rounds,
                       listings=listings, seed_listings=seed_listings, attributes_per_listing=a, chains=chains,
                       tokens_per_chain=tokens_per_chain, prompt_tokens=prompt_tokens, tokens_per_s=tokens_per_s,
                       train_tokens_per_s=train_tokens_per_s, engine_gpus=engine_gpus, train_gpus=train_gpus,
                       cluster_gpus=list(cluster_gpus), prefill_tokens_per_s=prefill_tokens_per_s,
                       keep_rate=keep_rate, pairs_per_kept=pairs_per_kept, train_epochs=train_epochs,
                       sft_epochs=sft_epochs, eval_listings=eval_listings, eval_tokens=eval_tokens, vote=vote, fit=fit,
                       max_concurrent_arms=max_concurrent_arms, efficiency=efficiency, startup_s=startup_s)
    return {"assumptions": assumptions, "stages": stages, "jobs": [vars(j) for j in jobs], "arm_gpus": arm_gpus,
            "gpu_hours": sum(st["gpu_hours"] for st in stages.values()), "clusters": clusters,
            "one_at_a_time_hours": schedule(jobs, 1)}


def _hours(h: float) -> str:
    minutes = round(h * 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def format_study_plan(plan: dict) -> str:
    """The stages (runs, GPUs each, GPU-hours), the study's total, its wall time per cluster size, the assumptions."""
    a = plan["assumptions"]
    lines = ["| stage | runs | GPUs each | GPU-hours |", "|---|---|---|---|"]
    for name, st in plan["stages"].items():
        lines.append(f"| {name} | {st['runs']} | {st['gpus']} | {st['gpu_hours']:.2f} |")
    lines.append(f"| study | {len(plan['jobs'])} jobs | | {plan['gpu_hours']:.2f} |")
    lines += ["", "| cluster | jobs at once | wall |", "|---|---|---|"]
    for c in plan["clusters"]:
        lines.append(f"| {c['gpus']} GPUs | {c['concurrency']} | {_hours(c['wall_hours'])} |")
    lines.append(f"| one job at a time | 1 | {_hours(plan['one_at_a_time_hours'])} |")
    arms = [j for j in plan["jobs"] if j["after"]]
    pools = "study.pool_sizes" if a["kind"] == "pool-size" else f"{a['listings']:,} listings"
    lines += [
        "",
        "assumptions:",
        f"  {a['kind']} study: {len(a['values'])} value(s) x {len(a['methods'])} method(s) x {len(a['seeds'])} "
        f"seed(s) = {len(arms)} arms of {a['rounds']} round(s), pools: {pools}; one shared job per seed",
        f"  {a['attributes_per_listing']:g} attributes per listing; {a['chains']} chains of {a['tokens_per_chain']:g} "
        f"tokens; {a['prompt_tokens']:g} prompt tokens; generation {a['tokens_per_s']:g} tokens/s per GPU"
        + (f", prefill {a['prefill_tokens_per_s']:g}" if a["prefill_tokens_per_s"] else ", prefill not counted"),
        f"  training {a['train_tokens_per_s']:g} tokens/s per GPU; keep rate {a['keep_rate']:g}, "
        f"{a['pairs_per_kept']:g} pairs per kept example (SL counted as DPO: an upper bound); seed SFT on "
        f"{a['seed_listings']:,} listings",
        f"  evaluation: {a['eval_listings']:,} listings, greedy {a['eval_tokens']:g} tokens"
        + (f", plus the {a['chains']}-chain vote" if a["vote"] else "") + ("; the seed SFT's fit" if a["fit"] else ""),
        f"  an arm uses {plan['arm_gpus']} GPU(s) (generation {a['engine_gpus']}, training {a['train_gpus']}); "
        f"{a['efficiency']:.0%} efficiency; {a['startup_s']:g} s start-up per stage"
        + (f"; at most {a['max_concurrent_arms']} jobs at once" if a["max_concurrent_arms"] else ""),
    ]
    return "\n".join(lines)
