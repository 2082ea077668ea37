"""What the loop, the studies and the report log to MLflow, on top of :class:`attrpipe.tracking.client.Tracker`.

- A loop run is one MLflow run (its parameters: the resolved configuration flattened, its hash, the model's
  fingerprint and sha256; its tags: method, seed, rounds, pool, threshold, study and arm) with a nested run per stage
  (seed SFT, round-k pseudo-labeling, training, evaluation). Its own curves: accuracy, vote accuracy and lift by
  round. Its artifacts: loop.json, config.yaml and, once written, the report.
- A study is one MLflow run; its arms' loop runs are its children, and so are what the arms share (the seed SFT's
  loop run, the shared round-1 chains), logged once: an arm refers to them by tags (``attrpipe.seed_sft_run``,
  ``attrpipe.chains_run``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from attrpipe import storage
from attrpipe.tracking.client import Tracker, fail, read_state, tracking_off
from attrpipe.tracking.settings import (TrackingSettings, flatten, loop_metrics, resolve, run_tags, stage_metrics,
                                        stage_tags)

__all__ = ["settings_of", "open_loop", "start_stage", "finish_stage", "fail_loop", "finish_loop", "open_study",
           "arm_link", "log_shared_chains", "finish_study", "log_report", "stage_links"]

_SHARED_KINDS = ("shared-sft", "shared-eval")
_TRAINING_KINDS = ("sft", "dpo", "sl", "scpo")


def _never_in_the_way(fn):
    """A tracking step that fails (a file it reads, a server) is a warning line and tracking off, never the run's
    failure; once tracking is off, nothing more is tried."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if tracking_off() is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            fail(None, fn.__name__.replace("_", " "), e)
            return None

    return wrapper


def settings_of(cfg, *, verbose: bool = True) -> TrackingSettings | None:
    """The tracking settings of a command's configuration; a reason it is off (a remote output without a URI) is
    said once on the terminal."""
    from omegaconf import OmegaConf

    settings, why = resolve(OmegaConf.to_container(cfg.tracking, resolve=True), run_name=str(cfg.run.name),
                            output_dir=str(cfg.run.output_dir))
    if why and verbose:
        from attrpipe.console import echo

        echo(f"[tracking] off: {why}")
    return settings


def _container(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _model_params(cfg, manifest: dict) -> dict[str, str]:
    from attrpipe.models.loader import model_identity

    ident = model_identity(cfg.model.path) or {}
    out = {"attrpipe.config_hash": str(manifest.get("config_hash")),
           "attrpipe.model_fingerprint": str(manifest.get("model_fingerprint"))}
    for k, name in (("weights_sha256", "attrpipe.model_sha256"), ("recipe_hash", "attrpipe.model_recipe_hash")):
        if ident.get(k):
            out[name] = str(ident[k])
    return out


@_never_in_the_way
def open_loop(run, link: dict | None = None) -> Tracker | None:
    """The MLflow run of a loop run (``run``: attrpipe.loop.LoopRun). ``link`` (a study's arm or shared seed SFT):
    ``{"settings", "parent_run_id", "study", "arm"}``: the study's store and experiment, under the study's run."""
    link = link or {}
    cfg = run.cfg
    settings = TrackingSettings.from_dict(link["settings"]) if link.get("settings") else \
        settings_of(cfg, verbose=run.verbose)
    if settings is None:
        return None
    c = _container(cfg)
    tags = run_tags(c, study=link.get("study"), arm=link.get("arm"))
    if "sft" in run.shared:
        tags["attrpipe.seed_sft_from"] = str(run.shared["sft"])
        base = read_state(run.shared["sft"]) or {}
        if base.get("run_id"):
            tags["attrpipe.seed_sft_run"] = base["run_id"]
    if run.shared.get("chains"):
        tags["attrpipe.chains_from"] = str(run.shared["chains"])
        chains = read_state(run.shared["chains"]) or {}
        if chains.get("run_id"):
            tags["attrpipe.chains_run"] = chains["run_id"]
    params = {**flatten(c), **_model_params(cfg, run.manifest)}
    return Tracker.open(settings, run.run_dir, name=link.get("arm") or str(cfg.run.name), tags=tags, params=params,
                        parent_run_id=link.get("parent_run_id"))


@_never_in_the_way
def start_stage(run, st) -> str | None:
    """The stage's nested run (created once; the same after a rerun); None for a stage another run did (shared) or
    without tracking. Its id goes to a training stage's rank-0 worker, which logs the trainer's curves to it."""
    tracker = run.tracker
    if tracker is None or st.kind in _SHARED_KINDS or tracker.stage_logged(st.name):
        return None
    params = {"stage.adapter_in": st.adapter_in or "none (the model alone)", "stage.out": st.out}
    start = run.starts.get(st.name)
    if start is not None:
        params["stage.start"] = start.init_adapter or "base"
        params["stage.reference"] = str(start.reference_adapter() or start.reference or "the start adapter")
    base = run_tags(_container(run.cfg))
    return tracker.stage_run(st.name, tags=stage_tags(st.name, st.kind, st.round, base), params=params)


def _size_mb(path: str) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def _read_jsonl(path: str) -> list[dict]:
    import json

    if not storage.exists(path):
        return []
    text = storage.read_bytes(path).decode("utf-8")
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]


@_never_in_the_way
def finish_stage(run, st, result: dict) -> None:
    """Log a finished stage (just run, or finished earlier and not logged yet): its metrics, the training steps the
    worker could not log, its artifacts, and its points of the loop's own curves. A stage logged before gains only
    what a rerun measured since (attrpipe.tracking.client.Tracker.finish_stage)."""
    tracker = run.tracker
    if tracker is None:
        return
    fin = run.manifest["finished"]
    sft_acc = (fin.get("sft/eval") or {}).get("accuracy")
    own = loop_metrics(st.name, result, sft_accuracy=sft_acc if st.round > 0 else None)
    if st.kind in _SHARED_KINDS:
        tracker.finish_stage(st.name, metrics={}, own=own)
        return
    logged = tracker.stage_logged(st.name)  # then only what a rerun measured since: no steps, no files to read
    if not logged and tracker.stage_run_id(st.name) is None:
        start_stage(run, st)
    out = run.path(st.out)
    artifacts: list[tuple[str, str]] = []
    tags: dict[str, str] = {}
    steps = None
    full_eval = None
    if st.kind == "eval":
        full_eval = storage.read_json(storage.join(out, "metrics.json")) \
            if storage.exists(storage.join(out, "metrics.json")) else None
        artifacts = [(storage.join(out, "metrics.json"), "")] + \
            [(storage.join(out, w, "metrics.json"), w) for w in ("vote", "fit")]
    elif st.kind == "pseudolabel":
        artifacts = [(storage.join(out, "manifest.json"), "")]
    elif st.kind in _TRAINING_KINDS and not logged:
        steps = _read_jsonl(storage.join(out, "metrics.jsonl"))
        artifacts = [(storage.join(out, "metrics.jsonl"), ""), (storage.join(out, "train_result.json"), "")]
        adapter = result.get("adapter")
        if adapter:
            tags["attrpipe.adapter"] = str(adapter)
            if "://" not in str(adapter) and Path(adapter).is_dir() and \
                    _size_mb(adapter) <= tracker.settings.adapter_max_mb:
                artifacts.append((str(adapter), "adapter"))
    metrics = stage_metrics(st.kind, result, sft_accuracy=sft_acc if st.round > 0 else None, full_eval=full_eval)
    tracker.finish_stage(st.name, metrics=metrics, artifacts=artifacts, steps=steps, tags=tags, own=own)


@_never_in_the_way
def fail_loop(run, st) -> None:
    """A stage raised: its run and the loop's are marked failed (a rerun continues both)."""
    if run.tracker is not None:
        run.tracker.fail_stage(st.name)
        run.tracker.finish(status="FAILED")


@_never_in_the_way
def finish_loop(run) -> None:
    """The loop finished: its loop.json and config.yaml as artifacts, and its run ended."""
    if run.tracker is None:
        return
    run.tracker.log_artifacts([(run.path("loop.json"), ""), (run.path("config.yaml"), "")])
    run.tracker.finish()


# --- studies --------------------------------------------------------------------------------------------------------


@_never_in_the_way
def open_study(cfg, study_dir: str, kind: str, *, verbose: bool = True) -> Tracker | None:
    """The MLflow run of a study command (its arms become its children)."""
    settings = settings_of(cfg, verbose=verbose)
    if settings is None:
        return None
    c = _container(cfg)
    name = f"study {kind}" + (f" {cfg.study.name}" if cfg.study.name else "")
    tags = {"attrpipe.kind": "study", "attrpipe.study": name, "attrpipe.methods": ",".join(cfg.study.methods),
            "attrpipe.seeds": ",".join(str(s) for s in cfg.study.seeds)}
    return Tracker.open(settings, study_dir, name=name, tags=tags, params=flatten(c))


def arm_link(study: Tracker | None, *, arm: str) -> dict | None:
    """What run_loop needs to log an arm (or the shared seed SFT) as a child of the study's run."""
    if study is None:
        return None
    return {"settings": study.settings.to_dict(), "parent_run_id": study.run_id, "study": study.state["name"],
            "arm": arm}


@_never_in_the_way
def log_shared_chains(study: Tracker | None, chains_dir: str, name: str, manifest: dict) -> None:
    """The shared round-1 chains: a child run of the study, logged once (the chain set's own tracking.json); its
    ``seconds`` are the engines' busy time, the same whichever command sampled them."""
    if study is None:
        return
    tracker = Tracker.open(study.settings, chains_dir, name=name,
                           tags={"attrpipe.kind": "shared-chains", "attrpipe.study": study.state["name"]},
                           parent_run_id=study.run_id)
    if tracker is None or tracker.state.get("finished"):
        return
    result = {"counts": manifest.get("counts") or {}, "seconds": manifest.get("generate_seconds")}
    tracker.finish_stage("chains", metrics={}, own=(stage_metrics("pseudolabel", result), 0))
    tracker.log_artifacts([(storage.join(chains_dir, "manifest.json"), "")])
    tracker.finish()


@_never_in_the_way
def finish_study(study: Tracker | None, study_dir: str, summary: str) -> None:
    if study is None:
        return
    study.log_artifacts([(storage.join(study_dir, f), "") for f in ("study.json", "study.md", "study.png")]
                        + [(summary, "")])
    study.finish()


# --- the report -----------------------------------------------------------------------------------------------------


def stage_links(run_dir: str) -> dict[str, str]:
    """Each tracked stage of a loop run, and the run itself (``""``), linked to its page in MLflow's UI ({} when it
    has none, or its tracking.json cannot be read)."""
    try:
        return _stage_links(run_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _stage_links(run_dir: str) -> dict[str, str]:
    state = read_state(run_dir)
    if not state or "settings" not in state:
        return {}
    from attrpipe.tracking.settings import run_link

    ui, exp = TrackingSettings.from_dict(state["settings"]).ui_url, state["experiment_id"]
    links = {"": run_link(ui, exp, state["run_id"])}
    for name, st in state.get("stages", {}).items():
        if st.get("run_id"):
            links[name] = run_link(ui, exp, st["run_id"])
    return links


@_never_in_the_way
def log_report(run_dirs: list[str], report_dir: str) -> None:
    """The report's HTML and plots, as artifacts of each tracked loop run it covers."""
    for d in run_dirs:
        tracker: Any = Tracker.reopen(d)
        if tracker is not None:
            tracker.log_artifacts([(report_dir, "report")])
