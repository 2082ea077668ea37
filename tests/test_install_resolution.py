"""`pip install -e '.[vllm]'` resolves from PyPI alone, to exactly pyproject.toml's pins, proved with pip's own
resolver against the real index (a dry run with a report; nothing is installed). Needs network to PyPI (CI has it):
`-m "not network"` leaves it out offline.

pip's configuration is bypassed (as `make setup-vllm` does), so a machine's local wheel directories or mirrors cannot
stand in for PyPI. Linux x86_64 with Python 3.11 is the stack's platform (the cluster image's); elsewhere pip would
resolve for another platform, so the test is skipped there.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
PYPI = "https://pypi.org/simple"

pytestmark = [
    pytest.mark.network,
    pytest.mark.slow,
    pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"
                            and sys.version_info[:2] == (3, 11)),
                       reason="the pinned stack is for Linux x86_64, Python 3.11"),
]

# the training stack and vLLM: each must be pinned exactly (==), so one set of versions is what CPU tests and GPUs run
STACK = ["torch", "torchvision", "transformers", "tokenizers", "peft", "trl", "accelerate", "datasets", "deepspeed",
         "ray", "vllm"]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _requirements(extras: list[str]) -> list[Requirement]:
    p = _pyproject()
    reqs = [Requirement(r) for r in p["dependencies"]]
    for e in extras:
        reqs += [Requirement(r) for r in p["optional-dependencies"][e]]
    return reqs


def _pin(req: Requirement) -> str | None:
    specs = list(req.specifier)
    return specs[0].version if len(specs) == 1 and specs[0].operator == "==" else None


def test_the_stack_is_pinned_exactly():
    pins = {canonicalize_name(r.name): _pin(r) for r in _requirements(["vllm"])}
    for name in STACK:
        assert pins.get(name), f"{name} is not pinned exactly (==) in pyproject.toml"


def _dry_run(extras: list[str], tmp_path: Path) -> dict:
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--no-input",
           "--disable-pip-version-check", "--index-url", PYPI, "--report", str(report),
           f"{REPO}[{','.join(extras)}]"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, f"pip could not resolve .[{','.join(extras)}] from PyPI:\n{out.stderr[-4000:]}"
    return json.loads(report.read_text())


def test_pip_resolves_the_extras_from_pypi_to_the_pins(tmp_path):
    """One resolution of ``.[vllm,dev]`` (pip's dry run takes over a minute): every requirement of ``.[vllm]`` (the GPU
    image's install) and of the test extras resolves to its pin. A resolution of the whole set with the pins is a
    resolution of ``.[vllm]`` alone too: the versions it picks for ``.[vllm]``'s packages satisfy all of them."""
    extras = ["vllm", "dev"]
    report = _dry_run(extras, tmp_path)
    resolved = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    assert "attrpipe" in resolved
    for req in _requirements(extras):
        name = canonicalize_name(req.name)
        assert name in resolved, f"{name} is required but pip resolved no version of it"
        version = resolved[name]["metadata"]["version"]
        pin = _pin(req)
        if pin is not None:
            assert version == pin, f"{name}: pip resolved {version}, pyproject.toml pins {pin}"
        else:
            assert req.specifier.contains(version, prereleases=True), f"{name} {version} outside {req.specifier}"
    # every package but attrpipe comes as a wheel, except DeepSpeed, which PyPI has only as source (it builds as pure
    # Python): nothing else is built (an old sdist that downloads from elsewhere as it builds is how the unresolvable
    # stack failed, backtracking through old vLLM releases)
    sources = {n for n, i in resolved.items() if n != "attrpipe" and not i["download_info"]["url"].endswith(".whl")}
    assert sources <= {"deepspeed"}, f"built from source: {sorted(sources)}"
    # and from PyPI alone
    hosts = {re.sub(r"^https?://([^/]+)/.*$", r"\1", i["download_info"]["url"])
             for n, i in resolved.items() if n != "attrpipe"}
    assert hosts <= {"files.pythonhosted.org"}, hosts
