"""Connecting to Ray the same way everywhere (CLI, ray job entrypoints, tests)."""

from __future__ import annotations

import json
import os

__all__ = ["init_ray"]

# Ray Data lets a stage run ahead of the next one until half of the stage's object-store budget is used before its
# downstream-capacity backpressure starts: for pseudo-labeling, CPU preparation would queue decoded images far ahead
# of the engines, and the queue would grow with the run's length up to that budget. At 0 the backpressure always
# applies (a stage may queue up to `downstream_capacity_backpressure_ratio`, 2, times what the next stage has in
# flight). Ray reads this when ray.data is first imported, so it is set when attrpipe is imported (attrpipe/__init__);
# an explicit value in the environment wins.
os.environ.setdefault("RAY_DATA_DOWNSTREAM_CAPACITY_OBJECT_STORE_BUDGET_UTIL_THRESHOLD", "0")
# Ray Data (2.60) packs Parquet files into read tasks of up to this many uncompressed bytes (its default: 128 MiB) and
# reads a task's files with one thread each. attrpipe's outputs are many small files, one per unit per kind (keys/,
# pairs/, consensus/: tens of kilobytes each): at 1,000,000 listings the 3,920 files of keys/ landed in one read task
# with 3,920 threads (load average 870 on 2 cores). 128 KiB tasks read a few dozen files each.
BIN_PACKING_BYTES = "RAY_DATA_PARQUET_BIN_PACKING_BYTES"
os.environ.setdefault(BIN_PACKING_BYTES, str(128 * 1024))
# ... and lists a read's files by reading their Parquet footers on a pool of 32 actors (its default, sized for
# object-store latency), each a Python process of about 190 MB: reading the 3,920 files of a 1,000,000-listing
# output's keys/ took the index of an incremental run from 1.5 to 4.6 GB. Eight, each with its 128 concurrent reads,
# keep the listing fast on S3 at a quarter of that memory.
os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "8")


def init_ray(cfg) -> None:
    """Join the running Ray (``ray.address``, or RAY_ADDRESS as set by ``ray job submit``) or start a local one.

    Ray Data's progress bars stay on; the driver never materialises the data.
    """
    import ray

    if ray.is_initialized():
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS") or None
    # Every worker of this project runs single-threaded torch unless its resources say otherwise.
    env_vars = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TOKENIZERS_PARALLELISM": "false",
                BIN_PACKING_BYTES: os.environ[BIN_PACKING_BYTES]}
    # Inside `ray job submit`, Ray refuses a ray.init runtime env that sets a key the job's runtime env already sets
    # (ray_jobs/runtime_env.yaml sets these): the job's values win, ours fill in only what it leaves unset.
    job_env = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}").get("runtime_env") or {}
    env_vars = {k: v for k, v in env_vars.items() if k not in (job_env.get("env_vars") or {})}
    ray.init(address=address, runtime_env={"env_vars": env_vars} if env_vars else None, include_dashboard=False,
             log_to_driver=True)
