"""`ray job submit` entrypoint for the whole loop (seed SFT, then rounds of pseudo-labeling -> DPO or SL ->
evaluation):
exactly `attrpipe loop`, same arguments.

    ray job submit --working-dir . --runtime-env ray_jobs/runtime_env.yaml -- \\
        python ray_jobs/loop.py conf/paper.yaml run.output_dir=s3://bucket/runs
"""

from _entrypoint import run

if __name__ == "__main__":
    run("loop")
