"""`ray job submit` entrypoint for seed SFT, DPO, ScPO or self-learning on Ray Train: exactly `attrpipe train`, same
arguments.

    ray job submit --working-dir . --runtime-env ray_jobs/runtime_env.yaml -- \\
        python ray_jobs/train.py sft|dpo|scpo|sl conf/paper.yaml run.output_dir=s3://bucket/runs
"""

from _entrypoint import run

if __name__ == "__main__":
    run("train")
