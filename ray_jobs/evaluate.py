"""`ray job submit` entrypoint for greedy evaluation of a labeled test set: exactly `attrpipe evaluate`, same
arguments.

    ray job submit --working-dir . --runtime-env ray_jobs/runtime_env.yaml -- \\
        python ray_jobs/evaluate.py conf/paper.yaml --adapter s3://bucket/runs/paper/round-2/adapter
"""

from _entrypoint import run

if __name__ == "__main__":
    run("evaluate")
