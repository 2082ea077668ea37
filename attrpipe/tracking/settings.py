"""What attrpipe tracks in MLflow, as plain functions (no MLflow here): where (the tracking URI, by precedence), under
which names and tags, and which numbers of a stage's loop.json result become which metrics."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ENV_URI", "DEFAULT_UI", "TrackingSettings", "resolve", "flatten", "stage_metrics", "loop_metrics",
           "run_tags", "stage_tags", "run_link", "new_steps"]

ENV_URI = "MLFLOW_TRACKING_URI"
DEFAULT_UI = "http://127.0.0.1:5000"  # what `mlflow ui` / `mlflow server` serve by default
MAX_PARAM_LENGTH = 6000  # MLflow 3's limit on a parameter's value


@dataclass(frozen=True)
class TrackingSettings:
    """Where and how a command logs: resolved once by the command, handed as is to its stages, arms and workers."""

    uri: str
    experiment: str
    artifact_location: str | None  # local stores: beside the database; a server: its own artifact store
    timeout_s: float
    retries: int
    adapter_max_mb: float
    ui_url: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrackingSettings":
        return cls(**dict(d))


def resolve(tracking: Mapping, *, run_name: str, output_dir: str,
            environ: Mapping[str, str] = os.environ) -> tuple[TrackingSettings | None, str | None]:
    """The settings of ``tracking`` (the config's section), or None with the reason tracking is off (None when it was
    switched off). The URI: ``tracking.uri`` when set, else ``$MLFLOW_TRACKING_URI``, else a local SQLite store,
    ``<output_dir>/mlflow.db``, with its artifacts in ``<output_dir>/mlartifacts``. A remote ``output_dir`` has no
    local place for a store: tracking is off unless a URI is given."""
    if not tracking["enabled"]:
        return None, None
    uri = tracking.get("uri") or environ.get(ENV_URI) or None
    if uri is None:
        if "://" in str(output_dir):
            return None, (f"run.output_dir {output_dir} is not a local directory, so there is no place for a local "
                          "MLflow store: set tracking.uri (or MLFLOW_TRACKING_URI) to a tracking server")
        root = Path(output_dir).resolve()
        uri = f"sqlite:///{root / 'mlflow.db'}"
    uri = str(uri)
    artifacts = None
    if uri.startswith("sqlite:///"):  # a local database: one absolute path for every process (Ray workers start
        db = Path(uri[len("sqlite:///"):]).resolve()  # elsewhere), its artifacts beside it, not in the working dir
        uri, artifacts = f"sqlite:///{db}", str(db.parent / "mlartifacts")
    ui = tracking.get("ui_url") or (uri if uri.startswith(("http://", "https://")) else DEFAULT_UI)
    return TrackingSettings(uri=uri, experiment=str(tracking.get("experiment") or run_name),
                            artifact_location=artifacts, timeout_s=float(tracking["timeout_s"]),
                            retries=int(tracking["retries"]), adapter_max_mb=float(tracking["adapter_max_mb"]),
                            ui_url=ui.rstrip("/")), None


def flatten(d: Mapping, prefix: str = "") -> dict[str, str]:
    """A nested configuration as MLflow parameters: dotted keys (``dpo.beta``), lists as JSON, None as ``null``,
    values cut to MLflow's limit."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            if v:
                out.update(flatten(v, key + "."))
            else:
                out[key] = "{}"
            continue
        if isinstance(v, (list, tuple)):
            text = json.dumps(list(v))
        elif v is None:
            text = "null"
        else:
            text = str(v)
        out[key] = text[:MAX_PARAM_LENGTH]
    return out


def _metric_name(text: str) -> str:
    """A name MLflow accepts (letters, digits, ``_ - . / :`` and spaces)."""
    return re.sub(r"[^0-9A-Za-z_\-. /:]", "_", text)


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return None
    return float(x)


def _put(m: dict[str, float], name: str, x: Any) -> None:
    v = _num(x)
    if v is not None:
        m[_metric_name(name)] = v


_COUNTS = ("listings_in", "listings_labeled", "listings_quarantined", "listing_attributes", "chains",
           "chains_reused", "chains_unparsed", "kept", "below_threshold", "no_consensus", "pairs")
_PREMISE = ("single_chain", "consensus_all", "consensus_kept", "gain", "greedy", "greedy_kept")


def stage_metrics(kind: str, result: Mapping, *, sft_accuracy: float | None = None,
                  full_eval: Mapping | None = None) -> dict[str, float]:
    """The metrics of a finished stage, from its loop.json ``result`` (and for an evaluation, ``full_eval``: its
    metrics.json, for the per-attribute accuracy):

    - every stage: ``seconds``;
    - training: ``final_step`` (the curves are logged while it trains);
    - pseudo-labeling: the counts (``listing_attributes``, ``kept``, ``pairs``, ``chains_unparsed``, ...),
      ``chains_per_s`` (chains sampled per second of the stage) and, with ``data.truth``, ``premise/<what>``;
    - evaluation: ``accuracy``, ``parse_failure_rate``, ``scored``, ``accuracy/vertical/<v>``,
      ``accuracy/attribute/<a>``, ``vote_accuracy``, ``fit_accuracy``, and ``lift`` (over ``sft_accuracy``).
    """
    m: dict[str, float] = {}
    _put(m, "seconds", result.get("seconds"))
    if kind in ("sft", "dpo", "sl", "scpo"):
        _put(m, "final_step", result.get("final_step"))
    elif kind == "pseudolabel":
        counts = result.get("counts") or {}
        for k in _COUNTS:
            _put(m, k, counts.get(k))
        sampled = (counts.get("chains") or 0) - (counts.get("chains_reused") or 0)
        if sampled > 0 and (result.get("seconds") or 0) > 0:
            _put(m, "chains_per_s", sampled / result["seconds"])
        premise = result.get("premise") or {}
        for k in _PREMISE:
            _put(m, f"premise/{k}", premise.get(k))
    elif kind == "eval":
        for k in ("accuracy", "parse_failure_rate", "scored"):
            _put(m, k, result.get(k))
        for v, acc in sorted((result.get("per_vertical") or {}).items()):
            _put(m, f"accuracy/vertical/{v}", acc)
        for a, s in sorted(((full_eval or {}).get("per_attribute") or {}).items()):
            _put(m, f"accuracy/attribute/{a}", (s or {}).get("accuracy"))
        for what in ("vote", "fit"):
            extra = result.get(what) or {}
            _put(m, f"{what}_accuracy", extra.get("accuracy"))
            _put(m, f"{what}_parse_failure_rate", extra.get("parse_failure_rate"))
        if sft_accuracy is not None and _num(result.get("accuracy")) is not None:
            _put(m, "lift", result["accuracy"] - sft_accuracy)
    return m


def loop_metrics(stage: str, result: Mapping, *, sft_accuracy: float | None) -> tuple[dict[str, float], int] | None:
    """What a loop run's own curves gain from one finished evaluation stage: ``accuracy``, ``vote_accuracy`` and
    ``lift`` at step = its round (the seed SFT's is round 0; its ``fit_accuracy`` too). None for other stages."""
    if not stage.endswith("eval"):
        return None
    rnd = 0 if stage.startswith("sft") else int(stage.split("/")[0].split("-")[1])
    m: dict[str, float] = {}
    _put(m, "accuracy", result.get("accuracy"))
    _put(m, "vote_accuracy", (result.get("vote") or {}).get("accuracy"))
    if rnd == 0:
        _put(m, "fit_accuracy", (result.get("fit") or {}).get("accuracy"))
    if sft_accuracy is not None and _num(result.get("accuracy")) is not None:
        _put(m, "lift", result["accuracy"] - sft_accuracy)
    return m, rnd


def run_tags(cfg: Mapping, *, study: str | None = None, arm: str | None = None) -> dict[str, str]:
    """The tags a loop run carries, so MLflow's compare view lays out the studies' tables: method, seed, rounds, pool
    size, threshold, and the study and arm it belongs to."""
    loop, data = cfg.get("loop") or {}, cfg.get("data") or {}
    tags = {"attrpipe.kind": "loop", "attrpipe.method": str(loop.get("method")),
            "attrpipe.seed": str((cfg.get("run") or {}).get("seed")), "attrpipe.rounds": str(loop.get("rounds")),
            "attrpipe.pool": str(data.get("unlabeled_limit") or "all"),
            "attrpipe.threshold": str((cfg.get("consensus") or {}).get("threshold"))}
    if study:
        tags["attrpipe.study"] = study
    if arm:
        tags["attrpipe.arm"] = arm
    return tags


def stage_tags(name: str, kind: str, rnd: int, base: Mapping[str, str]) -> dict[str, str]:
    """A stage run's tags: its loop run's, and the stage's name, kind and round."""
    tags = {k: v for k, v in base.items() if k != "attrpipe.kind"}
    tags.update({"attrpipe.kind": "stage", "attrpipe.stage": name, "attrpipe.stage_kind": kind,
                 "attrpipe.round": str(rnd)})
    return tags


def run_link(ui_url: str, experiment_id: str, run_id: str) -> str:
    """The address of a run's page in MLflow's UI."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def new_steps(entries: list[Mapping], logged_through: int | None) -> list[tuple[int, dict[str, float]]]:
    """The per-step training logs (a trainer's log history, metrics.jsonl) not yet in MLflow: steps after
    ``logged_through`` (None: none logged), each with its numeric values under MLflow-safe names."""
    out = []
    for e in entries:
        step = e.get("step")
        if not isinstance(step, int) or (logged_through is not None and step <= logged_through):
            continue
        m: dict[str, float] = {}
        for k, v in e.items():
            if k != "step":
                _put(m, k, v)
        if m:
            out.append((step, m))
    return out
