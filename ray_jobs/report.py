"""`ray job submit` entrypoint for the HTML report of runs: exactly `attrpipe report`, same arguments.

    ray job submit --working-dir . --runtime-env ray_jobs/runtime_env.yaml -- \\
        python ray_jobs/report.py s3://bucket/runs/paper
"""

from _entrypoint import run

if __name__ == "__main__":
    run("report")
