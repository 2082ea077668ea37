"""The CPU demo: build what it needs (tiny model, synthetic catalog), then run the whole loop on a local Ray (seed SFT,
rounds of 7-chain pseudo-labeling -> DPO -> evaluation), compare the last round's consensus with the ground truth the
synthetic catalog knows, and write the run's report."""

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
    """The whole method on the CPU: seed SFT, ``loop.rounds`` rounds of pseudo-labeling -> DPO -> evaluation, the
    run's report. Resumable like any loop (rerun continues where it stopped)."""
    from attrpipe.loop import loop_table, run_loop
    from attrpipe.preflight import check_loop, check_model
    from attrpipe.report import write_report

    t0 = time.perf_counter()
    if not cfg.model.build_tiny:  # a model it does not build: checked before the catalog is rendered
        check_model(cfg)
    ensure_demo_assets(cfg)
    check_loop(cfg)  # what the loop will read, as `attrpipe loop` checks it
    print(f"assets ready in {time.perf_counter() - t0:.1f}s: model {cfg.model.path}, catalog {cfg.data.root}")
    manifest = run_loop(cfg, verbose=True)
    run_dir = str(Path(cfg.run.output_dir, cfg.run.name).resolve())
    last = [s for s in manifest["stages"] if s.endswith("/pseudolabel")]
    truth = Path(cfg.data.root) / "truth" / "unlabeled.parquet"
    if last and truth.exists():
        cons = Path(run_dir) / last[-1].split("/")[0] / "pseudolabels" / "consensus"
        if cons.is_dir() and any(cons.glob("*.parquet")):
            table = consensus_vs_truth(str(cons), str(truth))
            print(f"\nconsensus of {last[-1].split('/')[0]} against the catalog's ground truth:")
            print(f"{'vertical':<20}{'examples':>9}{'kept':>6}{'consensus right':>17}{'kept and right':>16}")
            for v, st in table.items():
                print(f"{v:<20}{st['examples']:>9}{st['kept']:>6}{st['right']:>17}{st['kept_right']:>16}")
    index = write_report([run_dir])
    print(f"\naccuracy on the test split (greedy decoding), per round:\n{loop_table(manifest)}")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f}s; run directory {run_dir}")
    print(f"report: {index}")
    pairs = sum((manifest["finished"].get(s) or {}).get("counts", {}).get("pairs", 0)
                for s in manifest["stages"] if s.endswith("/pseudolabel"))
    print("Note: the tiny model starts from random weights and is trained for minutes on a few hundred examples, so "
          "its accuracies are near chance: the demo shows the machinery, not the method's gains.")
    if pairs == 0 and manifest["method"] == "dpo":
        print("No round produced a preference pair (no chain parsed to an allowed value, so no consensus): DPO was "
              "skipped in every round. A random model does not learn the answer format from the seed SFT; see README.")
    return 0
