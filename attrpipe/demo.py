"""The CPU demo: build what it needs (tiny model, synthetic catalog), pseudo-label the unlabeled pool on a local Ray
(7 chains per listing-attribute, consensus, pairs), and compare the consensus with the ground truth that the
synthetic catalog knows. Training and the loop join it as they land."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from attrpipe.taxonomy import load_taxonomy

__all__ = ["ensure_demo_assets", "run_demo", "consensus_vs_truth"]


def ensure_demo_assets(cfg) -> None:
    """Build the tiny model and render the synthetic catalog unless they are there already (both are cached)."""
    if cfg.model.build_tiny:
        from attrpipe.models.tiny import build_tiny_model

        build_tiny_model(cfg.model.path, seed=cfg.run.seed)
    tax = load_taxonomy(cfg.taxonomy.path, cfg.taxonomy.verticals or None)
    wanted = dict(cfg.synthetic, seed=cfg.run.seed)
    meta = Path(cfg.data.root) / "catalog.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if all(old.get("args", {}).get(k) == v for k, v in wanted.items()) and old.get("verticals") == list(
            tax.verticals
        ):
            return
    from attrpipe.synth.catalog import write_synthetic_catalog

    write_synthetic_catalog(cfg.data.root, taxonomy=tax, **wanted)


def consensus_vs_truth(consensus_dir: str, truth_path: str) -> dict:
    """Per vertical: examples, kept, and how often the consensus equals the truth (all / kept)."""
    truth = {r["listing_id"]: dict(r["labels"]) for r in pq.read_table(truth_path).to_pylist()}
    stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in pq.read_table(consensus_dir, columns=["listing_id", "vertical", "attribute", "consensus", "kept"]
                           ).to_pylist():
        s = stats[r["vertical"]]
        right = r["consensus"] is not None and truth.get(r["listing_id"], {}).get(r["attribute"]) == r["consensus"]
        s["examples"] += 1
        s["kept"] += r["kept"]
        s["right"] += right
        s["kept_right"] += right and r["kept"]
    return {v: dict(s) for v, s in sorted(stats.items())}


def run_demo(cfg) -> int:
    from attrpipe.pseudolabel.pipeline import output_dir_for, run_pseudolabel

    t0 = time.perf_counter()
    ensure_demo_assets(cfg)
    print(f"assets ready in {time.perf_counter() - t0:.1f}s: model {cfg.model.path}, catalog {cfg.data.root}")
    manifest = run_pseudolabel(cfg)
    out = output_dir_for(cfg)
    truth = Path(cfg.data.root) / "truth" / "unlabeled.parquet"
    if manifest["counts"]["listing_attributes"] and truth.exists():
        table = consensus_vs_truth(str(Path(out) / "consensus"), str(truth))
        print(f"\n{'vertical':<20}{'examples':>9}{'kept':>6}{'consensus right':>17}{'kept and right':>16}")
        for v, s in table.items():
            print(f"{v:<20}{s['examples']:>9}{s['kept']:>6}{s['right']:>17}{s['kept_right']:>16}")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f}s; shards and manifest under {out}")
    print("Note: the tiny model has random weights, so its chains rarely parse and its answers are at chance: "
          "the demo shows the machinery (sampling, consensus, pairs, quarantine, manifest), not accuracy.")
    return 0
