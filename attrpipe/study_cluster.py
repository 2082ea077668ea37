"""A study's arms side by side on the cluster.

A study is a small graph. Per seed, one *shared* job (the seed SFT and its evaluation, the round-1 chains, the pool's
greedy answers: attrpipe.study), then that seed's arms (value x method), each an ordinary loop run. Each job is a Ray
task that asks for no resources itself (``num_cpus=0``): its stages ask for theirs when they run (Ray Train's workers
and their GPUs, Ray Data's engine actors and CPU pools) and give them back when they end, so a job never holds one
stage's resources while it waits for another's. Ray decides where each stage runs; the tasks run wherever Ray puts
them, so a study's paths must be on storage every node sees (the cluster's shared file system or ``s3://``).

One thing is decided here: how many jobs run at once,
``min(study.max_concurrent_arms, the arms that fit in the cluster at the start)``. An arm's need is its largest
stage's, per resource (:func:`stage_needs`): with that many at once, every stage of every running arm finds its
resources, whatever stage the others are in. More at once could deadlock on a cluster too small for them: two arms
whose Ray Data pipelines each hold half of the CPUs the other's next stage waits for, or two trainings whose workers
leave no CPU for either's data reading. Each arm's CPU stages are then sized on its share of the cluster's CPUs
(``ray.preprocess.cpus_available``), not on all of them.

Why plain tasks and not Ray Tune: a Tune trial reserves its resources for its whole life (a placement group), while
an arm's stages need different resources in turn (engines, then trainers, then engines) and Ray Train v2 and Ray
Data place their own workers outside a trial's reservation; an arm that reserved its largest stage and whose stages
then asked for theirs again would count twice. Tasks that hold nothing, admitted ``k`` at a time with ``ray.wait``
(Ray's pattern for bounding the work in flight), leave every placement to Ray.

The pure part (needs, how many fit, each arm's share, the status lines, an error's one line) is tested without Ray.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["READ_CPUS", "stage_needs", "arm_need", "arms_that_fit", "concurrency", "share_overrides", "error_line",
           "Job", "run_jobs"]

# Ray Data reads a training set while its workers train, in tasks of 1 CPU each (attrpipe.train.driver)
READ_CPUS = 1.0


def stage_needs(ray_cfg) -> dict[str, dict[str, float]]:
    """What each kind of stage asks Ray for at once (``ray`` of a configuration): ``generation`` (pseudo-labeling and
    evaluation: the engine actors, and one CPU-stage actor each for preparation and for scoring, or
    ``ray.preprocess.max_actors`` of them when set) and ``training`` (the workers, plus Ray Data's read of the
    training set)."""
    e, p, t = ray_cfg.engine, ray_cfg.preprocess, ray_cfg.train
    cpu_actors = 2 * (1 if p.get("max_actors") is None else int(p.max_actors))
    gen = {"CPU": e.num_actors * e.num_cpus_per_actor + cpu_actors * p.num_cpus_per_task,
           "GPU": e.num_actors * e.num_gpus_per_actor * e.tensor_parallel_size}
    train = {"CPU": t.num_workers * t.num_cpus_per_worker + READ_CPUS,
             "GPU": float(t.num_workers) if t.use_gpu else 0.0}
    return {"generation": {k: float(v) for k, v in gen.items()}, "training": {k: float(v) for k, v in train.items()}}


def arm_need(needs: dict[str, dict[str, float]]) -> dict[str, float]:
    """An arm's need: its largest stage's, per resource (its stages run one at a time)."""
    out: dict[str, float] = {}
    for need in needs.values():
        for r, v in need.items():
            out[r] = max(out.get(r, 0.0), v)
    return out


def arms_that_fit(cluster: dict[str, float], need: dict[str, float]) -> int:
    """How many arms of ``need`` fit in ``cluster`` (Ray's ``cluster_resources()``) at once; 0 when not one."""
    fits = [math.floor(cluster.get(r, 0.0) / v + 1e-9) for r, v in need.items() if v > 0]
    return min(fits) if fits else 0


def concurrency(max_concurrent: int | None, fit: int, jobs: int) -> int:
    """Jobs at once: at most ``max_concurrent`` (None: no cap), at most what fits, at least 1 (on a cluster that
    cannot hold one arm yet, an autoscaling one, one job waits for its resources), never more than there are jobs."""
    k = max(1, fit)
    if max_concurrent is not None:
        if max_concurrent < 1:
            raise ValueError(f"study.max_concurrent_arms: {max_concurrent}; at least 1, or null (as many as fit)")
        k = min(k, max_concurrent)
    return max(1, min(k, jobs))


def share_overrides(cluster: dict[str, float], k: int, preprocess) -> dict:
    """Each arm's configuration when ``k`` run at once: its CPU stages sized on its share of the cluster's CPUs
    (``ray.preprocess.cpus_available``) unless ``ray.preprocess.max_actors`` already caps them; nothing for one at a
    time."""
    if k <= 1 or preprocess.get("max_actors") is not None or preprocess.get("cpus_available") is not None:
        return {}
    return {"ray": {"preprocess": {"cpus_available": cluster.get("CPU", 0.0) / k}}}


def error_line(exc: BaseException) -> str:
    """An arm's failure in one line: the exception raised in it (not Ray's wrapper and traceback), its first line."""
    cause = getattr(exc, "cause", None) or exc  # ray.exceptions.RayTaskError keeps the task's own exception
    text = str(cause).strip()
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = f"{type(cause).__name__}: {first}" if first else type(cause).__name__
    return line if len(line) <= 300 else line[:297] + "..."


# --- the Ray layer ------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One task of the graph: ``fn(*args, <the result of the job named after>)`` in a Ray task."""
    name: str
    fn: Callable
    args: tuple
    after: str | None = None  # a job whose result is this job's last argument; its failure fails this one
    result: Any = None
    error: str | None = None
    started: float | None = None
    ended: float | None = None
    extra: dict = field(default_factory=dict)


def run_jobs(jobs: list[Job], k: int, *, on_start: Callable[[Job, int, int], None] | None = None,
             on_end: Callable[[Job], None] | None = None) -> list[Job]:
    """Run ``jobs`` as Ray tasks holding no resources, at most ``k`` at once, each as soon as the job it runs after is
    done, in the order given; a failed job fails those that run after it. Returns the jobs with their results or
    errors (a job's exception never stops the others). ``on_start(job, running, waiting)`` and ``on_end(job)`` say
    what happens, on the driver."""
    import ray

    remote = ray.remote(num_cpus=0, max_retries=0)(_call)
    by_name = {j.name: j for j in jobs}
    waiting = list(jobs)
    in_flight: dict[Any, Job] = {}
    while waiting or in_flight:
        for job in list(waiting):
            if len(in_flight) >= k:
                break
            dep = by_name.get(job.after) if job.after else None
            if dep is not None and dep.error is not None:
                waiting.remove(job)
                job.error = f"not run: {dep.name} failed ({dep.error})"
                job.started = job.ended = time.time()
                if on_end:
                    on_end(job)
                continue
            if dep is not None and dep.ended is None:
                continue
            waiting.remove(job)
            args = (*job.args, dep.result) if dep is not None else job.args
            job.started = time.time()
            in_flight[remote.remote(job.fn, *args)] = job
            if on_start:
                on_start(job, len(in_flight), len(waiting))
        if not in_flight:
            continue  # every waiting job's dependency failed: recorded above
        done, _ = ray.wait(list(in_flight), num_returns=1)
        job = in_flight.pop(done[0])
        try:
            job.result = ray.get(done[0])
        except Exception as exc:  # noqa: BLE001 (an arm's failure is recorded; the other arms go on)
            job.error = error_line(exc)
        job.ended = time.time()
        if on_end:
            on_end(job)
    return jobs


def _call(fn: Callable, *args):
    return fn(*args)
