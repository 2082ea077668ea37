"""Catalog prediction (``attrpipe predict``): every inferable attribute of every listing of a catalog, with the trained
adapter, through the pseudo-labeling pipeline (so it streams, resumes and quarantines bad rows the same way): the
pipeline writes the rows below as it scores each unit (attrpipe.pseudolabel.stages.prediction_rows).

Two modes (``predict.mode``):

- ``greedy``: one greedy chain per listing-attribute (``eval.max_new_tokens``), as evaluation decodes. There is no
  confidence; a row goes to review when its chain gives no allowed value.
- ``self_consistency``: ``generation.num_chains`` sampled chains; the value is their consensus and the confidence its
  C (docs/method.md). A row goes to review when there is no consensus or C < ``predict.review_below``.

Outputs under ``predict.output`` (default ``<run.output_dir>/<run.name>/predict``)::

    predictions/<unit>.parquet  schemas.PREDICTIONS_SCHEMA: listing_id, vertical, attribute, value, confidence, ...
    review/<unit>.parquet       schemas.REVIEW_SCHEMA: the rows for a human, with the votes and the images
    consensus/, quarantine/     as pseudo-labeling writes them (every chain; the input rows that could not be read)
    keys/<unit>.parquet         each labeled listing's content key (what ``--since`` compares)
    manifest.json               counts, including predictions_for_review

``since``: a daily catalog snapshot predicted against yesterday's output, labeling only what is new or changed
(attrpipe.pseudolabel.incremental).
"""

from __future__ import annotations

from attrpipe import storage
from attrpipe.console import echo

__all__ = ["MODES", "run_predict"]

MODES = ("greedy", "self_consistency")


def run_predict(cfg, *, catalog: str | None = None, adapter: str | None = None, out: str | None = None,
                mode: str | None = None, limit: int | None = None, verbose: bool = True, since: str | None = None,
                relabel_all: bool = False) -> dict:
    """``limit``: only the first ``limit`` listings of the catalog (``attrpipe predict`` passes
    ``data.unlabeled_limit``: a trial on a catalog's first listings). ``since``: a previous prediction output; only
    new and changed listings are predicted, the others carried over (attrpipe.pseudolabel.incremental)."""
    from attrpipe.pseudolabel.pipeline import run_pseudolabel

    mode = mode or cfg.predict.mode
    if mode not in MODES:
        raise ValueError(f"predict mode must be one of {', '.join(MODES)}, got {mode!r}")
    catalog = catalog or cfg.data.unlabeled
    adapter = adapter if adapter is not None else cfg.predict.adapter
    out = out or cfg.predict.output or storage.join(cfg.run.output_dir, cfg.run.name, "predict")
    manifest = run_pseudolabel(cfg, catalog=catalog, out=out, adapter=adapter, greedy=mode == "greedy",
                               limit=limit, review_below=float(cfg.predict.review_below), verbose=verbose,
                               since=since, relabel_all=relabel_all)
    if verbose:
        c = manifest["counts"]
        echo(f"predict ({mode}): {c['listing_attributes']} listing-attributes of {c['listings_labeled']} listings "
              f"-> {storage.join(out, 'predictions')}; {c['predictions_for_review']} for review "
              f"-> {storage.join(out, 'review')}")
    return manifest
