"""Images over http(s): the fetcher against a real HTTP server on 127.0.0.1 (tests/image_server.py), the host
rules, and `attrpipe pseudolabel` on a catalog whose images are served by it, then `attrpipe audit`."""

import io
import ipaddress
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from attrpipe.cli import main
from attrpipe.config import load_config
from attrpipe.http_images import FetchError, HttpFetcher, HttpSettings, host_problem
from attrpipe.pseudolabel.stages import ImageSettings, prepare_listing
from attrpipe.taxonomy import load_taxonomy
from catalogs import LOOSE_SCHEMA
from image_server import ImageServer


def _jpeg(color, size=(48, 36)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


IMAGES = {"a.jpg": _jpeg("red"), "b.jpg": _jpeg("blue"), "c.jpg": _jpeg("green"), "d.jpg": _jpeg("white")}
SLOW_S = 3.0  # the server's slow response; the tests' read timeout is 0.4 s
FAST = dict(connect_timeout_s=2, read_timeout_s=0.4, total_timeout_s=10, retries=1, backoff_s=0.05,
            allowed_schemes=("http",))


@pytest.fixture(scope="module")
def server():
    with ImageServer(IMAGES, slow_s=SLOW_S) as srv:
        yield srv


# --- the host rules (pure) --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "192.168.0.7", "172.16.5.5", "169.254.169.254", "0.0.0.0",
                                  "[::1]", "[fe80::1]", "[::ffff:127.0.0.1]", "100.64.0.1", "224.0.0.1"])
def test_non_public_literal_addresses_are_refused_unless_allowed(host):
    e = host_problem(host, HttpSettings())
    assert e is not None and e.reason == "private_host"
    assert host_problem(host, HttpSettings(allow_private_hosts=True)) is None


def test_public_addresses_and_names_pass_and_the_allow_list_applies():
    assert ipaddress.ip_address("93.184.216.34").is_global
    assert host_problem("93.184.216.34", HttpSettings()) is None
    assert host_problem("cdn.example.com", HttpSettings()) is None  # a name: its addresses are checked on connect
    listed = HttpSettings(allowed_hosts=("cdn.example.com", ".img.example.org"))
    assert host_problem("CDN.example.com", listed) is None
    assert host_problem("eu.img.example.org", listed) is None
    for host in ("example.com", "img.example.org", "cdn.example.com.evil.net"):
        assert host_problem(host, listed).reason == "host_not_allowed"
    assert host_problem(None, HttpSettings()).reason == "bad_uri"


# --- the fetcher against the server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fetcher():
    f = HttpFetcher(HttpSettings(allow_private_hosts=True, **FAST))
    yield f
    f.close()


def _reason(fetcher, url, max_bytes=1_000_000):
    try:
        fetcher.fetch(url, max_bytes)
    except FetchError as e:
        return e.reason, e.detail
    return "ok", ""


def test_each_response_gets_its_outcome_and_only_timeouts_and_5xx_are_retried(server, fetcher):
    u = server.url
    assert fetcher.fetch(f"{u}/img/a.jpg", 1_000_000) == IMAGES["a.jpg"]
    assert fetcher.fetch(f"{u}/octet/b.jpg", 1_000_000) == IMAGES["b.jpg"]  # the content type does not decide
    assert fetcher.fetch(f"{u}/redirect/c.jpg", 1_000_000) == IMAGES["c.jpg"]
    assert fetcher.fetch(f"{u}/flaky/d.jpg", 1_000_000) == IMAGES["d.jpg"]  # 500, then 200 on the retry
    assert server.hits["/flaky/d.jpg"] == 2
    reason, detail = _reason(fetcher, f"{u}/status/404")
    assert (reason, "HTTP 404" in detail) == ("http_status", True) and server.hits["/status/404"] == 1
    reason, detail = _reason(fetcher, f"{u}/status/503")
    assert (reason, "HTTP 503" in detail) == ("http_status", True) and server.hits["/status/503"] == 2
    assert _reason(fetcher, f"{u}/slow/a.jpg")[0] == "timeout" and server.hits["/slow/a.jpg"] == 2
    assert _reason(fetcher, f"{u}/endless", max_bytes=300_000)[0] == "too_many_bytes"
    assert _reason(fetcher, f"{u}/loop")[0] == "http_redirects" and server.hits["/loop"] == 4  # 1 + 3 redirects
    assert _reason(fetcher, f"{u}/img/a.jpg", max_bytes=100)[0] == "too_many_bytes"  # refused by Content-Length
    assert _reason(fetcher, "http://127.0.0.1:1/img/a.jpg")[0] == "unreachable"  # connection refused


def test_private_hosts_are_refused_by_default_by_name_and_by_address(server):
    f = HttpFetcher(HttpSettings(**FAST))
    try:
        before = sum(server.hits.values())
        assert _reason(f, f"{server.url}/img/a.jpg")[0] == "private_host"
        by_name = server.url.replace("127.0.0.1", "localhost")
        reason, detail = _reason(f, f"{by_name}/img/a.jpg")
        assert reason == "private_host" and "resolves to" in detail
        assert sum(server.hits.values()) == before  # nothing was requested
    finally:
        f.close()


def test_http_uris_are_refused_unless_the_scheme_is_allowed(server):
    tax = load_taxonomy("conf/taxonomy", ["watch"])
    row = {"listing_id": "x", "vertical": "watch", "image_uris": [f"{server.url}/img/a.jpg"], "_source": "f#0"}
    before = sum(server.hits.values())
    default = ImageSettings.from_conf(load_config("conf/tiny_cpu.yaml").images)
    out = prepare_listing(row, taxonomy=tax, duplicates=set(), images=default, root=None)
    assert out["reason"] == "image_bad_uri" and "'http' is not allowed" in out["detail"]
    allowed = ImageSettings.from_conf(load_config("conf/tiny_cpu.yaml", ["images.allowed_schemes=[file,http]"]).images)
    out = prepare_listing(row, taxonomy=tax, duplicates=set(), images=allowed, root=None)
    assert out["reason"] == "image_private_host"
    assert sum(server.hits.values()) == before
    both = ImageSettings.from_conf(load_config("conf/tiny_cpu.yaml", [
        "images.allowed_schemes=[file,http]", "images.http.allow_private_hosts=true"]).images)
    out = prepare_listing(row, taxonomy=tax, duplicates=set(), images=both, root=None)
    assert out.listing_id == "x" and out.image_uris == row["image_uris"] and len(out.pixels) == 1


# --- the whole command ------------------------------------------------------------------------------------------------

# listing id -> (image paths on the server, or local file names; expected outcome, a text the detail must hold)
CASES = {
    "good": (["/img/a.jpg", "/img/b.jpg"], "labeled", ""),
    "octet-stream": (["/octet/c.jpg"], "labeled", ""),
    "redirect-once": (["/redirect/d.jpg"], "labeled", ""),
    "500-then-200": (["/flaky/a.jpg"], "labeled", ""),
    "local-and-http": (["local.jpg", "/img/b.jpg"], "labeled", ""),
    "404": (["/status/404"], "image_http_status", "HTTP 404"),
    "503-always": (["/status/503"], "image_http_status", "HTTP 503"),
    "second-view-404": (["/img/a.jpg", "/status/404"], "image_http_status", "image 1"),
    "slow": (["/slow/b.jpg"], "image_timeout", "image 0"),
    "endless": (["/endless"], "image_too_many_bytes", "streamed"),
    "redirect-loop": (["/loop"], "image_http_redirects", "more than 3 redirects"),
    "wrong-content-type": (["/html/a.jpg"], "image_not_an_image", ""),
    "host-not-listed": (["LOCALHOST/img/a.jpg"], "image_host_not_allowed", "localhost"),
}


@pytest.fixture(scope="module")
def run_server():
    with ImageServer(IMAGES, slow_s=SLOW_S) as srv:
        yield srv


@pytest.fixture(scope="module")
def http_run(tmp_path_factory, run_server, ray_local):
    server = run_server
    root = tmp_path_factory.mktemp("http-catalog")
    (root / "unlabeled").mkdir()
    (root / "catalog.json").write_text(json.dumps({"format": "test"}))
    (root / "local.jpg").write_bytes(_jpeg("black"))
    by_name = server.url.replace("127.0.0.1", "localhost")
    rows = []
    for lid, (paths, _, _) in CASES.items():
        uris = [p.replace("LOCALHOST", by_name) if p.startswith("LOCALHOST") else
                (f"{server.url}{p}" if p.startswith("/") else p) for p in paths]
        rows.append({"listing_id": lid, "vertical": "watch", "image_uris": uris, "image_bytes": None,
                     "seller_attributes": None})
    pq.write_table(pa.Table.from_pylist(rows, schema=LOOSE_SCHEMA), root / "unlabeled" / "part-0.parquet")
    out = root.parent / "http-out"
    overrides = [f"data.root={root}", f"pseudolabel.output={out}", "generation.engine=fakes:ScriptedEngine",
                 "taxonomy.verticals=[watch]", "pseudolabel.listings_per_unit=5", "images.max_bytes=400000",
                 "images.allowed_schemes=[file,http]", "images.http.allow_private_hosts=true",
                 "images.http.allowed_hosts=[127.0.0.1]", "images.http.read_timeout_s=0.4",
                 "images.http.retries=1", "images.http.backoff_s=0.05"]
    assert main(["pseudolabel", "conf/tiny_cpu.yaml", *overrides]) == 0
    return out, root, overrides


def test_every_row_is_labeled_or_quarantined_once_with_its_reason(http_run, run_server):
    server = run_server
    out, _, _ = http_run
    quarantine = pq.read_table(out / "quarantine").to_pylist()
    labeled = {r["listing_id"] for r in pq.read_table(out / "consensus").to_pylist()}
    for lid, (_, outcome, detail) in CASES.items():
        rows = [q for q in quarantine if q["listing_id"] == lid]
        if outcome == "labeled":
            assert lid in labeled and not rows, (lid, rows)
        else:
            assert [q["reason"] for q in rows] == [outcome] and lid not in labeled, (lid, rows)
            assert detail in rows[0]["detail"], (lid, rows[0]["detail"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["listings_in"] == len(CASES)
    assert server.hits["/status/404"] == 1  # a 4xx is final: not retried


def test_the_audit_passes_on_the_http_run(http_run):
    assert main(["audit", str(http_run[0])]) == 0


def test_the_catalog_check_fetches_the_same_way_and_predicts_the_run(http_run, tmp_path):
    out, root, overrides = http_run
    report = tmp_path / "check.json"
    assert main(["catalog", "check", str(root / "unlabeled"), "conf/tiny_cpu.yaml", *overrides,
                 f"run.output_dir={tmp_path}", "--out", str(report)]) == 0
    check = json.loads(report.read_text())["counts"]
    manifest = json.loads((out / "manifest.json").read_text())["counts"]
    assert check["quarantine_reasons"] == manifest["quarantine_reasons"]
    assert check["would_label"] == manifest["listings_labeled"] == 5
