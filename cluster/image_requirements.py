"""The requirements the GPU image installs next to vLLM: attrpipe's pinned dependencies, minus the packages whose
version vLLM decides (torch, torchvision, transformers, ... : whatever the given pins file names).

Why: vLLM pins its own torch and caps transformers (vllm 0.33.0: torch==2.14.0, torchvision==0.29.0,
transformers<5.21), while pyproject.toml pins torch 2.14.1, torchvision 0.29.1 and transformers 5.23.0 for the CPU
stack it was measured with, so `pip install attrpipe[vllm]` cannot resolve. cluster/Dockerfile installs vLLM first,
freezes its picks into a constraints file, installs this list under those constraints and attrpipe itself with
--no-deps. The GPU image therefore trains with vLLM's torch and transformers, not the CPU stack's pins
(docs/cluster.md, "Container image").

    python cluster/image_requirements.py /tmp/vllm-pins.txt > /tmp/attrpipe-requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~;\s]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(pins: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    decided = {_name(p) for p in pins if p.strip() and not p.lstrip().startswith("#")}
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in deps if _name(d) not in decided]


if __name__ == "__main__":
    pins = Path(sys.argv[1]).read_text().splitlines() if len(sys.argv) > 1 else []
    print("\n".join(requirements(pins)))
