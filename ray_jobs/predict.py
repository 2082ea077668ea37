"""`ray job submit` entrypoint for catalog prediction with a trained adapter: exactly `attrpipe predict`, same
arguments.

    ray job submit --working-dir . --runtime-env ray_jobs/runtime_env.yaml -- \\
        python ray_jobs/predict.py conf/paper.yaml \\
            --catalog s3://bucket/catalog \\
            --adapter s3://bucket/runs/paper/round-2/adapter \\
            [--since s3://bucket/predict/yesterday --out s3://bucket/predict/today]
"""

from _entrypoint import run

if __name__ == "__main__":
    run("predict")
