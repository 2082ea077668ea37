"""`ray job submit` entrypoint for the pseudo-labeling stage: exactly `attrpipe pseudolabel`, same arguments.

    ray job submit --working-dir . --runtime-env ray_jobs/runtime_env.yaml -- \\
        python ray_jobs/pseudolabel.py conf/paper.yaml run.output_dir=s3://bucket/runs [--catalog URI] [--out URI]
"""

from _entrypoint import run

if __name__ == "__main__":
    run("pseudolabel")
