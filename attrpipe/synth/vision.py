"""The vision stage of ``attrpipe synth pretrain``: the vision tower learns to see products, by a direct objective.

A real VLM's vision tower has seen billions of images before it ever answers a question; the small stand-in learns
to see from its question-answer pretraining alone, and after 30,000 questions it still answers a heel's or a
neckline's shape at chance (docs/pretrain.md). This stage gives the tower what a real one brings: before the
question-answer stage, the tower (with its patch merger, whose output the language model reads) and one linear head
per (vertical, attribute) are trained to classify what freshly drawn products show: their kind and every visible
attribute, from the mean of the merged image tokens. The heads are thrown away; the tower's weights go into the base
model that the question-answer stage trains.

The products are drawn by the catalog's renderer from their own seed stream (``vision:<seed>:<i>``), never from the
catalog's listing streams, so no seed, unlabeled or test listing is ever rendered here; no text is involved, so the
task's wording and option lists are never seen.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

__all__ = ["VERTICAL_HEAD", "product_view", "head_spec", "run_vision_stage"]

VERTICAL_HEAD = "__vertical__"
_RENDER_SIZE = 256  # products are drawn at the catalog's size, then resized as the pipeline resizes them


def product_view(seed: int, i: int, taxonomy, size: int):
    """Product ``i`` of stream ``seed``: ``(vertical name, {attribute: value} of its visible attributes, image)``.

    One view of a random product of a random vertical, at the catalog's nuisance level (difficulty 0.3 or 0.6; the
    view is a hero shot, at half of it), resized to ``size`` pixels."""
    from PIL import Image

    from attrpipe.synth.render.listing import render_listing
    from attrpipe.synth.render.registry import sample_labels

    rng = random.Random(f"vision:{seed}:{i}")
    vertical = taxonomy.verticals[rng.choice(sorted(taxonomy.verticals))]
    labels = sample_labels(vertical, rng)
    image = render_listing(vertical, labels, rng, n_views=1, size=_RENDER_SIZE, difficulty=rng.choice((0.3, 0.6)))[0]
    visible = {a.name: labels[a.name] for a in vertical.inferable_attributes() if a.name in labels}
    return vertical.name, visible, image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def head_spec(taxonomy) -> dict[str, tuple[str, ...]]:
    """The classes of every head: the vertical, then each (vertical, inferable attribute)'s values."""
    spec = {VERTICAL_HEAD: tuple(sorted(taxonomy.verticals))}
    for name in sorted(taxonomy.verticals):
        for a in taxonomy.verticals[name].inferable_attributes():
            spec[f"{name}.{a.name}"] = tuple(a.values)
    return spec


def targets(spec: dict[str, tuple[str, ...]], vertical: str, visible: dict[str, str]) -> list[tuple[str, int]]:
    """``(head, class index)`` of one product: its vertical, and each visible attribute's value."""
    out = [(VERTICAL_HEAD, spec[VERTICAL_HEAD].index(vertical))]
    for attribute, value in sorted(visible.items()):
        key = f"{vertical}.{attribute}"
        out.append((key, spec[key].index(value)))
    return out


def _render_range(args) -> list:
    seed, start, stop, size, taxonomy = args
    return [product_view(seed, i, taxonomy, size) for i in range(start, stop)]


def _render(seed: int, n: int, size: int, taxonomy, processes: int) -> list:
    """``n`` product views, in order; rendered by ``processes`` worker processes (each view is a pure function of
    ``(seed, i)``, so the split does not change them)."""
    if processes <= 1 or n < 64:
        return _render_range((seed, 0, n, size, taxonomy))
    import multiprocessing as mp

    step = -(-n // (processes * 4))
    chunks = [(seed, s, min(n, s + step), size, taxonomy) for s in range(0, n, step)]
    # fork: the children only draw with PIL and numpy (no torch), and need no importable __main__
    with mp.get_context("fork").Pool(processes) as pool:
        return [view for part in pool.map(_render_range, chunks) for view in part]


def run_vision_stage(model_dir: str | Path, taxonomy, *, examples: int, steps: int, batch_size: int,
                     learning_rate: float, seed: int, size: int, eval_examples: int = 600,
                     processes: int = 2, verbose: bool = True) -> dict[str, Any]:
    """Train ``model_dir``'s vision tower in place (its safetensors rewritten) on ``examples`` rendered products for
    ``steps`` steps of ``batch_size``; returns the held-out accuracy of the heads per attribute, before and after."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from attrpipe.models.loader import load_model, load_processor

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    train = _render(seed, examples, size, taxonomy, processes)
    held_out = _render(seed + 7_919, eval_examples, size, taxonomy, processes)
    render_s = time.perf_counter() - t0

    model = load_model(str(model_dir), dtype="float32")
    processor = load_processor(str(model_dir), image_size=size)
    visual = model.model.visual
    spec = head_spec(taxonomy)
    dim = int(visual.config.out_hidden_size)
    heads = nn.ModuleDict({key.replace(".", "__"): nn.Linear(dim, len(values)) for key, values in spec.items()})

    def forward(batch) -> tuple[torch.Tensor, dict[str, list[int]]]:
        enc = processor.image_processor(images=[b[2] for b in batch], return_tensors="pt")
        out = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
        tokens = out if torch.is_tensor(out) else out.pooler_output
        feats = tokens.view(len(batch), tokens.shape[0] // len(batch), -1).mean(1)
        groups: dict[str, tuple[list[int], list[int]]] = {}
        for row, (vertical, visible, _) in enumerate(batch):
            for key, y in targets(spec, vertical, visible):
                groups.setdefault(key, ([], []))
                groups[key][0].append(row)
                groups[key][1].append(y)
        loss, n, right = torch.zeros(()), 0, {}
        for key, (rows, ys) in groups.items():
            logits = heads[key.replace(".", "__")](feats[rows])
            y = torch.tensor(ys)
            loss = loss + F.cross_entropy(logits, y, reduction="sum")
            n += len(ys)
            right[key] = (logits.argmax(-1) == y).tolist()
        return loss / max(1, n), right

    def accuracy() -> dict[str, Any]:
        by_attribute: dict[str, list[int]] = {}
        visual.eval()
        with torch.no_grad():
            for start in range(0, len(held_out), 100):
                _, right = forward(held_out[start:start + 100])
                for key, hits in right.items():
                    by_attribute.setdefault(key.split(".")[-1], []).extend(hits)
        visual.train()
        attrs = [k for k in by_attribute if k != VERTICAL_HEAD]
        hits = [h for k in attrs for h in by_attribute[k]]
        return {"vertical": sum(by_attribute[VERTICAL_HEAD]) / len(by_attribute[VERTICAL_HEAD]),
                "attributes": sum(hits) / max(1, len(hits)),
                "by_attribute": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_attribute.items())
                                 if k != VERTICAL_HEAD}}

    before = accuracy()
    params = [*visual.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=steps, pct_start=0.05)
    order = random.Random(f"vision-order:{seed}")
    losses = []
    t = time.perf_counter()
    visual.train()
    for step in range(steps):
        loss, _ = forward([train[i] for i in order.sample(range(len(train)), min(batch_size, len(train)))])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if verbose and (step % 200 == 0 or step == steps - 1):
            print(f"pretrain vision: step {step + 1}/{steps} loss {losses[-1]:.3f} "
                  f"({time.perf_counter() - t:.0f}s)", flush=True)
    train_s = time.perf_counter() - t
    after = accuracy()
    model.save_pretrained(str(model_dir), safe_serialization=True)
    return {"examples": examples, "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate,
            "loss_first_50": sum(losses[:50]) / max(1, len(losses[:50])),
            "loss_last_50": sum(losses[-50:]) / max(1, len(losses[-50:])),
            "held_out": {"questions": len(held_out), "before": before, "after": after},
            "render_s": round(render_s, 1), "train_s": round(train_s, 1)}
