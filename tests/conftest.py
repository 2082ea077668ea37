import os
from pathlib import Path

import pytest

# Every Ray the tests start (here, in subprocesses, the `ray start --head` of test_ray_jobs.py) is single-node: keep
# its GCS, raylet and workers on the loopback address. By default Ray binds a local node to the machine's outward
# interface address, and tests send traffic only to 127.0.0.1. Read by Ray when it is first imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


@pytest.fixture(scope="session", autouse=True)
def _run_from_repo_root():
    """Configs use paths relative to the repository root (conf/taxonomy, ...)."""
    old = os.getcwd()
    os.chdir(REPO)
    yield
    os.chdir(old)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from attrpipe.models.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


def init_test_ray(num_cpus: int = 2):
    """A local Ray of ``num_cpus`` logical CPUs whose workers can import the tests' fakes."""
    import ray

    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(TESTS_DIR), "OMP_NUM_THREADS": "1",
                                  "TOKENIZERS_PARALLELISM": "false"}},
    )


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session: 2 CPUs, workers can import the tests' fakes."""
    import ray

    if not ray.is_initialized():
        init_test_ray(2)
    yield ray
    ray.shutdown()
