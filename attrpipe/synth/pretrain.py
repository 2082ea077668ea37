"""``attrpipe synth pretrain``: a small Qwen2.5-VL trained from scratch on generic visual questions, on the CPU.

A random model cannot learn product attributes from ten labeled listings a vertical; a pretrained VLM can. No real
checkpoint can be downloaded here, so this recipe makes a small stand-in that, like a pretrained VLM, already names
colours, shapes, counts and patterns and follows the answer-format instruction, but has never seen a product or a
taxonomy attribute (:mod:`attrpipe.synth.vqa`). Steps, each cached:

1. the base: the tiny model's architecture and tokenizer builder with the sizes of ``pretrain.text`` /
   ``pretrain.vision`` and the questions' sentences in the tokenizer corpus (random weights);
2. the data: ``pretrain.examples`` rendered questions (training) and ``pretrain.eval_examples`` others (held out),
   as training records in Parquet;
3. training: ``attrpipe train``'s own Ray Train + TRL path, kind ``pretrain`` (every weight trains, no adapter);
4. the held-out questions answered greedily through the engine layer, before (the random base) and after: accuracy
   per kind of question, and how many answers parse.

``<pretrain.output>/model`` is a normal HF checkpoint directory (safetensors, processor, chat template); point
``model.path`` at it. ``<pretrain.output>/pretrain.json`` records the recipe, its hash, the timings and the accuracies.
A rerun with the same recipe returns the cached model.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from attrpipe.console import echo
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from attrpipe.models.loader import MODEL_CARD_FILE

__all__ = ["pretrain_recipe", "recipe_hash", "question_plan", "write_vqa_split", "evaluate_vqa", "run_pretrain",
           "export_model", "PRETRAIN_FILE"]

PRETRAIN_FILE = "pretrain.json"
_RECIPE_VERSION = 4  # bump when the questions or the procedure change in a way the recipe does not capture
_ROWS_PER_FILE = 2000


# pretrain.* knobs added after recipes were first hashed, with the value every earlier recipe had.
_LATER_KNOBS: dict[str, Any] = {"schedule": None, "options": {"attribute_values": 5, "distractors": 0.0},
                                "reasoning": "evidence", "vision_tower": "train", "start_from": None,
                                "picture_labels": False}


def pretrain_recipe(cfg) -> dict[str, Any]:
    """Everything the pretrained model depends on (the cache key)."""
    import transformers

    p = OmegaConf.to_container(cfg.pretrain, resolve=True)
    p.pop("output")
    # Recipes from before these knobs used their defaults: leaving a default out keeps their hashes (models/miniature's
    # card among them) what they were.
    for key, default in _LATER_KNOBS.items():
        if p.get(key, default) == default:
            p.pop(key, None)
    recipe = {"pretrain": p, "seed": int(cfg.run.seed), "version": _RECIPE_VERSION,
              "workers": int(cfg.ray.train.num_workers), "transformers": transformers.__version__}
    if p["products"]:  # products drawn, described and asked about: the taxonomy's content, wherever it lives
        recipe["taxonomy"] = {"verticals": sorted(cfg.taxonomy.verticals), "files": _taxonomy_digest(cfg.taxonomy.path)}
    if p.get("start_from"):  # the weights it continues from, by content, wherever they live
        weights = Path(str(p["start_from"])) / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"pretrain.start_from: no model.safetensors in {p['start_from']}")
        recipe["start_weights"] = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    return recipe


def _taxonomy_digest(path) -> str:
    root = Path(str(path))
    files = sorted(root.rglob("*.yaml")) if root.is_dir() else [root]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root) if root.is_dir() else f.name).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


_PICTURE_LABELS = "{% if add_vision_id is not defined %}{% set add_vision_id = true %}{% endif %}"


def label_pictures(model_dir: str | Path) -> None:
    """Make the model's chat template label its images by default ("Picture 1: <image> Picture 2: <image> ..."):
    Qwen2.5-VL's own ``add_vision_id``, on unless a caller passes it. Every path that builds a prompt (the trainers'
    collators, the hf and vLLM engines) applies the model's template, so the model carries the convention with it."""
    path = Path(model_dir) / "chat_template.jinja"
    template = path.read_text()
    if "add_vision_id" not in template:
        raise ValueError(f"{path}: the chat template has no add_vision_id to turn on")
    if not template.startswith(_PICTURE_LABELS):
        path.write_text(_PICTURE_LABELS + template)


def _num_parameters(model_dir: Path) -> int:
    """Parameters of a saved model, a tied output head counted once (as ``model.num_parameters()`` counts them)."""
    from safetensors import safe_open

    config = json.loads((model_dir / "config.json").read_text())
    tied = config.get("tie_word_embeddings", config.get("text_config", {}).get("tie_word_embeddings", False))
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys() if not (tied and k == "lm_head.weight"))


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def question_plan(cfg) -> dict[str, Any]:
    """``pretrain.schedule``, ``pretrain.options`` and ``pretrain.reasoning`` as :func:`attrpipe.synth.vqa.vqa_examples`
    takes them, checked (a wrong kind of question or reasoning fails here, before anything is built)."""
    from attrpipe.synth.vqa import Offer, check_reasoning, check_schedule

    schedule = list(cfg.pretrain.schedule) if cfg.pretrain.get("schedule") else None
    if schedule is not None:
        check_schedule(schedule)
    o = cfg.pretrain.options
    return {"schedule": schedule, "offer": Offer(values=int(o.attribute_values), distractors=float(o.distractors)),
            "reasoning": check_reasoning(str(cfg.pretrain.reasoning))}


def write_vqa_split(path: str | Path, n: int, *, seed: int, size: int, prefix: str, taxonomy=None,
                    schedule=None, offer=None, reasoning: str = "evidence") -> int:
    """``n`` rendered questions as training records (Parquet files of up to 2000 rows, each written atomically)."""
    from attrpipe import storage
    from attrpipe.synth.vqa import Offer, vqa_examples, vqa_records
    from attrpipe.train.examples import records_to_table

    path = Path(path)
    batch, part = [], 0
    examples = vqa_examples(n, seed=seed, size=size, taxonomy=taxonomy, schedule=schedule, offer=offer or Offer(),
                            reasoning=reasoning)
    for rec in vqa_records(examples, prefix=prefix):
        batch.append(rec)
        if len(batch) == _ROWS_PER_FILE:
            storage.write_parquet_atomic(str(path / f"part-{part:05d}.parquet"), records_to_table(batch))
            batch, part = [], part + 1
    if batch:
        storage.write_parquet_atomic(str(path / f"part-{part:05d}.parquet"), records_to_table(batch))
    return n


def evaluate_vqa(model_dir: str, n: int, *, seed: int, size: int, max_new_tokens: int = 96,
                 batch_size: int = 16, taxonomy=None, schedule=None, offer=None,
                 reasoning: str = "evidence") -> dict[str, Any]:
    """Greedy answers of the model to ``n`` held-out questions, through the hf engine: accuracy overall and per
    kind, the share that parses to one of the options, and chance (one over the number of options, averaged over
    the questions: a part or feature question may offer 2 to 15 options)."""
    from attrpipe.engines.base import GenerationRequest, SamplingSpec
    from attrpipe.engines.hf import HFEngine
    from attrpipe.parsing import parse_generation
    from attrpipe.prompts import messages_for
    from attrpipe.synth.vqa import Offer, vqa_examples

    engine = HFEngine(model_dir, dtype="float32", image_size=size)
    examples = list(vqa_examples(n, seed=seed, size=size, taxonomy=taxonomy, schedule=schedule,
                                 offer=offer or Offer(), reasoning=reasoning))
    right, parsed, seen, chance = Counter(), Counter(), Counter(), Counter()
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        requests = [GenerationRequest(f"q{start + i}", messages_for(ex.user_text, len(ex.images)), ex.images)
                    for i, ex in enumerate(chunk)]
        texts = engine.generate(requests, SamplingSpec.greedy_decoding(max_new_tokens))
        for ex, (text,) in zip(chunk, texts):
            chain = parse_generation(text, ex.options)
            seen[ex.kind] += 1
            chance[ex.kind] += 1 / len(ex.options)
            parsed[ex.kind] += chain.value is not None
            right[ex.kind] += chain.value == ex.answer
    total = sum(seen.values()) or 1
    return {
        "questions": sum(seen.values()),
        "accuracy": sum(right.values()) / total,
        "parsed": sum(parsed.values()) / total,
        "chance": sum(chance.values()) / total if examples else None,
        "by_kind": {k: {"questions": seen[k], "accuracy": right[k] / seen[k], "parsed": parsed[k] / seen[k],
                        "chance": chance[k] / seen[k]}
                    for k in sorted(seen)},
    }


def run_pretrain(cfg, *, force: bool = False, verbose: bool = True) -> dict[str, Any]:
    """Build, train and evaluate the pretrained model of ``cfg.pretrain`` (or return the cached one)."""
    from attrpipe import storage
    from attrpipe.models.tiny import build_tiny_model
    from attrpipe.synth.vqa import VIEW_PHOTOS, vqa_corpus
    from attrpipe.taxonomy import load_taxonomy
    from attrpipe.train import run_training

    t0 = time.perf_counter()
    out = Path(str(cfg.pretrain.output)).resolve()
    recipe = pretrain_recipe(cfg)
    digest = recipe_hash(recipe)
    record_file = out / PRETRAIN_FILE
    if not force and record_file.is_file():
        done = json.loads(record_file.read_text())
        if done.get("hash") == digest and (out / "model" / "config.json").is_file():
            if verbose:
                echo(f"pretrain: cached model {out / 'model'} (recipe {digest})")
            return done
    p = cfg.pretrain
    seed, size = int(cfg.run.seed), int(p.image_size)
    questions = question_plan(cfg)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    taxonomy = load_taxonomy(cfg.taxonomy.path, list(cfg.taxonomy.verticals) or None) if p.products else None
    if p.get("start_from"):  # continued pretraining: more questions for a model already built (its own sizes)
        base = start = Path(str(p.start_from)).resolve()
        params = _num_parameters(start)
        if p.picture_labels:  # a copy whose chat template labels the pictures; the copy is no shipped model
            base = start = out / "start"
            shutil.rmtree(start, ignore_errors=True)
            shutil.copytree(p.start_from, start, ignore=shutil.ignore_patterns(MODEL_CARD_FILE))
    else:
        sizes = {k: OmegaConf.to_container(p[k], resolve=True) for k in ("text", "vision")}
        base = start = build_tiny_model(out / "base", seed=seed, corpus_extra=vqa_corpus(taxonomy), sizes=sizes)
        params = json.loads((base / "attrpipe_tiny.json").read_text())["num_parameters"]
    if p.picture_labels:
        label_pictures(base)
    timings["build_base_s"] = round(time.perf_counter() - t, 1)

    vs = p.vision_stage
    if int(vs.examples) > 0 and int(vs.steps) > 0 and not p.get("start_from"):
        from attrpipe.synth.vision import run_vision_stage

        if taxonomy is None:
            raise ValueError("pretrain.vision_stage needs pretrain.products=true (the products it draws)")
        t = time.perf_counter()
        start = out / "base-vision"
        shutil.rmtree(start, ignore_errors=True)
        shutil.copytree(base, start)
        if verbose:
            echo(f"pretrain: vision stage, {int(vs.examples):,} products, {int(vs.steps):,} steps ...")
        vision_record = run_vision_stage(start, taxonomy, examples=int(vs.examples), steps=int(vs.steps),
                                         batch_size=int(vs.batch_size), learning_rate=float(vs.learning_rate),
                                         seed=seed, size=size, verbose=verbose)
        timings["vision_s"] = round(time.perf_counter() - t, 1)
        if verbose:
            after = vision_record["held_out"]["after"]
            echo(f"pretrain: vision stage held-out: vertical {after['vertical']:.1%}, attributes "
                  f"{after['attributes']:.1%} (before {vision_record['held_out']['before']['attributes']:.1%})")
    else:
        vision_record = None

    t = time.perf_counter()
    data = out / "data"
    shutil.rmtree(data, ignore_errors=True)
    write_vqa_split(data / "train", int(p.examples), seed=seed, size=size, prefix="vqa-train", taxonomy=taxonomy,
                    **questions)
    timings["render_s"] = round(time.perf_counter() - t, 1)
    eval_seed = seed + 7_919  # held out: other scenes than any training question
    if verbose:
        echo(f"pretrain: base model {params:,} parameters; {int(p.examples):,} questions rendered in "
              f"{timings['render_s']}s; training ...")

    t = time.perf_counter()
    photos = VIEW_PHOTOS[1] if "view" in (questions["schedule"] or ()) else 1
    train_cfg = OmegaConf.merge(cfg, {"model": {"path": str(start), "dtype": "float32"},
                                      "images": {"size": size, "max_images": photos}})
    result = run_training("pretrain", train_cfg, out_dir=str(out / "train"), data=str(data / "train"))
    timings["train_s"] = round(time.perf_counter() - t, 1)

    model = out / "model"
    staging = out / ".model-staging"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(result["model"], staging)
    if p.picture_labels:
        label_pictures(staging)
    shutil.rmtree(model, ignore_errors=True)
    staging.rename(model)

    evaluation = {}
    if int(p.eval_examples) > 0:
        t = time.perf_counter()
        evaluation = {name: evaluate_vqa(str(path), int(p.eval_examples), seed=eval_seed, size=size,
                                         taxonomy=taxonomy, **questions)
                      for name, path in (("start" if p.get("start_from") else "random_base", base),
                                         ("pretrained", model))}
        timings["evaluate_s"] = round(time.perf_counter() - t, 1)
    losses = [json.loads(line)["loss"] for line in Path(result["metrics"]).read_text().splitlines()]
    record = {
        "hash": digest,
        "recipe": recipe,
        "model": str(model),
        "num_parameters": params,
        "steps": result["final_step"],
        "loss_first_50": sum(losses[:50]) / max(1, len(losses[:50])),
        "loss_last_50": sum(losses[-50:]) / max(1, len(losses[-50:])),
        "vision_stage": vision_record,
        "evaluation": evaluation,
        "timings": timings,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    storage.write_json_atomic(str(record_file), record)
    if verbose:
        echo(format_pretrain(record))
    return record


def format_pretrain(record: dict) -> str:
    lines = [f"pretrained model: {record['model']} ({record['num_parameters']:,} parameters, {record['steps']} steps, "
             f"loss {record['loss_first_50']:.3f} -> {record['loss_last_50']:.3f}, {record['wall_seconds']:.0f}s)"]
    ev = record.get("evaluation") or {}
    if ev:
        kinds = sorted(next(iter(ev.values()))["by_kind"])
        lines.append(f"{'held-out questions':<20}{'all':>8}{'parsed':>8}" + "".join(f"{k:>15}" for k in kinds))
        for name, m in ev.items():
            lines.append(f"{name:<20}{m['accuracy']:>8.1%}{m['parsed']:>8.1%}"
                         + "".join(f"{m['by_kind'][k]['accuracy']:>15.1%}" for k in kinds))
        first = next(iter(ev.values()))
        if all("chance" in first["by_kind"][k] for k in kinds):  # records written before chance was per kind lack it
            lines.append(f"{'chance':<20}{first['chance']:>8.1%}{'':>8}"
                         + "".join(f"{first['by_kind'][k]['chance']:>15.1%}" for k in kinds))
        lines.append(f"chance: {first['chance']:.0%} (one of the options at random, averaged over the questions)")
    return "\n".join(lines)



def export_model(record: dict, dest: str | Path) -> dict[str, Any]:
    """Copy the pretrained model of ``record`` (:func:`run_pretrain`'s result) to ``dest`` with a model card
    (:data:`attrpipe.models.loader.MODEL_CARD_FILE`): the recipe and its hash, the parameter count, the sha256 of
    every file, how long training took and what it measured. The loader checks those hashes on every load."""
    from attrpipe import storage
    from attrpipe.models.loader import MODEL_CARD_FILE, file_sha256

    src, dest = Path(record["model"]), Path(dest)
    staging = dest.with_name(f".{dest.name}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging, ignore=shutil.ignore_patterns(MODEL_CARD_FILE, "training_args.bin", "*.pt"))
    files = sorted(p.name for p in staging.iterdir() if p.is_file())
    card = {
        "what": "the stand-in for a pretrained Qwen2.5-VL on the CPU, built by `attrpipe synth pretrain` "
                "(docs/pretrain.md)",
        "recipe_hash": record["hash"],
        "recipe": record["recipe"],
        "num_parameters": record["num_parameters"],
        "steps": record["steps"],
        "training_seconds": record["wall_seconds"],
        "timings": record["timings"],
        "vision_stage": record.get("vision_stage"),
        "evaluation": record.get("evaluation"),
        "sha256": {name: file_sha256(staging / name) for name in files},
    }
    storage.write_json_atomic(str(staging / MODEL_CARD_FILE), card)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return card
