"""Render the KubeRay manifests of this directory: ``${NAME}`` placeholders filled from DEFAULTS, then overrides.

    python cluster/render.py cluster/rayjob.yaml GPU_WORKERS_MAX=8 ENGINE_ACTORS=8 RUNS_URI=s3://b/runs > job.yaml
    kubectl apply -f job.yaml
    python cluster/render.py cluster/mlflow.yaml | kubectl apply -f -    # the MLflow server the jobs log to

Plain ``string.Template`` substitution (``envsubst`` does the same with exported variables), then the sizing is
checked: every vLLM actor (TENSOR_PARALLEL GPUs) must fit on one worker pod, and the cluster's largest size must
hold all actors and all training workers. tests/test_cluster_manifests.py renders and validates every manifest.
"""

from __future__ import annotations

import string
import sys
from pathlib import Path

__all__ = ["DEFAULTS", "render", "check_sizing", "main"]

HERE = Path(__file__).resolve().parent

DEFAULTS: dict[str, str] = {
    "NAME": "attrpipe",                          # RayCluster / RayJob name
    "IMAGE": "attrpipe:0.1.0-gpu",               # built from cluster/Dockerfile (its `# image:` line)
    "RAY_VERSION": "2.60.0",                     # the image's Ray (pyproject.toml pins the same)
    "CONFIG": "conf/paper.yaml",                 # preset, relative to /app in the image
    "MODEL": "Qwen/Qwen2.5-VL-3B-Instruct",      # model.path: a hub name or a path in the pods
    "DATA_URI": "s3://my-bucket/attrpipe/catalog",   # data.root
    "RUNS_URI": "s3://my-bucket/attrpipe/runs",      # run.output_dir: shared by every pod
    "S3_SECRET": "attrpipe-s3",                  # Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...
    "HEAD_CPUS": "4",
    "HEAD_MEMORY": "16Gi",
    "GPUS_PER_WORKER": "1",                      # GPUs of one worker pod
    "CPUS_PER_WORKER": "8",
    "MEMORY_PER_WORKER": "64Gi",
    "SHM_PER_WORKER": "16Gi",                    # /dev/shm: Ray's object store and NCCL
    "GPU_WORKERS_MIN": "0",                      # autoscaling bounds of the GPU worker group (pods)
    "GPU_WORKERS_MAX": "4",
    "ENGINE_ACTORS": "4",                        # ray.engine.num_actors: vLLM actors
    "TENSOR_PARALLEL": "1",                      # ray.engine.tensor_parallel_size: GPUs per vLLM actor
    "ENGINE_CPUS": "4",                          # ray.engine.num_cpus_per_actor
    "TRAIN_WORKERS": "4",                        # ray.train.num_workers: DPO workers, one GPU each
    "TRACKING": "true",                          # tracking.enabled: MLflow tracking of the job's runs
    "TRACKING_URI": "http://attrpipe-mlflow:5000",   # tracking.uri: cluster/mlflow.yaml's Service (<NAME>-mlflow)
                                                 # or an external MLflow server
    "MLFLOW_ARTIFACTS": "s3://my-bucket/attrpipe/mlflow",  # cluster/mlflow.yaml: where its server keeps artifacts
    "MLFLOW_STORAGE": "10Gi",                    # cluster/mlflow.yaml: its SQLite volume
    "MLFLOW_CPUS": "1",
    "MLFLOW_MEMORY": "2Gi",
}
_INTS = ("HEAD_CPUS", "GPUS_PER_WORKER", "CPUS_PER_WORKER", "GPU_WORKERS_MIN", "GPU_WORKERS_MAX", "ENGINE_ACTORS",
         "TENSOR_PARALLEL", "ENGINE_CPUS", "TRAIN_WORKERS")


def check_sizing(v: dict[str, str]) -> None:
    """Raise ValueError when the values cannot schedule: the same arithmetic Ray's scheduler would hit later."""
    n = {k: int(v[k]) for k in _INTS}
    if min(n.values()) < 0 or n["GPUS_PER_WORKER"] < 1 or n["TENSOR_PARALLEL"] < 1 or n["GPU_WORKERS_MAX"] < 1:
        raise ValueError("counts must be >= 0; GPUS_PER_WORKER, TENSOR_PARALLEL, GPU_WORKERS_MAX >= 1")
    if n["GPU_WORKERS_MIN"] > n["GPU_WORKERS_MAX"]:
        raise ValueError(f"GPU_WORKERS_MIN {n['GPU_WORKERS_MIN']} > GPU_WORKERS_MAX {n['GPU_WORKERS_MAX']}")
    if n["GPUS_PER_WORKER"] % n["TENSOR_PARALLEL"]:
        raise ValueError(f"a vLLM actor takes TENSOR_PARALLEL={n['TENSOR_PARALLEL']} GPUs of one pod; "
                         f"GPUS_PER_WORKER={n['GPUS_PER_WORKER']} is not a multiple of it")
    gpus = n["GPU_WORKERS_MAX"] * n["GPUS_PER_WORKER"]
    if n["ENGINE_ACTORS"] * n["TENSOR_PARALLEL"] > gpus:
        raise ValueError(f"ENGINE_ACTORS x TENSOR_PARALLEL = {n['ENGINE_ACTORS'] * n['TENSOR_PARALLEL']} GPUs > "
                         f"{gpus} GPUs at GPU_WORKERS_MAX")
    if n["TRAIN_WORKERS"] > gpus:
        raise ValueError(f"TRAIN_WORKERS={n['TRAIN_WORKERS']} > {gpus} GPUs at GPU_WORKERS_MAX")
    actors_per_pod = n["GPUS_PER_WORKER"] // n["TENSOR_PARALLEL"]
    if actors_per_pod * n["ENGINE_CPUS"] > n["CPUS_PER_WORKER"]:
        raise ValueError(f"{actors_per_pod} vLLM actors x ENGINE_CPUS={n['ENGINE_CPUS']} > CPUS_PER_WORKER="
                         f"{n['CPUS_PER_WORKER']}")


def render(template: str | Path, **overrides: str) -> str:
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise KeyError(f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    values = {**DEFAULTS, **{k: str(v) for k, v in overrides.items()}}
    check_sizing(values)
    return string.Template(Path(template).read_text()).substitute(values)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\nparameters and defaults:\n" +
              "\n".join(f"  {k}={v}" for k, v in DEFAULTS.items()))
        return 0 if argv else 2
    overrides = dict(a.split("=", 1) for a in argv[1:])
    try:
        sys.stdout.write(render(argv[0], **overrides))
    except (KeyError, ValueError) as e:
        print(f"render: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
