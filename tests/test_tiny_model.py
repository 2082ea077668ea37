"""The tiny random-weight Qwen2.5-VL and the model loader: build, cache, reload, chat template, images, sampling, LoRA.

The model is built once per module (a few seconds on 2 CPU cores); everything else reuses it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attrpipe.models import (
    DEFAULT_LORA_TARGET_MODULES,
    build_tiny_model,
    load_model,
    load_processor,
    lora_config,
    lora_target_names,
    tiny_model_hash,
)
from attrpipe.models.tiny import QWEN_SPECIAL_TOKENS, TINY_MARKER_FILE
from attrpipe.prompts import build_messages
from attrpipe.taxonomy import Attribute

NUM_IMAGES = 3
TOKENS_PER_224_IMAGE = 64  # (224/14)^2 patches / (2x2 merge)


def _snapshot(d: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(d)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*")}


def _images(n: int, size: int = 224, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # On a 2-core machine shared with other processes, torch's 2 OpenMP threads stall on each other (measured: one
    # 7-chain generate 0.15 s with 1 thread, 1 to 6 s with 2 under load). The model is too small to gain from 2.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "qwen25vl-tiny"
    t0 = time.perf_counter()
    path = build_tiny_model(out, seed=0)
    print(f"\n[tiny] build {time.perf_counter() - t0:.2f} s")
    return path


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return load_processor(tiny_dir)


@pytest.fixture(scope="module")
def model(tiny_dir):
    return load_model(tiny_dir)


@pytest.fixture(scope="module")
def attribute() -> Attribute:
    return Attribute(
        name="pattern",
        description="The dominant surface pattern of the suitcase shell.",
        values=("Solid", "Striped", "Checked", "Floral"),
    )


def test_build_layout_and_marker(tiny_dir):
    for f in ("config.json", "generation_config.json", "model.safetensors", "processor_config.json",
              "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", TINY_MARKER_FILE):
        assert (tiny_dir / f).is_file(), f
    assert not list(tiny_dir.glob("*.bin")), "weights must be safetensors only"
    marker = json.loads((tiny_dir / TINY_MARKER_FILE).read_text())
    assert marker["hash"] == tiny_model_hash(seed=0)
    assert marker["seed"] == 0
    # No temporary build directories are left next to the output.
    assert [p.name for p in tiny_dir.parent.iterdir()] == [tiny_dir.name]


def test_second_build_is_a_cache_hit(tiny_dir):
    before = _snapshot(tiny_dir)
    marker_before = (tiny_dir / TINY_MARKER_FILE).read_text()
    t0 = time.perf_counter()
    again = build_tiny_model(tiny_dir, seed=0)
    elapsed = time.perf_counter() - t0
    assert again == tiny_dir
    assert elapsed < 1.0, f"cache hit took {elapsed:.2f} s"
    assert _snapshot(tiny_dir) == before
    assert (tiny_dir / TINY_MARKER_FILE).read_text() == marker_before
    # A different seed or corpus is a different build.
    assert tiny_model_hash(seed=1) != tiny_model_hash(seed=0)
    assert tiny_model_hash(seed=0, corpus_extra=["one more sentence"]) != tiny_model_hash(seed=0)


def test_force_rebuild_is_deterministic(tmp_path, tiny_dir):
    other = build_tiny_model(tmp_path / "again", seed=0)
    for f in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (other / f).read_bytes() == (tiny_dir / f).read_bytes(), f
    before = _snapshot(other)
    build_tiny_model(other, seed=0, force=True)
    after = _snapshot(other)
    assert after.keys() == before.keys()
    assert after["model.safetensors"][0:2] != before["model.safetensors"][0:2]  # rewritten
    assert (other / "model.safetensors").read_bytes() == (tiny_dir / "model.safetensors").read_bytes()


def test_refuses_to_overwrite_foreign_directory(tmp_path):
    foreign = tmp_path / "not_a_tiny_model"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        build_tiny_model(foreign)
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_token_ids_match_tokenizer(model, processor):
    tok = processor.tokenizer
    cfg = model.config
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    # Qwen's order: the special tokens follow the BPE vocabulary, consecutively.
    assert list(ids.values()) == list(range(ids["<|endoftext|>"], ids["<|endoftext|>"] + len(ids)))
    assert cfg.image_token_id == ids["<|image_pad|>"] == processor.image_token_id
    assert cfg.video_token_id == ids["<|video_pad|>"]
    assert cfg.vision_start_token_id == ids["<|vision_start|>"]
    assert cfg.vision_end_token_id == ids["<|vision_end|>"]
    assert cfg.text_config.vocab_size == len(tok)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    gen = model.generation_config
    assert sorted(gen.eos_token_id) == sorted([ids["<|im_end|>"], ids["<|endoftext|>"]])
    assert gen.pad_token_id == ids["<|endoftext|>"]
    assert tok.padding_side == "left"
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert model.dtype == torch.float32


def test_chat_template_images_and_sampling(model, processor, attribute):
    messages = build_messages(attribute, "suitcase", NUM_IMAGES)
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    slot = "<|vision_start|><|image_pad|><|vision_end|>"
    assert text.startswith("<|im_start|>system\nRespond in the following format:")
    assert text.count(slot) == NUM_IMAGES
    assert text.index(slot) < text.index("what is the most suitable value for pattern for this suitcase.")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")

    inputs = processor(text=[text], images=[_images(NUM_IMAGES)], return_tensors="pt", padding=True)
    n_image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == NUM_IMAGES * TOKENS_PER_224_IMAGE
    assert inputs["image_grid_thw"].tolist() == [[1, 16, 16]] * NUM_IMAGES

    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, do_sample=True, temperature=1.0, num_return_sequences=7, max_new_tokens=24)
    print(f"\n[tiny] generate 7 chains x 24 tokens, {NUM_IMAGES} images: {time.perf_counter() - t0:.2f} s")
    prompt_len = inputs["input_ids"].shape[1]
    assert out.shape[0] == 7 and prompt_len < out.shape[1] <= prompt_len + 24
    decoded = processor.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
    assert len(decoded) == 7 and all(isinstance(s, str) for s in decoded)
    assert len(set(decoded)) > 1, "sampling should give different chains"


def test_batched_prompts_pad_left(model, processor, attribute):
    texts = [
        processor.apply_chat_template(build_messages(attribute, "suitcase", n), tokenize=False,
                                      add_generation_prompt=True)
        for n in (1, 2)
    ]
    inputs = processor(text=texts, images=[_images(1, seed=1), _images(2, seed=2)], return_tensors="pt",
                       padding=True)
    pad = processor.tokenizer.pad_token_id
    assert inputs["input_ids"][0, 0] == pad and inputs["attention_mask"][0, 0] == 0
    assert inputs["input_ids"][1, -1] != pad and inputs["attention_mask"][:, -1].tolist() == [1, 1]
    with torch.inference_mode():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=4)
    assert out.shape[0] == 2


def test_image_budget_caps_larger_images(processor, tiny_dir):
    grid = processor.image_processor(images=_images(1, size=448), return_tensors="pt")["image_grid_thw"]
    assert int(grid.prod()) // 4 == TOKENS_PER_224_IMAGE
    bigger = load_processor(tiny_dir, image_size=448)
    grid = bigger.image_processor(images=_images(1, size=448), return_tensors="pt")["image_grid_thw"]
    assert int(grid.prod()) // 4 == 4 * TOKENS_PER_224_IMAGE


def _expected_lora_names(num_layers: int) -> list[str]:
    return [f"model.language_model.layers.{i}.self_attn.{p}" for i in range(num_layers) for p in ("q_proj", "v_proj")]


def test_lora_regex_targets_text_qv_only(tiny_dir):
    from peft import get_peft_model
    from peft.tuners.lora import LoraLayer

    base = load_model(tiny_dir)
    num_layers = base.config.text_config.num_hidden_layers
    expected = _expected_lora_names(num_layers)
    assert lora_target_names(base) == expected
    assert any("visual" in n for n, _ in base.named_modules())  # the vision tower exists and is not matched

    cfg = lora_config()
    assert cfg.target_modules == DEFAULT_LORA_TARGET_MODULES and cfg.r == 32 and cfg.lora_alpha == 32
    peft_model = get_peft_model(base, cfg)
    wrapped = sorted(n.removeprefix("base_model.model.") for n, m in peft_model.named_modules()
                     if isinstance(m, LoraLayer))
    assert wrapped == sorted(expected)
    assert len(wrapped) == 2 * num_layers
    assert not any("visual" in n for n in wrapped)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)


def test_lora_adapter_saves_and_reloads(tiny_dir, processor, tmp_path, attribute):
    from peft import PeftModel, get_peft_model

    peft_model = get_peft_model(load_model(tiny_dir), lora_config(r=4, alpha=8))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # lora_B starts at zero (a no-op adapter); make it matter so the round trip is checked
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    assert (adapter_dir / "adapter_model.safetensors").is_file()
    assert (adapter_dir / "adapter_config.json").is_file()

    text = processor.apply_chat_template(build_messages(attribute, "suitcase", 1), tokenize=False,
                                         add_generation_prompt=True)
    inputs = processor(text=[text], images=[_images(1)], return_tensors="pt")
    peft_model.eval()
    with torch.inference_mode():
        want = peft_model(**inputs).logits

    reloaded = load_model(tiny_dir, adapter=str(adapter_dir))
    assert isinstance(reloaded, PeftModel)
    assert not any(p.requires_grad for p in reloaded.parameters())
    with torch.inference_mode():
        got = reloaded(**inputs).logits
        plain = load_model(tiny_dir)(**inputs).logits
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, plain), "the adapter should change the outputs"

    trainable = load_model(tiny_dir, adapter=adapter_dir, adapter_trainable=True)
    names = [n for n, p in trainable.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)

    # the same adapter as a pickle (peft's fallback when there is no safetensors file) is refused, never unpickled
    pickled = tmp_path / "pickled"
    peft_model.save_pretrained(pickled, safe_serialization=False)
    assert (pickled / "adapter_model.bin").is_file() and not (pickled / "adapter_model.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="safetensors only"):
        load_model(tiny_dir, adapter=str(pickled))


def test_dtype_option(tiny_dir):
    assert load_model(tiny_dir, dtype="bfloat16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        load_model(tiny_dir, dtype="fp8")


def test_missing_paths_raise_clear_errors(tmp_path, tiny_dir, monkeypatch):
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(FileNotFoundError, match="does not exist") as e:
        load_model(str(missing))
    assert str(missing) in str(e.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model("./definitely-not-here/model/dir")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_processor(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(empty)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_model(tiny_dir, adapter=empty)
    # "runs/x" looks like a hub id, but "runs" is a local directory: a mistyped local path, failed without the hub.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="'runs/no-such-checkpoint' does not exist"):
        load_model("runs/no-such-checkpoint")
    assert time.perf_counter() - t0 < 5
