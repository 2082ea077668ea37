"""`ray job submit` for real: a local Ray head on this machine, the ray_jobs/ entrypoints submitted with the Ray Jobs
CLI exactly as docs/cluster.md tells users to (``--working-dir . --runtime-env ray_jobs/runtime_env.yaml``).

The head is our own process: ``ray start --head --block`` in a new session, on free ports, with its own temp dir and
auth token; teardown terminates that process (which stops the node it started) and then its process group. Never
``ray stop``: it would kill every Ray on the machine, including other test sessions'.

The dashboard and the job API listen on 127.0.0.1, and RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps GCS, raylet and
workers there too (Ray otherwise resolves a loopback node address to the machine's own interface address).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from catalogs import write_catalog

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of this process group remains (Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _ray_cli() -> str:
    ray = BIN / "ray"
    return str(ray) if ray.exists() else shutil.which("ray")


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray head with the dashboard (the job server) on 127.0.0.1; yields (job API address, env)."""
    tmp = tempfile.mkdtemp(prefix="attrpipe-rayjob-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    dashboard = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update({
        # `python` in job entrypoints is this interpreter, as it is the image's python on a cluster.
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        # Ray 2.60 turns token auth on for new clusters; be explicit so the test never reads or writes ~/.ray.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # the head's GCS and raylet on 127.0.0.1 (tests/conftest.py)
    })
    cmd = [_ray_cli(), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={_free_port()}",
           "--num-cpus=2", "--num-gpus=0", "--object-store-memory=200000000", "--include-dashboard=true",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
           f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
           f"--temp-dir={tmp}/ray", "--disable-usage-stats"]
    log = open(Path(tmp) / "head.log", "wb")
    head = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)
                break
            except OSError as e:
                if getattr(e, "code", None) == 401:  # up, and asking for the token as it should
                    break
            if head.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray head did not start:\n{(Path(tmp) / 'head.log').read_text()[-3000:]}")
            time.sleep(0.5)
        _wait_for_the_job_agent(address, env, head, time.time() + 90)
        yield address, env
    finally:
        # What `ray stop` does, limited to our head's own process group (ray start, GCS, raylet, dashboard, workers
        # and the job drivers all inherit it): SIGTERM, a grace period, then SIGKILL for whatever is left.
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 0)):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.time() + grace
            while time.time() < deadline and _group_alive(head.pid):
                time.sleep(0.5)
        head.wait(timeout=30)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_for_the_job_agent(address: str, env: dict, head: subprocess.Popen, deadline: float) -> None:
    """The dashboard answers before the head's job agent is up, and a submission then fails ("No available agent to
    submit job, please try again later": the job server waits 10 s for one). Submit a job that does nothing until one
    is accepted, and let it end."""
    body = json.dumps({"entrypoint": "true", "submission_id": "agent-probe"}).encode()
    while True:
        req = urllib.request.Request(f"{address}/api/jobs/", data=body, method="POST",
                                     headers={**_auth(env), "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=30).close()
            break
        except urllib.error.HTTPError as e:
            if e.code != 500 or b"No available agent" not in e.read():
                raise
        if head.poll() is not None or time.time() > deadline:
            raise RuntimeError("the ray head's job agent did not start")
        time.sleep(1)
    _wait_terminal(address, env, "agent-probe")


def _auth(env: dict) -> dict:
    """The head's token, as the Ray Jobs REST API takes it."""
    return {"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"}


def _api(address: str, env: dict, path: str) -> dict:
    """The Ray Jobs REST API (what the CLI and JobSubmissionClient call), with the head's token."""
    req = urllib.request.Request(f"{address}{path}", headers=_auth(env))
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _status(address: str, env: dict, submission_id: str) -> str:
    return _api(address, env, f"/api/jobs/{submission_id}")["status"]


def _logs(address: str, env: dict, submission_id: str) -> str:
    return _api(address, env, f"/api/jobs/{submission_id}/logs")["logs"]


def _submit(address: str, env: dict, submission_id: str, entrypoint: list[str], wait: bool):
    """`ray job submit` as a user types it; without --no-wait it tails the logs and exits 0 only on success."""
    args = ["submit", "--address", address, "--submission-id", submission_id, "--working-dir", ".",
            "--runtime-env", "ray_jobs/runtime_env.yaml"] + ([] if wait else ["--no-wait"])
    return subprocess.run([_ray_cli(), "job", *args, "--", *entrypoint], env=env, cwd=REPO, text=True,
                          capture_output=True, timeout=600)


def _wait_terminal(address: str, env: dict, submission_id: str, timeout: float = 120) -> str:
    deadline = time.time() + timeout
    status = "?"
    while time.time() < deadline:
        status = _status(address, env, submission_id)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        time.sleep(1)
    raise TimeoutError(f"job {submission_id} still {status}")


def test_pseudolabel_job_succeeds_and_a_bad_config_job_fails(ray_head, tmp_path):
    address, env = ray_head
    root = tmp_path / "catalog"
    info = write_catalog(root, good=8, files=1)
    out = tmp_path / "out"

    # The failing job first, without waiting: it runs while the real one starts up.
    bad = _submit(address, env, "attrpipe-bad-config",
                  ["python", "ray_jobs/pseudolabel.py", "conf/tiny_cpu.yaml", "consensus.threshold=1.5"], wait=False)
    assert bad.returncode == 0, bad.stdout + bad.stderr

    entry = ["python", "ray_jobs/pseudolabel.py", "conf/tiny_cpu.yaml", f"data.root={root}",
             f"pseudolabel.output={out}", "taxonomy.verticals=[suitcase,watch]", "pseudolabel.listings_per_unit=8",
             # The tests' scripted engine, imported from the uploaded working directory (tests/ as a namespace
             # package), the same way a user's plug-in engine in their repository would be.
             "generation.engine=tests.fakes:ScriptedEngine"]
    ok = _submit(address, env, "attrpipe-pseudolabel", entry, wait=True)
    assert ok.returncode == 0, ok.stdout[-5000:] + ok.stderr[-5000:]
    assert _status(address, env, "attrpipe-pseudolabel") == "SUCCEEDED"
    logs = _logs(address, env, "attrpipe-pseudolabel")
    assert "pairs written" in logs and "manifest:" in logs

    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["listings_in"] == info["rows"]
    assert c["listings_in"] == c["listings_labeled"] + c["listings_quarantined"]
    assert c["listing_attributes"] == c["kept"] + c["below_threshold"] > 0
    assert c["chains"] == 7 * c["listing_attributes"]
    assert manifest["units"] == len(list((out / "_units").glob("*.json")))
    assert pq.read_table(out / "consensus").num_rows == c["listing_attributes"]
    assert pq.read_table(out / "pairs").num_rows == c["pairs"] > 0
    quarantine = pq.read_table(out / "quarantine").to_pylist()
    assert {r["listing_id"]: r["reason"] for r in quarantine} == info["expected_quarantine"]

    assert _wait_terminal(address, env, "attrpipe-bad-config") == "FAILED"
    bad_logs = _logs(address, env, "attrpipe-bad-config")
    assert "attrpipe: error: consensus.threshold: must be in [0, 1], got 1.5" in bad_logs
    assert "Traceback" not in bad_logs  # a one-line config error, not a stack trace


def test_loop_job_runs_the_demo_loop_to_success(ray_head, tmp_path, tiny_model_dir):
    """The demo loop (conf/tiny_cpu.yaml) as a Ray job on the head, its seed stages only (loop.rounds=0: a round's
    stages run the same Ray Train and Ray Data code, tested end to end in tests/test_tracking.py): the seed SFT and
    its evaluation, each joining the job's cluster (Ray Train and Ray Data on the head's 2 CPUs)."""
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    address, env = ray_head
    cat = tmp_path / "cat"
    write_synthetic_catalog(cat, taxonomy=load_taxonomy("conf/taxonomy", ["suitcase", "watch"]), listings=4, seed=0,
                            seed_per_vertical=2, test_per_vertical=1)
    entry = ["python", "ray_jobs/loop.py", "conf/tiny_cpu.yaml", f"data.root={cat}", f"model.path={tiny_model_dir}",
             "model.build_tiny=false", "taxonomy.verticals=[suitcase,watch]", "loop.rounds=0",
             "generation.engine=tests.fakes:ScriptedEngine", "sft.max_steps=2", f"run.output_dir={tmp_path / 'runs'}",
             "run.name=job"]
    r = _submit(address, env, "attrpipe-loop", entry, wait=True)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    assert _status(address, env, "attrpipe-loop") == "SUCCEEDED"
    run = tmp_path / "runs" / "job"
    m = json.loads((run / "loop.json").read_text())
    assert set(m["finished"]) == set(m["stages"]) == {"sft", "sft/eval"}
    assert "skipped" not in m["finished"]["sft"] and m["finished"]["sft/eval"]["accuracy"] is not None
    for rel in ("sft/adapter/adapter_model.safetensors", "sft/eval/metrics.json", "config.yaml"):
        assert (run / rel).is_file(), rel
    assert "accuracy" in _logs(address, env, "attrpipe-loop")  # the per-round table, in the job's logs
