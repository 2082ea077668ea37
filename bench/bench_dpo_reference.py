"""DPO steps/s and peak memory by reference policy, on the same data and the same trainer code as training.

Reference policies compared (attrpipe's two, against the textbook one it avoids):

- ``adapter_disabled``  a fresh adapter on the base; the reference is the base with the adapter disabled ("PT")
- ``frozen_adapter``    continue a trained adapter; the reference is TRL's frozen copy of it ("Peft-10")
- ``separate_model``    continue the same adapter, with a second, separately loaded model (base + the adapter merged)
                        as the reference: what the other two avoid

Each mode runs in its own subprocess (one process = one clean peak-memory reading), in-process TRL (no Ray, no
DeepSpeed: the reference's cost is what is measured), with :func:`attrpipe.train.worker.build_trainer` and the same
record -> example -> TRL collator path as the Ray workers. Peak memory: the process's peak RSS on the CPU and the
peak allocated CUDA memory on a GPU. Steps/s excludes the first ``--warmup`` steps.

    .venv/bin/python bench/bench_dpo_reference.py                      # the tiny model (0.7 M parameters)
    .venv/bin/python bench/bench_dpo_reference.py --size small         # a 4-layer, 512-wide random model
    .venv/bin/python bench/bench_dpo_reference.py --model /path/to/Qwen2.5-VL-3B-Instruct --device cuda
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

MODES = ("adapter_disabled", "frozen_adapter", "separate_model")


def _jpeg(seed: int, size: int = 224) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _records(n: int) -> list[dict]:
    """A fixed preference set: chosen answers the first value, rejected the last (same for every mode)."""
    from attrpipe.prompts import format_target, user_text
    from attrpipe.taxonomy import Attribute

    attr = Attribute("pattern", "The dominant surface pattern of the shell.", ("Solid", "Striped", "Checked"))
    prompt = user_text(attr, "suitcase")
    return [
        {"example_id": f"b{i}", "prompt": prompt, "completion": None,
         "chosen": format_target("The shell is plain.", "Solid"),
         "rejected": format_target("The shell has squares.", "Checked"),
         "image_uris": [], "image_bytes": [_jpeg(i)]}
        for i in range(n)
    ]


def _build_small(tiny: Path, out: Path) -> Path:
    """A wider, deeper random Qwen2.5-VL with the tiny model's tokenizer and processor (no download)."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if (out / "config.json").is_file():
        return out
    cfg = Qwen2_5_VLConfig.from_pretrained(tiny)
    t = cfg.text_config
    t.hidden_size, t.intermediate_size, t.num_hidden_layers = 512, 1536, 4
    t.num_attention_heads, t.num_key_value_heads = 8, 4  # head_dim 64: mrope sections sum to 32
    t.rope_parameters = {**t.rope_parameters, "mrope_section": [8, 12, 12]}
    if getattr(t, "layer_types", None) is not None:
        t.layer_types = [t.layer_types[0]] * t.num_hidden_layers
    cfg.vision_config.out_hidden_size = 512
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(cfg).to(torch.float32).save_pretrained(out)
    AutoProcessor.from_pretrained(tiny).save_pretrained(out)
    return out


def _make_adapter(model_path: str, out: Path) -> Path:
    """A LoRA adapter with non-zero weights (so its frozen copy is not just the base), as a trained SFT adapter."""
    import torch
    from peft import get_peft_model

    from attrpipe.models.loader import load_model, lora_config

    if (out / "adapter_config.json").is_file():
        return out
    torch.manual_seed(1)
    lc = lora_config()
    lc.init_lora_weights = False
    get_peft_model(load_model(model_path, dtype="float32"), lc).save_pretrained(out)
    return out


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_mode(mode: str, model_path: str, adapter: str, steps: int, warmup: int, batch: int, device: str,
             dtype: str) -> dict:
    import datasets
    import torch
    from transformers import TrainerCallback

    from attrpipe.models.loader import load_model, load_processor
    from attrpipe.train.worker import RecordCollator, build_trainer, load_policy, trl_args

    torch.manual_seed(0)
    images = {"size": 224, "max_pixels": 40_000_000, "max_bytes": 20_000_000, "allowed_schemes": ["file"]}
    model_cfg = {"path": model_path, "dtype": dtype, "trust_remote_code": False}
    lora = {"r": 32, "alpha": 32, "dropout": 0.0, "target_modules": r".*language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"}
    processor = load_processor(model_path, image_size=224)
    rss0 = _rss_mib()
    ref_model = None
    if mode == "adapter_disabled":
        model, peft_config = load_policy(model_cfg, lora, None)
    else:
        model, peft_config = load_policy(model_cfg, lora, adapter)
        if mode == "separate_model":
            ref_model = load_model(model_path, dtype=dtype, adapter=adapter).merge_and_unload().eval()
            for p in ref_model.parameters():
                p.requires_grad_(False)
    if device == "cuda":
        model = model.to("cuda")
        if ref_model is not None:
            ref_model = ref_model.to("cuda")
        torch.cuda.reset_peak_memory_stats()

    hyper = {"batch_size": batch, "gradient_accumulation_steps": 1, "learning_rate": 1e-5, "save_steps": 10**9,
             "gradient_checkpointing": False, "beta": 0.2}
    collator_holder: dict = {}
    records = _records(max(batch * (steps + warmup), 8))

    def gen():
        rc = collator_holder["rc"]
        for r in records:
            yield rc.examples([r])[0]

    with tempfile.TemporaryDirectory() as out:
        args = trl_args("dpo", hyper, output_dir=out, max_steps=steps + warmup, seed=0,
                        bf16=(dtype == "bfloat16" and device == "cuda"), use_cpu=device == "cpu", deepspeed=None,
                        save_strategy="no")
        ds = datasets.IterableDataset.from_generator(gen)
        collator_holder["rc"] = RecordCollator("dpo", images, lambda ex: ex)
        times: list[float] = []

        class _Clock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                self.t = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - self.t)

        if ref_model is None:
            trainer = build_trainer("dpo", model=model, peft_config=peft_config, processor=processor, args=args,
                                    train_dataset=ds, callbacks=[_Clock()])
        else:
            from trl import DPOTrainer

            trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=ds,
                                 processing_class=processor, callbacks=[_Clock()])
        trainer.train()
    timed = times[warmup:]
    n_params = sum(p.numel() for p in trainer.model.parameters())
    if trainer.ref_model is not None:
        n_params += sum(p.numel() for p in trainer.ref_model.parameters())
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mode": mode,
        "steps": len(timed),
        "steps_per_s": len(timed) / sum(timed) if timed else float("nan"),
        "peak_rss_mib": peak_rss,
        "rss_before_model_mib": rss0,
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "parameters_m": n_params / 1e6,
        "ref_adapter": "ref" in getattr(trainer.model, "peft_config", {}),
        "final_loss": trainer.state.log_history[-2].get("loss") if len(trainer.state.log_history) > 1 else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a model directory (default: build the tiny model, or --size small)")
    ap.add_argument("--size", choices=("tiny", "small"), default="tiny")
    ap.add_argument("--adapter", help="the start adapter (default: a random non-zero LoRA adapter)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2, help="pairs per step")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    ap.add_argument("--cache", default=".cache/bench")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    benchlib.use_this_checkout()
    if a._child:
        import torch

        torch.set_num_threads(a.threads)
        res = run_mode(a._child, a.model, a.adapter, a.steps, a.warmup, a.batch, a.device, a.dtype)
        print("RESULT " + json.dumps(res))
        return 0

    before = benchlib.start("DPO reference policies")
    cache = Path(a.cache)
    model = a.model
    if model is None:
        tiny = Path(benchlib.tiny_model())
        model = str(tiny if a.size == "tiny" else _build_small(tiny, cache / "small"))
    adapter = a.adapter or str(_make_adapter(model, cache / f"adapter-{Path(model).name}"))
    rows = []
    for mode in a.modes.split(","):
        cmd = [sys.executable, __file__, "--_child", mode, "--model", model, "--adapter", adapter,
               "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch", str(a.batch), "--device", a.device,
               "--dtype", a.dtype, "--threads", str(a.threads)]
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode != 0 or not line:
            sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
            raise SystemExit(f"mode {mode} failed (exit {p.returncode})")
        rows.append(json.loads(line[0][7:]))

    cuda = a.device == "cuda"
    benchlib.print_table(
        f"DPO reference policies: model {model} ({rows[0]['parameters_m']:.2f} M parameters in the policy), "
        f"{a.batch} pairs/step, {a.steps} timed steps after {a.warmup} warm-up, device {a.device}, "
        f"{a.threads} torch thread(s)",
        [("reference", None), ("steps/s", ".2f"), ("peak RSS MiB", ".0f"), ("peak - RSS before loading MiB", ".0f"),
         ("parameters (model + ref) M", ".2f"), *([("CUDA peak MiB", ".0f")] if cuda else [])],
        [(r["mode"], r["steps_per_s"], r["peak_rss_mib"], r["peak_rss_mib"] - r["rss_before_model_mib"],
          r["parameters_m"], *([r["cuda_peak_mib"]] if cuda else [])) for r in rows],
        before=before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
