"""A study's arms side by side: what an arm needs, how many fit, each arm's share, the lines it prints (no Ray)."""

import pytest
from omegaconf import OmegaConf

from attrpipe.config import load_config
from attrpipe.study import arm_line
from attrpipe.study_cluster import (READ_CPUS, arm_need, arms_that_fit, concurrency, error_line, share_overrides,
                                    stage_needs)


def _ray(**over):
    cfg = load_config("conf/base.yaml", [f"{k}={v}" for k, v in over.items()])
    return cfg.ray


def test_an_arm_needs_its_largest_stage_per_resource():
    # base.yaml: one engine actor of 1 GPU and 1 CPU, CPU stages of 1 CPU; one training worker of 1 GPU, 1 CPU
    needs = stage_needs(_ray())
    assert needs["generation"] == {"CPU": 1 + 2 * 1, "GPU": 1}
    assert needs["training"] == {"CPU": 1 + READ_CPUS, "GPU": 1}
    # 8 engine actors with tensor parallelism 2, 4 training workers, CPU stages capped at 3 actors of 0.5 CPU each
    needs = stage_needs(_ray(**{"ray.engine.num_actors": 8, "ray.engine.tensor_parallel_size": 2,
                                "ray.train.num_workers": 4, "ray.preprocess.max_actors": 3,
                                "ray.preprocess.num_cpus_per_task": 0.5}))
    assert needs["generation"] == {"CPU": 8 * 1 + 2 * 3 * 0.5, "GPU": 16}
    assert needs["training"] == {"CPU": 4 * 1 + READ_CPUS, "GPU": 4}
    assert arm_need(needs) == {"CPU": 11, "GPU": 16}
    # CPU training (tiny_cpu.yaml): no GPU asked for anywhere
    cpu = load_config("conf/tiny_cpu.yaml").ray
    assert arm_need(stage_needs(cpu)) == {"CPU": 3.0, "GPU": 0.0}


def test_how_many_arms_fit_is_the_scarcest_resource():
    need = {"CPU": 3.0, "GPU": 2.0}
    assert arms_that_fit({"CPU": 64, "GPU": 16}, need) == 8  # GPUs decide
    assert arms_that_fit({"CPU": 10, "GPU": 16}, need) == 3  # CPUs decide
    assert arms_that_fit({"CPU": 64}, need) == 0  # no GPU at all: not one
    assert arms_that_fit({"CPU": 4.0}, {"CPU": 2.0, "GPU": 0.0}) == 2  # a resource not needed is not counted
    assert arms_that_fit({"CPU": 2.9}, {"CPU": 1.5}) == 1
    assert arms_that_fit({"CPU": 0.3}, {"CPU": 0.1 + 0.2}) == 1  # a need summed in floats (0.30000000000000004)
    assert arms_that_fit({"CPU": 3.0}, {"CPU": 1.5}) == 2


@pytest.mark.parametrize("cap, fit, jobs, expected", [
    (None, 8, 27, 8),  # as many as fit
    (2, 8, 27, 2),  # the cap
    (2, 1, 27, 1),  # a cluster that fits one: in turn, whatever the cap
    (None, 0, 27, 1),  # none fits yet (an autoscaling cluster): one waits for its resources
    (None, 8, 3, 3),  # never more than there are jobs
])
def test_concurrency(cap, fit, jobs, expected):
    assert concurrency(cap, fit, jobs) == expected


def test_concurrency_refuses_a_cap_below_one():
    with pytest.raises(ValueError, match="max_concurrent_arms"):
        concurrency(0, 4, 10)


def test_each_arm_sizes_its_cpu_stages_on_its_share():
    pre = OmegaConf.create({"num_cpus_per_task": 1.0, "max_actors": None, "cpus_available": None})
    assert share_overrides({"CPU": 16.0}, 4, pre) == {"ray": {"preprocess": {"cpus_available": 4.0}}}
    assert share_overrides({"CPU": 16.0}, 1, pre) == {}  # one at a time: the whole cluster
    capped = OmegaConf.merge(pre, {"max_actors": 2})
    assert share_overrides({"CPU": 16.0}, 4, capped) == {}  # the operator's cap already bounds them
    given = OmegaConf.merge(pre, {"cpus_available": 3.0})
    assert share_overrides({"CPU": 16.0}, 4, given) == {}


def test_an_error_is_one_line_of_the_arms_own_exception():
    import ray.exceptions

    wrapped = ray.exceptions.RayTaskError("_call", "Traceback (most recent call last):\n  ...\nRuntimeError: x",
                                          RuntimeError("/runs/a holds a loop run with a different configuration\n"
                                                       "second line")).as_instanceof_cause()
    assert error_line(wrapped) == "RuntimeError: /runs/a holds a loop run with a different configuration"
    assert error_line(ray.exceptions.WorkerCrashedError()).startswith("WorkerCrashedError: The worker died")
    assert error_line(KeyError()) == "KeyError"
    assert len(error_line(ValueError("x" * 1000))) == 300


def test_the_terminal_lines_of_a_job():
    assert arm_line("pool-size", "seed 0: dpo-pool-8", "running", running=2, waiting=3) == (
        "[study pool-size] seed 0: dpo-pool-8: running (2 running, 3 queued)")
    row = {"accuracy": 0.45, "sft_accuracy": 0.439}
    assert arm_line("pool-size", "seed 0: dpo-pool-8", "done", seconds=61.4, row=row) == (
        "[study pool-size] seed 0: dpo-pool-8: done in 61s: accuracy 45.0%, seed SFT 43.9%, lift +1.1")
    assert arm_line("threshold", "seed 1: shared seed SFT and chains", "done", seconds=5) == (
        "[study threshold] seed 1: shared seed SFT and chains: done in 5s")
    assert arm_line("threshold", "seed 0: sl-C-0.5", "failed", seconds=3, error="RuntimeError: boom") == (
        "[study threshold] seed 0: sl-C-0.5: failed in 3s: RuntimeError: boom")


# --- the graph on a local Ray (tiny functions, no training) -------------------------------------------------------


def _sleep_then(seconds: float, value, dep=None):
    import time

    time.sleep(seconds)
    return value if dep is None else value + dep


def _boom(message: str, dep=None):
    raise RuntimeError(message)


def test_jobs_run_at_most_k_at_once_after_their_dependency_and_a_failure_fails_only_its_dependants(ray_local):
    from attrpipe.study_cluster import Job, run_jobs

    jobs = [Job("a", _sleep_then, (0.6, 1)), Job("c", _boom, ("no GPU left\nat line 3",)),
            Job("b", _sleep_then, (0.1, 10), after="a"), Job("d", _sleep_then, (0.1, 100), after="c"),
            Job("e", _sleep_then, (0.3, 1000))]
    started, ended = [], []
    run_jobs(jobs, 2, on_start=lambda j, n, w: started.append((j.name, n, w)), on_end=lambda j: ended.append(j.name))
    by = {j.name: j for j in jobs}
    assert by["a"].result == 1 and by["b"].result == 11 and by["e"].result == 1000  # b got a's result
    assert by["c"].error == "RuntimeError: no GPU left" and by["c"].result is None
    assert by["d"].error == "not run: c failed (RuntimeError: no GPU left)" and by["d"].started == by["d"].ended
    assert by["b"].started >= by["a"].ended  # after its dependency
    assert [n for _, n, _ in started] and max(n for _, n, _ in started) <= 2  # never more than 2 in flight
    assert started[:2] == [("a", 1, 4), ("c", 2, 3)]  # in order; b waits for a, so e goes before it
    assert sorted(ended) == ["a", "b", "c", "d", "e"]
    for x in jobs:  # when it ran, as the driver saw it: a window of at most 2 at every moment
        assert sum(1 for y in jobs if y.started <= x.started < y.ended) <= 2
