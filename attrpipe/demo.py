"""The demo: render what it needs (the synthetic catalog; the tiny model when ``model.build_tiny``), then run the
whole loop on a local Ray (seed SFT, rounds of 7-chain pseudo-labeling -> DPO -> evaluation) and write the run's
report. Each round's consensus is measured against the ground truth the synthetic catalog knows (the premise)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from attrpipe.console import echo
from attrpipe.taxonomy import load_taxonomy

__all__ = ["ensure_demo_assets", "run_demo"]


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


def run_demo(cfg) -> int:
    """The whole method on the CPU: seed SFT, ``loop.rounds`` rounds of pseudo-labeling -> DPO -> evaluation, then
    one table (per round: the kept consensus's accuracy against the catalog's truth, kept, pairs, accuracy and lift)
    and the run's report. Resumable like any loop (rerun continues where it stopped)."""
    from attrpipe.loop import run_loop
    from attrpipe.preflight import check_loop, check_model
    from attrpipe.report import write_report

    t0 = time.perf_counter()
    if not cfg.model.build_tiny:  # a model it does not build: checked before the catalog is rendered
        check_model(cfg)
    ensure_demo_assets(cfg)
    check_loop(cfg)  # what the loop will read, as `attrpipe loop` checks it
    echo(f"attrpipe demo: model {cfg.model.path}, catalog {cfg.data.root} ({_catalog_line(cfg)}); "
         f"assets ready in {time.perf_counter() - t0:.0f}s")
    manifest = run_loop(cfg, verbose=True)
    run_dir = str(Path(cfg.run.output_dir, cfg.run.name).resolve())
    index = write_report([run_dir])
    echo("accuracy: on the test split, greedy; lift: points over the seed SFT; vote: the consensus of the sampled "
         "chains on the test split; 1 chain right / kept right / greedy, kept: a parsed chain's, the kept "
         "consensus's and the sampling adapter's greedy answer's accuracy on the pool, against the catalog's truth")
    echo(f"\ndemo finished in {time.perf_counter() - t0:.0f}s; run directory {run_dir}")
    echo(f"report: {index}")
    pairs = sum((manifest["finished"].get(s) or {}).get("counts", {}).get("pairs", 0)
                for s in manifest["stages"] if s.endswith("/pseudolabel"))
    if pairs == 0 and manifest["method"] == "dpo":
        echo("No round produced a preference pair (no listing-attribute had chains that both agreed and disagreed "
             "with a consensus): DPO was skipped in every round.")
    return 0


def _catalog_line(cfg) -> str:
    meta = Path(cfg.data.root) / "catalog.json"
    counts = json.loads(meta.read_text()).get("counts", {}) if meta.exists() else {}
    parts = [f"{split} {counts[split]['listings']}" for split in ("seed", "unlabeled", "test")
             if isinstance(counts.get(split), dict)]
    return (", ".join(parts) + " listings") if parts else "rendered"
