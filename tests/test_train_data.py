"""Small, fixed training inputs for the training tests (a taxonomy, a seed split, pairs and consensus shards), built
from the project's schemas with random images, plus checks that they follow those schemas."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image

from attrpipe.schemas import CONSENSUS_SCHEMA, LABELED_SCHEMA, PAIRS_SCHEMA
from attrpipe.prompts import user_text
from attrpipe.taxonomy import load_taxonomy

VERTICALS = {
    "suitcase": {
        "display_name": "suitcase",
        "attributes": {
            "pattern": {"description": "The dominant surface pattern of the shell.", "inferable": True,
                        "values": ["Solid", "Striped", "Checked"]},
            "number_of_wheels": {"description": "How many wheels it has.", "inferable": True,
                                 "values": ["2", "4", "8"]},
            "warranty": {"description": "Warranty length.", "inferable": False, "values": ["1 year", "2 years"]},
        },
    },
    "chair": {
        "display_name": "office chair",
        "attributes": {
            "color": {"description": "The main colour.", "inferable": True, "values": ["Black", "White", "Red"]},
        },
    },
}


def write_taxonomy(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, spec in VERTICALS.items():
        (d / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, **spec}), encoding="utf-8")
    return d


def jpeg(seed: int, size: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write_seed_catalog(root: Path, n_per_vertical: int = 3, seed: int = 0) -> Path:
    """A catalog directory (catalog.json, images/, seed/part-00000.parquet) with relative image URIs."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "seed").mkdir(parents=True, exist_ok=True)
    (root / "catalog.json").write_text(json.dumps({"format": 1}), encoding="utf-8")
    rng = np.random.default_rng(seed)
    rows = []
    for v, spec in VERTICALS.items():
        for i in range(n_per_vertical):
            lid = f"{v}-{i}"
            uris = []
            for k in range(1 + i % 2):
                rel = f"images/{lid}_{k}.jpg"
                (root / rel).write_bytes(jpeg(seed * 1000 + len(rows) * 10 + k))
                uris.append(rel)
            labels = {a: str(rng.choice(s["values"])) for a, s in spec["attributes"].items()}
            reasoning = {a: f"The {a.replace('_', ' ')} is visible." for a in list(labels)[:1]}
            rows.append({"listing_id": lid, "vertical": v, "image_uris": uris, "image_bytes": None,
                         "seller_attributes": None, "labels": list(labels.items()),
                         "reasoning": list(reasoning.items())})
    pq.write_table(pa.Table.from_pylist(rows, schema=LABELED_SCHEMA), root / "seed" / "part-00000.parquet")
    return root / "seed"


def target(value: str, reasoning: str = "I looked.") -> str:
    return f"<reasoning> {reasoning} </reasoning><answer> {value} </answer>"


def write_pairs(d: Path, taxonomy_dir: Path, n: int = 8, seed: int = 0, inline: bool = True) -> Path:
    """A fixed preference set: the chosen chain always answers the attribute's first value, the rejected one its last."""
    tax = load_taxonomy(taxonomy_dir)
    d.mkdir(parents=True, exist_ok=True)
    attr = tax.attribute("suitcase", "pattern")
    prompt = user_text(attr, tax.vertical("suitcase").display_name)
    rows = []
    for i in range(n):
        rows.append({
            "example_id": f"s{i}::pattern", "listing_id": f"s{i}", "vertical": "suitcase", "attribute": "pattern",
            "prompt": prompt, "image_uris": None, "image_bytes": [jpeg(seed + i)],
            "chosen": target(attr.values[0], "The shell is plain."),
            "rejected": target(attr.values[-1], "The shell has squares."),
            "chosen_index": 0, "rejected_index": 1, "consensus": attr.values[0], "confidence": 4 / 7, "round": 0,
        })
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA), d / "part-00000.parquet")
    return d


def write_consensus(d: Path, image_dir: Path, n: int = 6, seed: int = 0) -> Path:
    """Consensus rows with absolute image paths: even rows kept (4 of 7 agree), odd rows dropped (3 of 7)."""
    d.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        img = image_dir / f"c{i}.jpg"
        img.write_bytes(jpeg(seed + 100 + i))
        agree = 4 if i % 2 == 0 else 3
        chains = [{"text": target("Striped"), "reasoning": "I looked.", "answer": "Striped", "reason": None}] * agree
        chains += [{"text": "no idea", "reasoning": None, "answer": None, "reason": "no_answer_tag"}] * (7 - agree)
        rows.append({
            "example_id": f"c{i}::pattern", "listing_id": f"c{i}", "vertical": "suitcase", "attribute": "pattern",
            "consensus": "Striped", "confidence": agree / 7, "n_chains": 7, "n_valid": agree, "tied": False,
            "kept": agree >= 4, "chains": chains, "image_uris": [str(img)], "image_bytes": None, "round": 0,
            "images_dropped": 0, "model": "tiny", "adapter": None, "adapter_fingerprint": None,
        })
    pq.write_table(pa.Table.from_pylist(rows, schema=CONSENSUS_SCHEMA), d / "part-00000.parquet")
    return d


def test_fixtures_follow_the_schemas(tmp_path):
    tax = write_taxonomy(tmp_path / "tax")
    seed = write_seed_catalog(tmp_path / "cat")
    pairs = write_pairs(tmp_path / "pairs", tax)
    cons = write_consensus(tmp_path / "consensus", tmp_path / "img")
    assert pq.read_schema(seed / "part-00000.parquet").equals(LABELED_SCHEMA)
    assert pq.read_schema(pairs / "part-00000.parquet").equals(PAIRS_SCHEMA)
    assert pq.read_schema(cons / "part-00000.parquet").equals(CONSENSUS_SCHEMA)
