"""What every ray_jobs/ entrypoint does: run one `attrpipe` command with the job's arguments.

The arguments are parsed by attrpipe's own CLI (attrpipe.cli.main), so configs, dotlist overrides, options and the
one-line config errors (exit status 2) are the CLI's. Inside a job, RAY_ADDRESS is set by Ray, so the command joins
the cluster the job runs on instead of starting a local Ray (attrpipe/ray_utils.py).
"""

import os
import sys


def run(command: str) -> None:
    # `python ray_jobs/<stage>.py` puts ray_jobs/ first on sys.path; the package is the working directory's (uploaded
    # with --working-dir, which Ray also puts on PYTHONPATH) or, without one, the installed attrpipe.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from attrpipe.cli import main

    # --verbose: a job's driver output is already its log (`ray job logs`, the dashboard), so the libraries' logs stay
    # in it instead of going to a file on the head node (the CLI's default on a terminal, attrpipe.console)
    verbose = ["--verbose"] if command != "report" else []
    raise SystemExit(main([command, *sys.argv[1:], *verbose]))
