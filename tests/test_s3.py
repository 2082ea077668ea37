"""Catalogs, images and pseudo-label outputs addressed as ``s3://`` URIs, against a real S3-compatible server:
moto's server on 127.0.0.1, started by this module. Credentials and the endpoint reach pyarrow the standard way
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), in the test process and in the Ray workers of the CLI run."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyarrow import fs as pafs

from attrpipe import storage
from attrpipe.images import ImageError, load_image, read_bytes, resolve_uri
from attrpipe.schemas import CONSENSUS_SCHEMA, PAIRS_SCHEMA, QUARANTINE_SCHEMA
from catalogs import write_catalog

REPO = Path(__file__).resolve().parent.parent
BUCKET = "attrpipe-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 and the AWS_* variables that point pyarrow at it; one bucket."""
    import moto.server  # noqa: F401  (moto[server] is in the dev extra; fail loudly, never skip)

    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError("moto server did not start")
                time.sleep(0.3)
        os.environ.update(env)
        # Creating a bucket is an admin act, not something attrpipe does: a dedicated client with the permission.
        pafs.S3FileSystem(endpoint_override=endpoint, access_key="testing", secret_key="testing",
                          region="us-east-1", allow_bucket_creation=True).create_dir(BUCKET)
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _upload(local: Path, uri: str) -> None:
    fs, path = storage.filesystem_for(uri)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def test_storage_roundtrip_on_s3(s3_env):
    base = f"s3://{BUCKET}/roundtrip"
    storage.write_json_atomic(storage.join(base, "a", "x.json"), {"k": 1})
    assert storage.exists(storage.join(base, "a", "x.json"))
    assert storage.read_json(storage.join(base, "a", "x.json")) == {"k": 1}
    assert storage.list_files(storage.join(base, "a"), ".json") == [f"{base}/a/x.json"]
    # The atomic write leaves no temporary object behind.
    fs, p = storage.filesystem_for(base)
    names = [i.path for i in fs.get_file_info(pafs.FileSelector(p, recursive=True))]
    assert not [n for n in names if ".tmp-" in n]
    storage.remove_file(storage.join(base, "a", "x.json"))
    assert not storage.exists(storage.join(base, "a", "x.json"))


@pytest.mark.parametrize("fault", ["error", "throttle"])
def test_a_small_file_read_that_the_store_fails_once_is_retried(s3_env, monkeypatch, fault):
    """An object smaller than an S3 error's XML body (a marker, a progress file) whose read the store answers with
    500 or 503: pyarrow's S3 client reports it as a failure it does not retry (the premise, checked first);
    storage.read_json reads it again and gets it."""
    from s3_fault_proxy import FaultProxy

    uri = f"s3://{BUCKET}/small/_progress.json"
    storage.write_json_atomic(uri, {"step": 3})
    proxy = FaultProxy(int(s3_env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]), rate=1.0, seed=0, faults=(fault,))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.start()}")
    try:
        fs, p = storage.filesystem_for(uri)
        size = fs.get_file_info(p).size
        with pytest.raises(OSError, match="Failed to flush response stream"):
            with fs.open_input_stream(p) as f:
                f.read()
        proxy.faulted.clear()  # the same GET may fault once more, for read_json this time
        assert storage.read_json(uri) == {"step": 3}
    finally:
        proxy.stop()
    gets = [r.fate for r in proxy.log if r.method == "GET"]
    assert gets[0] == fault and gets[-1] == "ok" and len(gets) == 3, gets
    assert size < 200


def test_images_from_s3_and_the_scheme_allow_list(s3_env, tmp_path):
    write_catalog(tmp_path / "cat", good=2, bad=False, files=1)
    _upload(tmp_path / "cat", f"s3://{BUCKET}/imgcat")
    root = f"s3://{BUCKET}/imgcat"
    # a relative URI resolves against an s3:// root, and the bytes come back through storage's filesystem
    resolved = resolve_uri("images/g0_0.jpg", root, ["file", "s3"])
    assert resolved == f"{root}/images/g0_0.jpg"
    assert read_bytes(resolved, 10_000_000) == (tmp_path / "cat" / "images" / "g0_0.jpg").read_bytes()
    img = load_image("images/g1_1.jpg", None, root=root, size=28, max_pixels=10**7, max_bytes=10**7,
                     allowed_schemes=["file", "s3"])
    assert img.size == (28, 28)
    with pytest.raises(ImageError) as e:
        read_bytes(f"{root}/images/nowhere.jpg", 10_000_000)
    assert e.value.reason == "missing"
    with pytest.raises(ImageError) as e:
        read_bytes(resolved, 10)
    assert e.value.reason == "too_many_bytes"
    # s3 not allowed: refused before any request is made, whether absolute or relative to an s3:// root
    with pytest.raises(ImageError) as e:
        resolve_uri(resolved, None, ["file"])
    assert e.value.reason == "bad_uri" and "'s3' is not allowed" in e.value.detail
    with pytest.raises(ImageError) as e:
        load_image(f"{root}/images/g0_0.jpg", None, root=None, size=28, max_pixels=10**7, max_bytes=10**7,
                   allowed_schemes=["file"])
    assert e.value.reason == "bad_uri"


@pytest.mark.slow
def test_pseudolabel_reads_catalog_and_writes_outputs_on_s3(s3_env, tmp_path):
    """`attrpipe pseudolabel` with data.root and pseudolabel.output as s3:// URIs; its own local Ray, whose workers
    get the endpoint and credentials from the environment, as on a cluster."""
    info = write_catalog(tmp_path / "cat", good=8, files=2)
    _upload(tmp_path / "cat", f"s3://{BUCKET}/catalog")
    root, out = f"s3://{BUCKET}/catalog", f"s3://{BUCKET}/runs/demo/pseudolabels"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update({**s3_env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "tests"), "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    cmd = [sys.executable, "-m", "attrpipe.cli", "pseudolabel", "conf/tiny_cpu.yaml", f"data.root={root}",
           f"pseudolabel.output={out}", "generation.engine=fakes:ScriptedEngine",
           "taxonomy.verticals=[suitcase,watch]", "pseudolabel.listings_per_unit=10", "ray.address=local"]
    # ray.address=local: a fresh local Ray even if the test session runs one (RAY_ADDRESS is scrubbed too).
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-30000:]

    manifest = storage.read_json(f"{out}/manifest.json")
    c = manifest["counts"]
    assert manifest["output"] == out and manifest["catalog"] == f"{root}/unlabeled"
    assert c["listings_in"] == info["rows"] == c["listings_labeled"] + c["listings_quarantined"]
    assert c["listing_attributes"] == c["kept"] + c["below_threshold"] > 0
    assert len(storage.list_files(f"{out}/_units", ".json")) == manifest["units"]
    consensus = storage.read_parquet(f"{out}/consensus")
    pairs = storage.read_parquet(f"{out}/pairs")
    quarantine = storage.read_parquet(f"{out}/quarantine")
    assert consensus.schema.equals(CONSENSUS_SCHEMA) and consensus.num_rows == c["listing_attributes"]
    assert pairs.schema.equals(PAIRS_SCHEMA) and pairs.num_rows == c["pairs"] > 0
    assert quarantine.schema.equals(QUARANTINE_SCHEMA)
    assert {r["listing_id"]: r["reason"] for r in quarantine.to_pylist()} == info["expected_quarantine"]
    # relative image URIs were resolved against the s3:// catalog root and read from the server
    uris = [u for r in consensus.to_pylist() for u in (r["image_uris"] or [])]
    assert uris and all(u.startswith(f"{root}/images/") for u in uris)


def test_adapter_directories_on_s3_fingerprint_find_and_local_copy(s3_env, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRPIPE_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "adapter"
    (local / "ckpt" / "checkpoint").mkdir(parents=True)
    (local / "adapter_config.json").write_text('{"r": 8}')
    (local / "adapter_model.safetensors").write_bytes(b"\x00" * 1000)
    (local / "ckpt" / "checkpoint" / "trainer_state.json").write_text('{"global_step": 3}')
    from attrpipe.train.checkpoints import write_manifest

    write_manifest(local / "ckpt" / "checkpoint", world_rank=0, nodes=1, step=3)
    uri = f"s3://{BUCKET}/adapters/a1"
    _upload(local, uri)
    assert storage.fingerprint(uri) == storage.fingerprint(str(local))  # content, not location
    assert storage.find_files(uri, "trainer_state.json") == [f"{uri}/ckpt/checkpoint/trainer_state.json"]
    copy = storage.local_copy(uri)
    assert Path(copy).is_dir() and str(tmp_path / "cache") in copy
    assert (Path(copy) / "adapter_model.safetensors").read_bytes() == b"\x00" * 1000
    assert storage.local_copy(uri) == copy  # cached: the same listing, the same copy
    storage.write_text_atomic(f"{uri}/adapter_config.json", '{"r": 16}')  # the remote changed: fetched again
    again = storage.local_copy(uri)
    assert again != copy and (Path(again) / "adapter_config.json").read_text() == '{"r": 16}'
    from attrpipe.train.plan import find_resume_checkpoint

    assert find_resume_checkpoint(uri) == f"{uri}/ckpt"


@pytest.mark.slow
def test_a_loop_on_s3_whose_requests_fail_retries_and_ends_whole(s3_env, tmp_path, tiny_model_dir):
    """`attrpipe loop` with its catalog and run.output_dir on S3, its S3 traffic through a proxy that fails about one
    request in twelve, drawn from a seed (tests/s3_fault_proxy.py): 500 InternalError, 503 SlowDown, or an upload's
    connection cut halfway. The pseudo-labeling, the training (adapters and Ray Train's checkpoint uploads on S3,
    the SFT adapter loaded back from there to start DPO) and the evaluations retry and finish; the audit passes;
    every Ray Train checkpoint on S3 is complete; no cut upload left an object behind that a later upload did not
    replace whole; and a rerun finds every stage done."""
    from attrpipe.audit import audit, format_report
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy
    from attrpipe.train.checkpoints import checkpoint_problems
    from s3_fault_proxy import FaultProxy

    write_synthetic_catalog(tmp_path / "cat", taxonomy=load_taxonomy("conf/taxonomy", ["suitcase", "watch"]),
                            listings=4, seed=0, seed_per_vertical=2, test_per_vertical=1)
    _upload(tmp_path / "cat", f"s3://{BUCKET}/faultcat")
    proxy = FaultProxy(int(s3_env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]), rate=1 / 12, seed=3)
    port = proxy.start()
    try:
        runs = f"s3://{BUCKET}/faultruns"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update({**s3_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "OMP_NUM_THREADS": "1",
                    "PYTHONPATH": str(REPO / "tests"), "RAY_USAGE_STATS_ENABLED": "0",
                    "ATTRPIPE_CACHE": str(tmp_path / "cache")})
        cmd = [sys.executable, "-m", "attrpipe.cli", "loop", "conf/tiny_cpu.yaml",
               f"data.root=s3://{BUCKET}/faultcat", f"model.path={tiny_model_dir}", "model.build_tiny=false",
               "taxonomy.verticals=[suitcase,watch]", "generation.engine=fakes:ScriptedEngine", "loop.rounds=1",
               "sft.max_steps=2", "dpo.max_steps=2", "sft.save_steps=1", "dpo.save_steps=1",
               "pseudolabel.listings_per_unit=2", f"run.output_dir={runs}", "run.name=faults", "ray.address=local"]
        run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    finally:
        proxy.stop()
    counts = proxy.counts()
    print(f"S3 requests through the fault proxy: {counts}")  # pytest -s shows it (docs/reliability.md)
    assert run.returncode == 0, f"{counts}\n" + run.stdout[-4000:] + run.stderr[-30000:]
    assert counts["error"] >= 1 and counts["throttle"] >= 1 and counts["cut"] >= 1, counts
    ok = {(r.method, r.target) for r in proxy.log if r.fate == "ok"}
    faulted = [(r.method, r.target) for r in proxy.log if r.fate != "ok"]
    assert all(f in ok for f in faulted), [f for f in faulted if f not in ok]  # each was retried, and went through
    d = f"{runs}/faults"
    rep = audit(d)
    assert rep.ok, format_report(rep)
    m = storage.read_json(f"{d}/loop.json")
    assert set(m["finished"]) == set(m["stages"]) and "skipped" not in m["finished"]["round-1/train"]
    for rel in ("sft/adapter/adapter_model.safetensors", "sft/metrics.jsonl", "sft/train_result.json",
                "round-1/adapter/adapter_config.json", "round-1/eval/metrics.json", "config.yaml"):
        assert storage.exists(f"{d}/{rel}"), rel
    assert storage.fingerprint(f"{d}/round-1/adapter") != storage.fingerprint(f"{d}/sft/adapter")
    assert list((tmp_path / "cache" / "remote").iterdir())  # the SFT adapter was fetched to start DPO from it
    states = storage.find_files(f"{d}/sft/ray", "trainer_state.json") + \
        storage.find_files(f"{d}/round-1/ray", "trainer_state.json")
    assert states
    for state in states:
        ray_ckpt = state.rsplit("/checkpoint/", 1)[0]
        assert checkpoint_problems(ray_ckpt) == [], ray_ckpt
    fs, _ = storage.filesystem_for(d)
    cuts = [(r.method, r.target) for r in proxy.log if r.fate == "cut"]
    for method, target in cuts:  # an object named by a cut upload is the one a whole retry wrote
        if method != "PUT" or "?" in target:  # a part of a multipart upload: no object until it completes
            continue
        key = target.split("?", 1)[0].lstrip("/")
        info = fs.get_file_info(key)
        sizes = [r.object_bytes for r in proxy.log if r.fate == "ok" and (r.method, r.target) == (method, target)]
        if info.type != pafs.FileType.NotFound:
            assert info.size == sizes[-1], (key, info.size, sizes)
    direct = {**env, "AWS_ENDPOINT_URL": s3_env["AWS_ENDPOINT_URL"]}  # the rerun, straight to the S3 server
    again = subprocess.run(cmd, cwd=REPO, env=direct, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("done earlier, skipped") == len(m["stages"]), (
        again.stdout[-4000:] + again.stderr[-4000:])
