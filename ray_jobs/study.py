"""`ray job submit` entrypoint for a threshold or pool-size study (DPO and SL side by side): exactly `attrpipe
study`, same arguments. Its arms run as Ray tasks across the cluster, as many at once as fit (study.max_concurrent_arms
caps them); run.output_dir and the catalog must be on storage every node sees.

    ray job submit --working-dir . --runtime-env ray_jobs/runtime_env.yaml -- \\
        python ray_jobs/study.py threshold|pool-size conf/paper.yaml run.output_dir=s3://bucket/runs
"""

from _entrypoint import run

if __name__ == "__main__":
    run("study")
