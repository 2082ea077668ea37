"""The pure side of training (no Ray): rows -> records -> TRL examples, the step plan, start/reference resolution,
the DeepSpeed config, paths, resume discovery; and TRL's collators on the tiny processor (image tokens intact)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import posixpath

import pytest

from attrpipe.config import ConfigError, load_config
from attrpipe.images import ImageError
from attrpipe.prompts import SYSTEM_PROMPT
from attrpipe.taxonomy import load_taxonomy
from attrpipe.train.examples import (
    RECORD_SCHEMA,
    TrainingDataError,
    catalog_root,
    dpo_example,
    pair_record,
    records_to_table,
    seed_records,
    sft_example,
    sl_records,
)
from attrpipe.train.plan import (
    checkpoint_step,
    deepspeed_config,
    default_paths,
    find_resume_checkpoint,
    hyperparameters,
    plan_steps,
    Start,
    resolve_start,
)
from test_train_data import jpeg, write_consensus, write_pairs, write_seed_catalog, write_taxonomy


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("train-pure")
    tax_dir = write_taxonomy(d / "tax")
    return {
        "dir": d,
        "tax_dir": tax_dir,
        "tax": load_taxonomy(tax_dir),
        "seed": write_seed_catalog(d / "cat", n_per_vertical=2),
        "pairs": write_pairs(d / "pairs", tax_dir, n=3),
        "consensus": write_consensus(d / "consensus", d / "img", n=4),
    }


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


# --- records ----------------------------------------------------------------------------------------------------------


def test_catalog_root_is_the_parent_with_catalog_json(data, tmp_path):
    seed = data["seed"]
    assert catalog_root(str(seed)) == str(seed.parent)
    assert catalog_root(str(seed / "part-00000.parquet")) == str(seed.parent)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "x.parquet").write_bytes(b"")
    assert catalog_root(str(bare)) == str(bare)
    assert catalog_root(str(bare / "x.parquet")) == str(bare)


def test_a_relative_catalog_root_is_made_absolute(data, monkeypatch):
    """Pairs and consensus rows carry image locations resolved against the root; Ray Train workers run in another
    working directory, so a relative data.root (conf/miniature.yaml's `data/miniature`) must resolve to an absolute
    path (a DPO run once failed with 'missing: data/miniature/images/...')."""
    seed = data["seed"]
    monkeypatch.chdir(seed.parent.parent)
    relative = f"{seed.parent.name}/{seed.name}"
    assert catalog_root(relative) == str(seed.parent) and posixpath.isabs(catalog_root(relative))


def test_seed_records_targets_images_and_skips(data):
    row = _rows(data["seed"])[0]  # suitcase-0: pattern, number_of_wheels (inferable), warranty (not inferable)
    recs = seed_records(row, data["tax"], root=catalog_root(str(data["seed"])), max_images=5)
    assert [r["example_id"] for r in recs] == ["suitcase-0::number_of_wheels", "suitcase-0::pattern"]
    labels = dict(row["labels"])
    for r in recs:
        attr = r["example_id"].split("::")[1]
        assert r["completion"].startswith("<reasoning> ") and r["completion"].endswith(f"<answer> {labels[attr]} </answer>")
        assert r["prompt"].startswith(f"what is the most suitable value for {attr.replace('_', ' ')} for this suitcase.")
        assert r["chosen"] is None and r["image_bytes"] == []
        assert all(Path(u).is_absolute() and Path(u).is_file() for u in r["image_uris"])
    # The row's own reasoning is used where given; a default fills the rest.
    given = dict(row["reasoning"])
    for r in recs:
        attr = r["example_id"].split("::")[1]
        if attr in given:
            assert given[attr] in r["completion"]
        else:
            assert "Looking at the images of this suitcase" in r["completion"]
    with_warranty = seed_records(row, data["tax"], root=None, max_images=5, skip_non_inferable=False)
    assert len(with_warranty) == 3


def test_seed_records_canonical_values_category_and_errors(data):
    row = {"listing_id": "x", "vertical": "chair", "image_uris": ["/a.jpg", "/b.jpg", "/c.jpg"],
           "labels": [("color", " black ")]}
    recs = seed_records(row, data["tax"], root=None, max_images=2, category_question=True)
    by_attr = {r["example_id"].split("::")[1]: r for r in recs}
    assert by_attr["color"]["completion"].endswith("<answer> Black </answer>")  # canonical spelling
    assert by_attr["category"]["completion"].endswith("<answer> office chair </answer>")
    assert "for this product" in by_attr["category"]["prompt"]
    assert by_attr["color"]["image_uris"] == ["/a.jpg", "/b.jpg"]  # max_images
    with pytest.raises(TrainingDataError, match="not one of"):
        seed_records({**row, "labels": [("color", "Purple")]}, data["tax"], root=None, max_images=5)
    with pytest.raises(TrainingDataError, match="unknown vertical"):
        seed_records({**row, "vertical": "boat"}, data["tax"], root=None, max_images=5)
    with pytest.raises(TrainingDataError, match="no attribute"):
        seed_records({**row, "labels": [("size", "L")]}, data["tax"], root=None, max_images=5)
    with pytest.raises(ImageError):
        seed_records({**row, "image_uris": ["../up.jpg"]}, data["tax"], root="/cat", max_images=5)


def test_pair_and_sl_records(data):
    pairs = _rows(data["pairs"])
    r = pair_record(pairs[0], max_images=5)
    assert r["chosen"] == pairs[0]["chosen"] and r["rejected"] == pairs[0]["rejected"]
    assert r["prompt"] == pairs[0]["prompt"] and len(r["image_bytes"]) == 1 and r["image_uris"] == []
    assert pair_record(pairs[0], max_images=5, with_images=False)["image_bytes"] == []

    cons = _rows(data["consensus"])
    kept = sl_records(cons[0], data["tax"], max_images=5)  # 4 of 7 agree: 4 preferred chains
    assert len(kept) == 4 and all(x["completion"].endswith("<answer> Striped </answer>") for x in kept)
    assert kept[0]["prompt"].startswith("what is the most suitable value for pattern for this suitcase.")
    assert kept[0]["image_uris"] == cons[0]["image_uris"]
    assert len({x["example_id"] for x in kept}) == 4
    assert sl_records(cons[1], data["tax"], max_images=5) == []  # 3 of 7: not kept
    assert sl_records({**cons[0], "consensus": None}, data["tax"], max_images=5) == []


def test_records_table_has_the_fixed_schema(data):
    recs = seed_records(_rows(data["seed"])[0], data["tax"], root=None, max_images=5, with_images=False)
    recs.append(pair_record(_rows(data["pairs"])[0], max_images=5))
    t = records_to_table(recs)
    assert t.schema.equals(RECORD_SCHEMA) and t.num_rows == len(recs)
    assert records_to_table([]).schema.equals(RECORD_SCHEMA)


def test_trl_examples_put_one_image_slot_per_image_before_the_text():
    rec = {"example_id": "e", "prompt": "what?", "completion": "<reasoning> r </reasoning><answer> A </answer>",
           "chosen": "c", "rejected": "r"}
    ex = sft_example(rec, ["img1", "img2"])
    assert ex["images"] == ["img1", "img2"]
    assert ex["prompt"][0] == {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}
    assert ex["prompt"][1]["content"] == [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "what?"}]
    assert ex["completion"] == [{"role": "assistant", "content": [{"type": "text", "text": rec["completion"]}]}]
    d = dpo_example(rec, ["img"])
    assert d["chosen"][0]["content"][0]["text"] == "c" and d["rejected"][0]["content"][0]["text"] == "r"
    with pytest.raises(TrainingDataError):
        sft_example({**rec, "completion": None}, [])
    with pytest.raises(TrainingDataError):
        dpo_example({**rec, "rejected": None}, [])


# --- TRL's collators on the tiny processor: nothing truncates image tokens ------------------------------------------


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from attrpipe.models import build_tiny_model, load_processor

    return load_processor(build_tiny_model(tmp_path_factory.mktemp("tiny") / "m"), image_size=224)


def test_collated_batches_keep_every_image_token(processor, tmp_path):
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from attrpipe.train.worker import RecordCollator, trl_args

    images = {"size": 224, "max_pixels": 10**8, "max_bytes": 10**8, "allowed_schemes": ["file"]}
    recs = [
        {"example_id": "a", "prompt": "what is the pattern", "completion": "<reasoning> x </reasoning><answer> Solid </answer>",
         "chosen": "<reasoning> x </reasoning><answer> Solid </answer>", "rejected": "<answer> Checked </answer>",
         "image_uris": [], "image_bytes": [jpeg(1, 300), jpeg(2, 100)]},
        {"example_id": "b", "prompt": "what is the colour", "completion": "<answer> Red </answer>",
         "chosen": "<answer> Red </answer>", "rejected": "<answer> Black </answer>",
         "image_uris": [], "image_bytes": [jpeg(3, 224)]},
    ]
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    # The trainers are configured with max_length=None, and the collators get it from there.
    assert trl_args("dpo", _hyper(), output_dir=str(tmp_path), max_steps=1, seed=0, bf16=False, use_cpu=True,
                    deepspeed=None).max_length is None
    sft = RecordCollator("sft", images, DataCollatorForVisionLanguageModeling(processor, max_length=None,
                                                                              completion_only_loss=True))
    out = sft(recs)
    assert (out["input_ids"] == image_token).sum(dim=1).tolist() == [128, 64]  # 64 tokens per 224x224 image
    assert out["pixel_values"].shape[0] == 3 * 256  # 256 patches per image
    labels = out["labels"][0][out["labels"][0] != -100]
    assert processor.tokenizer.decode(labels).startswith("<reasoning> x </reasoning><answer> Solid </answer>")

    dpo = RecordCollator("dpo", images, DataCollatorForVisionPreference(processor, max_length=None))
    out = dpo(recs)
    assert (out["input_ids"] == image_token).sum(dim=1).tolist() == [128, 64, 128, 64]  # chosen rows, rejected rows
    chosen = out["input_ids"][0][out["completion_mask"][0] == 1]
    assert "<answer> Solid </answer>" in processor.tokenizer.decode(chosen)


def test_dpo_sft_weight_adds_the_chosen_chains_nll(processor, tmp_path):
    """dpo.sft_weight = 0 is the paper's loss alone; > 0 adds that weight x the chosen chains' negative log-likelihood
    (TRL's multi-loss). With a fresh LoRA the policy is its reference, so the DPO term is exactly ln 2."""
    import math

    import torch
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    from attrpipe.train.worker import RecordCollator, build_trainer, dpo_loss, load_policy, probe_dataset, trl_args

    assert dpo_loss({"sft_weight": 0.0}) == {"loss_type": ["sigmoid"]}
    assert dpo_loss({"sft_weight": 0.5}) == {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}
    with pytest.raises(ValueError, match="sft_weight"):
        dpo_loss({"sft_weight": -1})
    images = {"size": 224, "max_pixels": 10**8, "max_bytes": 10**8, "allowed_schemes": ["file"]}
    recs = [{"example_id": "a", "prompt": "what is the colour", "chosen": "<answer> Red </answer>",
             "rejected": "<answer> Black </answer>", "image_uris": [], "image_bytes": [jpeg(3, 224)]}]
    batch = RecordCollator("dpo", images, DataCollatorForVisionPreference(processor, max_length=None))(recs)
    path = processor.tokenizer.name_or_path
    losses = {}
    for weight in (0.0, 2.0):
        torch.manual_seed(0)
        model, peft_config = load_policy({"path": path, "dtype": "float32", "trust_remote_code": False},
                                         {"r": 4, "alpha": 4, "dropout": 0.0, "target_modules": "all-linear"}, None)
        args = trl_args("dpo", {**_hyper(), "sft_weight": weight}, output_dir=str(tmp_path / f"w{weight}"),
                        max_steps=1, seed=0, bf16=False, use_cpu=True, deepspeed=None)
        trainer = build_trainer("dpo", model=model, peft_config=peft_config, processor=processor, args=args,
                                train_dataset=probe_dataset("dpo"))
        with torch.no_grad():
            losses[weight] = float(trainer.compute_loss(trainer.model, dict(batch)))
    assert losses[0.0] == pytest.approx(math.log(2), abs=1e-4)
    nll = (losses[2.0] - math.log(2)) / 2.0
    assert nll > 1.0  # a random model's per-token NLL on the chosen chain: far from 0


def test_full_policy_can_freeze_the_vision_tower_but_its_merger(processor):
    """pretrain.vision_tower=freeze: the tower's patch embedding and blocks keep what the vision stage taught; its
    merger (the projection into the language model) and the language model train."""
    from attrpipe.train.worker import load_policy

    model_cfg = {"path": processor.tokenizer.name_or_path, "dtype": "float32", "trust_remote_code": False}
    model, peft_config = load_policy(model_cfg, None, None)
    assert peft_config is None and all(p.requires_grad for p in model.parameters())
    model, _ = load_policy(model_cfg, None, None, freeze_vision_tower=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(".visual." in f".{n}" and ".merger." not in n for n in frozen)
    assert any(".visual.blocks." in n for n in frozen) and any("patch_embed" in n for n in frozen)
    assert any(".merger." in n for n in trainable) and any("language_model" in n for n in trainable)


def test_reference_adapter_replaces_the_frozen_copy(processor, tmp_path):
    """Later DPO rounds continue adapter A against a frozen adapter B: TRL's "ref" copy of A is overwritten by B,
    A stays the trainable policy."""
    import torch
    from peft import get_peft_model
    from safetensors.torch import load_file

    from attrpipe.models import load_model, lora_config
    from attrpipe.train.worker import build_trainer, load_policy, load_reference_adapter, probe_dataset, trl_args

    path = processor.tokenizer.name_or_path
    for name, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        lc = lora_config()
        lc.init_lora_weights = False
        get_peft_model(load_model(path), lc).save_pretrained(tmp_path / name)
    model, peft_config = load_policy({"path": path, "dtype": "float32", "trust_remote_code": False}, {}, str(tmp_path / "a"))
    assert peft_config is None
    args = trl_args("dpo", _hyper(), output_dir=str(tmp_path / "out"), max_steps=1, seed=0, bf16=False, use_cpu=True,
                    deepspeed=None)
    trainer = build_trainer("dpo", model=model, peft_config=None, processor=processor, args=args,
                            train_dataset=probe_dataset("dpo"))
    load_reference_adapter(trainer.model, str(tmp_path / "b"))
    a, b = load_file(tmp_path / "a" / "adapter_model.safetensors"), load_file(tmp_path / "b" / "adapter_model.safetensors")
    params = dict(trainer.model.named_parameters())
    for k in a:
        default, ref = k.replace(".weight", ".default.weight"), k.replace(".weight", ".ref.weight")
        assert torch.equal(params[default].detach(), a[k]) and params[default].requires_grad
        assert torch.equal(params[ref].detach(), b[k]) and not params[ref].requires_grad


class _Processor:
    def save_pretrained(self, d):
        (Path(d) / "preprocessor_config.json").write_text("{}")


def _saved(d: Path, files: list[str]) -> Path:
    for f in files:
        (d / f).parent.mkdir(parents=True, exist_ok=True)
        (d / f).write_text(f)
    return d


def _tree(d: Path) -> set[str]:
    return {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}


def test_export_ships_the_trained_adapter_or_model_without_the_trainers_extras(tmp_path):
    from attrpipe.train.worker import export_trained

    adapter = _saved(tmp_path / "a", ["adapter_config.json", "adapter_model.safetensors", "training_args.bin",
                                      "README.md", "ref/adapter_config.json", "ref/adapter_model.safetensors"])
    out = export_trained(adapter, _Processor(), tmp_path / "out-a")
    assert _tree(out) == {"adapter_config.json", "adapter_model.safetensors", "README.md", "preprocessor_config.json"}
    model = _saved(tmp_path / "m", ["config.json", "generation_config.json", "model.safetensors", "training_args.bin"])
    out = export_trained(model, _Processor(), tmp_path / "out-m", full_model=True)
    assert _tree(out) == {"config.json", "generation_config.json", "model.safetensors", "preprocessor_config.json"}
    with pytest.raises(RuntimeError, match="no adapter_model.safetensors: not a PEFT adapter save"):
        export_trained(model, _Processor(), tmp_path / "wrong-a")  # a model save is no adapter
    with pytest.raises(RuntimeError, match="no safetensors weights: not a model save"):
        export_trained(_saved(tmp_path / "e", ["config.json"]), _Processor(), tmp_path / "wrong-m", full_model=True)


# --- plan -------------------------------------------------------------------------------------------------------------


def _hyper():
    return {"batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1e-5, "save_steps": 5,
            "gradient_checkpointing": False, "beta": 0.2}


def test_plan_steps():
    p = plan_steps(9, workers=2, batch_size=2, gradient_accumulation_steps=1, epochs=3)
    assert (p.per_worker, p.batches_per_pass, p.steps_per_epoch, p.max_steps, p.passes) == (4, 2, 2, 6, 3)
    p = plan_steps(10, workers=2, batch_size=2, gradient_accumulation_steps=2, epochs=1, max_steps=7)
    assert (p.per_worker, p.batches_per_pass, p.steps_per_epoch, p.max_steps, p.passes) == (5, 3, 1, 7, 7)
    with pytest.raises(ValueError, match="cannot feed"):
        plan_steps(1, workers=2, batch_size=2, gradient_accumulation_steps=1, epochs=1)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        plan_steps(4, workers=2, batch_size=2, gradient_accumulation_steps=2, epochs=1)


def test_hyperparameters_follow_the_papers_defaults():
    cfg = load_config()
    sft, dpo, sl = (hyperparameters(k, cfg) for k in ("sft", "dpo", "sl"))
    assert sft.learning_rate == pytest.approx(3e-5) and sft.beta is None
    assert dpo.learning_rate == pytest.approx(1e-5) and dpo.beta == pytest.approx(0.2)
    assert sl.learning_rate == cfg.sl.learning_rate and sl.batch_size == cfg.sft.batch_size
    with pytest.raises(ValueError):
        hyperparameters("ppo", cfg)


def test_resolve_start_gives_the_papers_two_dpo_starts():
    cfg = load_config()
    assert resolve_start("dpo", cfg, None, "runs/x/sft/adapter") == Start("runs/x/sft/adapter", "sft_adapter")
    assert resolve_start("dpo", cfg, "my/adapter", "d").init_adapter == "my/adapter"
    base = load_config(None, ["dpo.reference=base"])
    assert resolve_start("dpo", base, None, "d") == Start(None, "base")
    with pytest.raises(ValueError, match="takes no init adapter"):
        resolve_start("dpo", base, "my/adapter", "d")
    assert resolve_start("sft", cfg, None, "d") == Start(None, None)
    assert resolve_start("sl", cfg, None, "d") == Start("d", None)
    assert resolve_start("sl", load_config(None, ["sl.init=base"]), None, "d") == Start(None, None)
    assert resolve_start("dpo", cfg, "r1", "sft", "sft") == Start("r1", "sft_adapter", "sft")
    assert resolve_start("dpo", cfg, "sft", "d", "sft/") == Start("sft", "sft_adapter", None)  # same adapter
    with pytest.raises(ValueError, match="DPO only"):
        resolve_start("sl", cfg, None, "d", "x")


def test_deepspeed_config():
    z2 = deepspeed_config(2, bf16=False)
    assert z2["zero_optimization"]["stage"] == 2 and z2["bf16"] == {"enabled": False}
    assert z2["train_micro_batch_size_per_gpu"] == "auto" and z2["gradient_clipping"] == "auto"
    assert z2["zero_force_ds_cpu_optimizer"] is False and z2["zero_allow_untested_optimizer"] is True
    z3 = deepspeed_config(3, bf16=True)
    assert z3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert z3["bf16"] == {"enabled": True} and z3["fp16"] == {"enabled": False}
    with pytest.raises(ValueError):
        deepspeed_config(1, bf16=False)


def test_default_paths_and_config_keys():
    cfg = load_config(None, ["run.output_dir=out", "run.name=r", "data.root=cat"])
    assert default_paths("sft", cfg) == {"run_dir": "out/r", "out_dir": "out/r/sft", "data": "cat/seed",
                                         "sft_adapter": "out/r/sft/adapter"}
    assert default_paths("dpo", cfg)["data"] == "out/r/pairs"
    assert default_paths("sl", cfg)["data"] == "out/r/consensus"
    assert cfg.ray.train.max_failures >= 0 and cfg.ray.train.storage_path is None
    for bad, msg in (("sl.init=x", "sl.init"), ("dpo.max_steps=0", "dpo.max_steps"),
                     ("ray.train.checkpoints_to_keep=0", "ray.train.checkpoints_to_keep")):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, [bad])


def _ckpt(d: Path, step: int, *, manifest: bool = True, nodes: int = 1) -> Path:
    """A checkpoint at ``d``: the trainer's directory, or (``d`` named ``checkpoint``) a Ray Train one with its node
    manifests (one per node: world ranks 0, 2, ...)."""
    from attrpipe.train.checkpoints import write_manifest

    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (d / "optimizer.pt").write_bytes(b"\x01" * 100)
    if d.name == "checkpoint" and manifest:
        for node in range(nodes):
            write_manifest(d, world_rank=2 * node, nodes=nodes, step=step)
    return d


def test_find_resume_checkpoint_picks_the_highest_step(tmp_path):
    hf = _ckpt(tmp_path / "hf" / "checkpoint-4", 4)
    assert find_resume_checkpoint(hf) == str(hf) and checkpoint_step(hf) == 4
    run = tmp_path / "out" / "ray" / "sft-1"
    _ckpt(run / "checkpoint_a" / "checkpoint", 2)
    _ckpt(run / "checkpoint_b" / "checkpoint", 6)
    (run / "checkpoint_c").mkdir()  # the final adapter checkpoint: no trainer state
    assert find_resume_checkpoint(tmp_path / "out") == str(run / "checkpoint_b")
    assert checkpoint_step(run / "checkpoint_b") == 6 and checkpoint_step(run / "checkpoint_c") is None
    with pytest.raises(FileNotFoundError):
        find_resume_checkpoint(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no training checkpoint"):
        find_resume_checkpoint(run / "checkpoint_c")


@pytest.mark.parametrize("damage", ["truncated", "missing file", "no manifest", "a node's manifest missing",
                                    "no trainer state"])
def test_a_half_written_checkpoint_is_never_resumed_from(tmp_path, damage):
    """A process killed while it writes or uploads a checkpoint leaves it short or incomplete: the resume takes the
    last complete one below, and names the damage when the checkpoint is named directly."""
    from attrpipe.train.checkpoints import checkpoint_problems, manifest_name

    run = tmp_path / "ray" / "sft-1"
    good = _ckpt(run / "checkpoint_a" / "checkpoint", 2, nodes=2).parent
    bad = _ckpt(run / "checkpoint_b" / "checkpoint", 4, nodes=2, manifest=damage != "no manifest").parent
    assert checkpoint_problems(str(good)) == []
    inner = bad / "checkpoint"
    if damage == "truncated":
        (inner / "optimizer.pt").write_bytes(b"\x01" * 40)
    elif damage == "missing file":
        (inner / "optimizer.pt").unlink()
    elif damage == "a node's manifest missing":
        (inner / manifest_name(2)).unlink()
    elif damage == "no trainer state":
        (inner / "trainer_state.json").unlink()
    problems = checkpoint_problems(str(bad))
    expected = {"truncated": "optimizer.pt has 40 bytes, 100 when it was written", "missing file":
                "optimizer.pt is missing", "no manifest": "no file manifest", "a node's manifest missing":
                "1 of 2 node manifest(s)", "no trainer state": "trainer_state.json is missing"}[damage]
    assert any(expected in p for p in problems), problems
    assert find_resume_checkpoint(tmp_path / "ray") == str(good)
    with pytest.raises(ValueError, match="incomplete"):
        find_resume_checkpoint(bad)
    shutil.rmtree(good)
    with pytest.raises(FileNotFoundError, match="no complete training checkpoint.*checkpoint_b" if damage !=
                       "no trainer state" else "no training checkpoint"):
        find_resume_checkpoint(tmp_path / "ray")


def test_the_chaos_harness_fault_hook_applies_to_the_training_it_names(monkeypatch):
    from attrpipe.train.driver import FAULT_ENV, fault_from_env

    monkeypatch.delenv(FAULT_ENV, raising=False)
    assert fault_from_env("runs/x/round-1") is None
    spec = {"where": "round-1", "step": 2, "at": "save", "kill": True, "ranks": [1], "marker": "/tmp/m"}
    monkeypatch.setenv(FAULT_ENV, json.dumps(spec))
    assert fault_from_env("runs/x/round-1") == spec and fault_from_env("s3://b/runs/x/round-1/") == spec
    assert fault_from_env("runs/x/sft") is None and fault_from_env("runs/x/round-12") is None
