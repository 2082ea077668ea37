"""The KubeRay manifests of cluster/, rendered, validated against the KubeRay CRDs' served openAPIV3Schema (the
CRD YAMLs in ../shared/kuberay-crds, beside the repository), and checked against the Dockerfile and the repository.

Kubernetes prunes unknown fields of a custom resource silently, so a misspelt key would pass the API server and
then do nothing: the validation here closes every object schema that does not preserve unknown fields
(additionalProperties: false), the way a structural-schema server with field validation "Strict" would reject it.
"""

from __future__ import annotations

import copy
import functools
import re
import shlex
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO.parent / "shared" / "kuberay-crds"
sys.path.insert(0, str(REPO / "cluster"))

import render  # noqa: E402

MANIFESTS = {"raycluster.yaml": "RayCluster", "rayjob.yaml": "RayJob"}
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}


def _strict(schema):
    """A copy of a CRD schema in which objects with declared properties refuse undeclared ones."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


@functools.lru_cache(maxsize=None)
def crd_schema(kind: str, api_version: str) -> dict:
    assert CRDS.is_dir(), f"KubeRay CRDs expected at {CRDS} (CI checks out shared/ beside the repository)"
    crd = yaml.load((CRDS / CRD_FILES[kind]).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == kind
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group
    served = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert served and served[0]["served"], f"{api_version} is not a served version of {kind}"
    return _strict(served[0]["schema"]["openAPIV3Schema"])


def rendered(name: str, **overrides) -> dict:
    return yaml.safe_load(render.render(REPO / "cluster" / name, **overrides))


@functools.lru_cache(maxsize=None)
def _validator(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(crd_schema(kind, api_version))


def validate(doc: dict) -> None:
    _validator(doc["kind"], doc["apiVersion"]).validate(doc)
    assert doc["metadata"]["name"]  # metadata is not in the CRD schema (the API server checks it)


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_validates_against_the_served_crd_schema(name):
    doc = rendered(name)
    assert doc["kind"] == MANIFESTS[name] and doc["apiVersion"] == "ray.io/v1"
    validate(doc)


@pytest.mark.parametrize("overrides", [
    {"GPU_WORKERS_MIN": "1", "GPU_WORKERS_MAX": "16", "ENGINE_ACTORS": "16", "TRAIN_WORKERS": "16"},
    {"GPUS_PER_WORKER": "8", "TENSOR_PARALLEL": "2", "ENGINE_ACTORS": "8", "ENGINE_CPUS": "2",
     "CPUS_PER_WORKER": "64", "MEMORY_PER_WORKER": "512Gi", "MODEL": "Qwen/Qwen2.5-VL-7B-Instruct"},
])
def test_other_sizes_render_to_valid_manifests(overrides):
    for name in MANIFESTS:
        doc = rendered(name, **overrides)
        validate(doc)
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
        gpu = spec["workerGroupSpecs"][0]
        assert gpu["maxReplicas"] == int(overrides.get("GPU_WORKERS_MAX", render.DEFAULTS["GPU_WORKERS_MAX"]))
        limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == overrides.get("GPUS_PER_WORKER", render.DEFAULTS["GPUS_PER_WORKER"])


def test_the_validation_catches_typos_and_wrong_types():
    doc = rendered("rayjob.yaml")
    bad = copy.deepcopy(doc)
    bad["spec"]["shutdownAfterJobFinish"] = True  # misspelt: Kubernetes would drop it silently
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = copy.deepcopy(doc)
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"] = "four"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = copy.deepcopy(doc)
    bad["spec"]["submissionMode"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_impossible_sizes_are_refused_when_rendering():
    with pytest.raises(ValueError, match="TENSOR_PARALLEL"):
        render.render(REPO / "cluster" / "rayjob.yaml", TENSOR_PARALLEL="2")  # 1 GPU per pod
    with pytest.raises(ValueError, match="ENGINE_ACTORS"):
        render.render(REPO / "cluster" / "rayjob.yaml", ENGINE_ACTORS="5")  # 4 pods x 1 GPU
    with pytest.raises(ValueError, match="GPU_WORKERS_MIN"):
        render.render(REPO / "cluster" / "rayjob.yaml", GPU_WORKERS_MIN="5")
    with pytest.raises(KeyError, match="GPUS"):
        render.render(REPO / "cluster" / "rayjob.yaml", GPUS="8")
    assert render.main(["cluster/rayjob.yaml", "TRAIN_WORKERS=9"]) == 2


def test_rayjob_runs_the_raycluster_spec_and_finishes_cleanly():
    job, cluster = rendered("rayjob.yaml"), rendered("raycluster.yaml")
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]
    s = job["spec"]
    assert s["shutdownAfterJobFinishes"] is True and s["submissionMode"] == "K8sJobMode"
    assert s["ttlSecondsAfterFinished"] > 0
    # the job's runtime env carries the same variables as ray_jobs/runtime_env.yaml
    env_file = yaml.safe_load((REPO / "ray_jobs" / "runtime_env.yaml").read_text())
    assert yaml.safe_load(s["runtimeEnvYAML"])["env_vars"] == env_file["env_vars"]
    # sized for the actors and the DPO workers: the head runs no tasks, the GPU group autoscales
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    gpu = cluster["spec"]["workerGroupSpecs"][0]
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]


def test_entrypoint_is_a_real_stage_with_a_valid_config():
    """The entrypoint's script and preset exist in the repository (hence in the image at /app) and its arguments
    load as an attrpipe configuration, with the rendered sizes landing in the right keys."""
    from attrpipe.config import load_config

    job = rendered("rayjob.yaml", ENGINE_ACTORS="3", TRAIN_WORKERS="2")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "python"
    assert (REPO / argv[1]).is_file() and argv[1].startswith("ray_jobs/")
    assert (REPO / argv[2]).is_file()
    cfg = load_config(REPO / argv[2], argv[3:])
    assert cfg.model.path == render.DEFAULTS["MODEL"]
    assert cfg.ray.engine.num_actors == 3 and cfg.ray.train.num_workers == 2
    assert cfg.run.output_dir == render.DEFAULTS["RUNS_URI"] and cfg.data.root == render.DEFAULTS["DATA_URI"]
    assert cfg.generation.engine == "vllm"


def _dockerfile() -> str:
    return (REPO / "cluster" / "Dockerfile").read_text()


def test_dockerfile_and_manifests_agree():
    text = _dockerfile()
    image = re.search(r"^# image: (\S+)$", text, re.M).group(1)
    assert f"-t {image} ." in text
    assert image == render.DEFAULTS["IMAGE"]
    base = re.search(r"^FROM (\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"rayproject/ray:[\d.]+-py311-gpu", base), base
    ray_version = base.split(":")[1].split("-")[0]
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(rf'"ray\[[a-z,]+\]=={re.escape(ray_version)}"', pyproject), "image Ray != pyproject's pin"
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) in image
    for name in MANIFESTS:
        doc = rendered(name)
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
        assert spec["rayVersion"] == ray_version
        pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
        for pod in pods:
            for c in pod["spec"]["containers"]:
                assert c["image"] == image
                assert c["workingDir"] == "/app"
    assert re.search(r"^WORKDIR /app$", text, re.M)
    # what the entrypoint needs is copied into /app
    job = rendered("rayjob.yaml")
    argv = shlex.split(job["spec"]["entrypoint"])
    for path in (argv[1], argv[2], "conf/taxonomy"):
        top = path.split("/")[0]
        assert re.search(rf"^COPY .*\b{top} \./{top}$", text, re.M), f"{top}/ is not copied into the image"
        assert (REPO / path).exists()


def test_dockerfile_installs_the_vllm_extra_plainly():
    """One stack: the image installs `.[vllm]` as pyproject.toml pins it (tests/test_install_resolution.py proves it
    resolves), with no vLLM version or constraints of its own."""
    text = _dockerfile()
    installs = re.findall(r"pip install ([^\n\\&]+)", text)
    assert installs == ["--no-cache-dir -e '.[vllm]' "], installs
    assert "vllm==" not in text.lower() and "constraint" not in text.lower()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^vllm = \["vllm==[\d.]+"\]$', pyproject, re.M), "the vllm extra pins vLLM exactly"


def test_the_mlflow_server_manifest_serves_the_jobs_tracking_uri():
    """cluster/mlflow.yaml: a volume, one `mlflow server` (attrpipe's image, whose pins include mlflow) and the
    Service the RayJob's tracking.uri names; the server's --allowed-hosts admits that Host header (checked with
    MLflow's own matcher: by default it refuses any name but localhost's)."""
    from urllib.parse import urlsplit

    from mlflow.server.security_utils import is_allowed_host_header

    from attrpipe.config import load_config

    docs = list(yaml.safe_load_all(render.render(REPO / "cluster" / "mlflow.yaml")))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"PersistentVolumeClaim", "Deployment", "Service"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == render.DEFAULTS["IMAGE"] and c["command"][:2] == ["mlflow", "server"]
    args = c["command"]
    opt = lambda name: args[args.index(name) + 1]  # noqa: E731
    assert opt("--artifacts-destination") == render.DEFAULTS["MLFLOW_ARTIFACTS"] and "--serve-artifacts" in args
    assert opt("--backend-store-uri").startswith("sqlite:////mlflow/")
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/mlflow"}
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == kinds["PersistentVolumeClaim"]["metadata"]["name"]
    svc = kinds["Service"]
    assert svc["spec"]["selector"] == kinds["Deployment"]["spec"]["selector"]["matchLabels"] == \
        kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    uri = urlsplit(render.DEFAULTS["TRACKING_URI"])
    assert uri.hostname == svc["metadata"]["name"] == f"{render.DEFAULTS['NAME']}-mlflow"
    assert uri.port == svc["spec"]["ports"][0]["port"] == int(opt("--port"))
    allowed = opt("--allowed-hosts").split(",")
    assert is_allowed_host_header(allowed, uri.netloc)
    assert is_allowed_host_header(allowed, "localhost:5000")  # kubectl port-forward
    assert not is_allowed_host_header(allowed, "evil.example.com")
    # the RayJob's runs log there
    job = rendered("rayjob.yaml")
    argv = shlex.split(job["spec"]["entrypoint"])
    cfg = load_config(REPO / argv[2], argv[3:])
    assert cfg.tracking.enabled is True and cfg.tracking.uri == render.DEFAULTS["TRACKING_URI"]
    off = shlex.split(rendered("rayjob.yaml", TRACKING="false")["spec"]["entrypoint"])
    assert load_config(REPO / off[2], off[3:]).tracking.enabled is False
