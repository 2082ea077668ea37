"""Connecting to Ray the same way everywhere (CLI, ray job entrypoints, tests)."""

from __future__ import annotations

import os

__all__ = ["init_ray"]


def init_ray(cfg) -> None:
    """Join the running Ray (``ray.address``, or RAY_ADDRESS as set by ``ray job submit``) or start a local one.

    Ray Data's progress bars stay on; the driver never materialises the data.
    """
    import ray

    if ray.is_initialized():
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS") or None
    # Every worker of this project runs single-threaded torch unless its resources say otherwise.
    env = {"env_vars": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TOKENIZERS_PARALLELISM": "false"}}
    ray.init(address=address, runtime_env=env, include_dashboard=False, log_to_driver=True)
