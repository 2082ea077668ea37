"""The self-improvement loop: optional seed SFT, then per round pseudo-label -> DPO (or SL) -> evaluate.

Run directory (``<run.output_dir>/<run.name>``, a local path or a URI)::

    loop.json                  the run manifest: config hash, the planned stages and each finished stage's result
    sft/adapter, sft/eval/     the seed SFT adapter and its evaluation (round 0)
    round-1/pseudolabels/      consensus, pairs, quarantine shards of round 1 (sampled with the previous adapter)
    round-1/adapter/           the adapter trained in round 1 (DPO or SL), metrics.jsonl beside it
    round-1/eval/              its evaluation
    round-2/...

``loop.method`` is ``dpo``, ``sl`` or a diagnostic ceiling, ``dpo-oracle`` / ``sl-oracle`` (attrpipe.methods): each
round's chains scored against the pool's true labels (``data.truth``) instead of their consensus, then DPO or SL as
usual. When ``data.truth`` exists, each round's pseudo-labeling entry in loop.json also holds its ``premise``
(attrpipe.premise): a single parsed chain's accuracy on the pool, the kept consensus's, the gain between them, overall
and per attribute, beside the sampling adapter's greedy test accuracy.

Resume is at stage granularity: rerunning the same command skips every stage recorded as finished in loop.json
and continues from the first unfinished one (which itself resumes: pseudo-labeling skips committed units,
training continues from its last checkpoint). A rerun with a configuration that changes results, or with other
weights at ``model.path``, is refused. One exception: a run that has finished only its seed SFT (and its evaluation)
may go on with other round settings (sampling, consensus, DPO, SL), since nothing it did depends on them; a study's
shared seed SFT serves every DPO or SL setting so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from attrpipe import storage
from attrpipe.catalog_io import CatalogReading
from attrpipe.config import ConfigError, config_hash, drop_inert_defaults, to_yaml
from attrpipe.console import echo
from attrpipe.loop_manifest import loop_manifest_path, read_loop_manifest
from attrpipe.methods import is_oracle, training_kind, training_overrides
from attrpipe.tracking import runs as track

__all__ = ["Stage", "plan_stages", "train_start", "LoopRun", "STAGE_RUNNERS", "run_loop", "loop_table", "stage_summary"]


@dataclass(frozen=True)
class Stage:
    name: str  # "sft", "sft/eval", "round-1/pseudolabel", "round-1/train", "round-1/eval", ...
    kind: str  # sft | eval | pseudolabel | dpo | sl | scpo | shared-sft | shared-eval (STAGE_RUNNERS runs each)
    round: int
    adapter_in: str | None  # the adapter this stage samples with / starts from (relative to the run dir)
    out: str  # its output (relative to the run dir)


# The kinds of training stage: DPO on pairs/ (the methods dpo, dpo-nll, dpo-oracle), SL and ScPO on consensus/
_TRAINING_KINDS = ("dpo", "sl", "scpo")


def plan_stages(*, rounds: int, method: str, seed_sft: bool, evaluate: bool = True,
                shared_sft: bool = False) -> list[Stage]:
    """The ordered stages of a loop (pure). An oracle method's training stages are of the kind it trains as.
    ``shared_sft``: the seed SFT and its evaluation are another run's, copied (``shared-sft``, ``shared-eval``)."""
    kind = training_kind(method)
    shared = "shared-" if shared_sft else ""
    stages: list[Stage] = []
    prev = None
    if seed_sft:
        stages.append(Stage("sft", f"{shared}sft", 0, None, "sft"))
        prev = "sft/adapter"
        if evaluate:
            stages.append(Stage("sft/eval", f"{shared}eval", 0, prev, "sft/eval"))
    for r in range(1, rounds + 1):
        d = f"round-{r}"
        stages.append(Stage(f"{d}/pseudolabel", "pseudolabel", r, prev, f"{d}/pseudolabels"))
        stages.append(Stage(f"{d}/train", kind, r, prev, d))
        prev = f"{d}/adapter"
        if evaluate:
            stages.append(Stage(f"{d}/eval", "eval", r, prev, f"{d}/eval"))
    return stages


@dataclass(frozen=True)
class TrainStart:
    """Where a round's DPO or SL starts and what DPO scores against (paths relative to the run dir)."""

    init_adapter: str | None  # None: a fresh adapter on the pretrained checkpoint (no seed SFT: the paper's "PT")
    reference: str | None  # DPO: "base" (the adapter disabled) or the adapter whose frozen copy it is; SL: None
    overrides: dict  # configuration the training stage runs with, over the loop's

    def reference_adapter(self) -> str | None:
        """The reference adapter to hand to training when it is not a copy of the start adapter (None otherwise)."""
        return None if self.reference in (None, "base", self.init_adapter) else self.reference


def train_start(st: Stage, *, seed_sft: bool, reference: str) -> TrainStart:
    """The start and DPO reference of a loop's training stage (pure).

    - No seed SFT, round 1: a fresh adapter on the pretrained checkpoint; DPO scores against the base with the adapter
      disabled (the paper's "PT" start).
    - Otherwise training continues ``st.adapter_in`` and DPO scores against a frozen adapter (``loop.reference``):
      ``sft``, the seed SFT adapter in every round (the paper); ``previous``, the adapter the round starts from.
      Without a seed SFT there is no SFT adapter, so rounds >= 2 need ``previous``; that is refused, not guessed.
    """
    if st.kind not in _TRAINING_KINDS:
        raise ValueError(f"{st.name}: not a training stage")
    if reference not in ("sft", "previous"):
        raise ValueError(f"loop.reference must be sft or previous, not {reference!r}")
    if st.adapter_in is None:
        return TrainStart(None, "base" if st.kind != "sl" else None,
                          {"dpo": {"reference": "base"}, "sl": {"init": "base"}})
    if st.kind == "sl":
        return TrainStart(st.adapter_in, None, {})
    if reference == "previous":
        return TrainStart(st.adapter_in, st.adapter_in, {})
    if not seed_sft:
        raise ValueError(f"{st.name}: loop.reference=sft needs a seed SFT adapter (loop.seed_sft=true); without one, "
                         "set loop.reference=previous for rounds >= 2")
    return TrainStart(st.adapter_in, "sft/adapter", {})


# What only the rounds read (sampling, consensus, DPO, SL): the seed SFT and its evaluation do not depend on it.
_ROUNDS_ONLY = {"consensus": None, "pseudolabel": None, "dpo": None, "sl": None,
                "generation": ("num_chains", "temperature", "top_p", "max_new_tokens"),
                "data": ("unlabeled", "unlabeled_limit", "truth"), "loop": ("method", "reference")}


_MEASURED_BESIDE = ("fit", "vote", "pool_greedy")


def _result_key(cfg, *, seed_sft_only: bool = False) -> str:
    """The whole configuration but how it runs and is tracked (``ray``, ``tracking``), what other commands read
    (``study``, ``predict``), what is measured beside the results (``eval.fit``, ``eval.vote``, ``eval.pool_greedy``)
    and how many rounds the loop has (a loop may be extended by more rounds). ``run`` stays in it, name and
    output_dir too: a run resumed under another name or directory is refused, not continued.

    ``seed_sft_only``: only what the seed SFT and its evaluation read, so a loop that has finished nothing but those
    can go on with other round settings (a study's shared seed SFT serves arms of any DPO or SL setting).
    """
    from omegaconf import OmegaConf

    c = drop_inert_defaults(OmegaConf.to_container(cfg, resolve=True))
    c["loop"] = {k: v for k, v in c["loop"].items() if k != "rounds"}
    # what is measured beside the results (a finished run gains it on rerun): not in the key
    c["eval"] = {k: v for k, v in c["eval"].items() if k not in _MEASURED_BESIDE}
    for section in ("ray", "study", "predict", "tracking"):  # how it runs and is tracked, what other commands do
        c.pop(section, None)
    if seed_sft_only:
        for section, keys in _ROUNDS_ONLY.items():
            if keys is None:
                c.pop(section, None)
            else:
                c[section] = {k: v for k, v in c.get(section, {}).items() if k not in keys}
    return config_hash(OmegaConf.create(c))


def _check_key(manifest: dict, key: str, sft_key: str, run_dir: str, model_fingerprint: str | None = None) -> None:
    """Refuse to continue a run made with a configuration, or a model, that changes its finished stages' results."""
    before = manifest.get("model_fingerprint")
    if before is not None and before != model_fingerprint:
        raise RuntimeError(f"{run_dir}: the model at model.path changed since this run began (fingerprint {before}, "
                           f"now {model_fingerprint}): its stages are another model's; choose another run.name or "
                           "remove the directory")
    rounds_done = any(name.startswith("round-") for name in manifest["finished"])
    if rounds_done or "sft_key" not in manifest:
        same = manifest["result_key"] == key
    else:  # only the seed SFT (and its evaluation) finished: only what they read must match
        same = manifest["sft_key"] == sft_key
    if not same:
        raise RuntimeError(f"{run_dir} holds a loop run with a different configuration; choose another run.name "
                           "or remove the directory")


@dataclass
class LoopRun:
    """What every stage of a loop run reads: set up once by :func:`run_loop`, then handed to each stage's function."""

    cfg: Any
    run_dir: str  # absolute (or a URI)
    manifest: dict  # loop.json as it stands
    stages: list[Stage]
    starts: dict[str, TrainStart]  # every training stage's start, by stage name
    shared: dict  # run_loop's ``shared``
    oracle_truth: str | None  # data.truth for an oracle method (the chains are scored against it), else None
    verbose: bool
    truth_cache: dict = field(default_factory=dict)  # data.truth, read once for every round's premise
    tracker: Any = None  # its MLflow run (attrpipe.tracking), None when tracking is off

    def path(self, rel: str | None) -> str | None:
        """A path relative to the run directory, joined to it (None stays None)."""
        return None if rel is None else storage.join(self.run_dir, rel)

    def save(self) -> None:
        storage.write_json_atomic(loop_manifest_path(self.run_dir), self.manifest)


def run_loop(cfg, *, shared: dict | None = None, tracking: dict | None = None, verbose: bool = True,
             _stop_after: str | None = None) -> dict:
    """Run (or resume) the loop; return the run manifest. ``_stop_after`` (tests) stops after the named stage.
    ``tracking`` (studies): log the run as a child of a study's MLflow run (attrpipe.tracking.runs.arm_link).

    ``shared`` (studies): stages another run already did, for the arms of a study to share instead of redoing:
    ``{"sft": RUN_DIR}`` takes the seed SFT adapter and its evaluation from that loop run (copied into this run), and
    ``{"chains": DIR}`` makes round 1 reuse the chains of that pseudo-labeling output (sampled with the same SFT
    adapter, settings and seed: the chains this run would sample), re-scoring them with this run's threshold and pool;
    ``{"pool_greedy": DIR}`` gives round 1's premise the greedy answers of that decode of the pool (the same seed SFT
    adapter's) instead of decoding them again.

    A recipe: plan and check the run, then, one process at a time in its directory (a second waits for the first,
    then resumes: attrpipe.storage.locked), open loop.json and run each planned stage in order, skipped when loop.json
    records it as finished, else run by the function of its kind (``STAGE_RUNNERS``) and recorded; each finished
    stage is logged to MLflow once (attrpipe.tracking).
    """
    shared = shared or {}
    plan = _plan(cfg, shared)  # what cannot run is refused before anything is written
    with storage.locked(storage.join(plan.run_dir, ".loop"), what=f"the loop run {plan.run_dir}"):
        run = _setup(cfg, shared, plan, verbose)
        run.tracker = track.open_loop(run, tracking)
        for st in run.stages:
            if st.name in run.manifest["finished"]:
                _finished_earlier(run, st)
                track.finish_stage(run, st, run.manifest["finished"][st.name])
                continue
            _run_stage(run, st)
            if _stop_after == st.name:
                return run.manifest
        track.finish_loop(run)
    if verbose:
        echo(loop_table(run.manifest))
    return run.manifest


@dataclass(frozen=True)
class _Plan:
    run_dir: str
    stages: list
    starts: dict
    oracle_truth: str | None


def _plan(cfg, shared: dict) -> _Plan:
    """Plan the stages and refuse what cannot run; nothing is written."""
    run_dir = storage.join(cfg.run.output_dir, cfg.run.name)
    if "://" not in run_dir:
        run_dir = str(Path(run_dir).resolve())
    stages = plan_stages(rounds=cfg.loop.rounds, method=cfg.loop.method, seed_sft=cfg.loop.seed_sft,
                         shared_sft="sft" in shared)
    # every training stage's start, resolved up front: one the configuration cannot give is refused before round 1
    starts = {st.name: train_start(st, seed_sft=bool(cfg.loop.seed_sft), reference=str(cfg.loop.reference))
              for st in stages if st.kind in _TRAINING_KINDS}
    oracle_truth = None
    if is_oracle(cfg.loop.method):  # a diagnostic ceiling: the rounds score their chains against the true labels
        oracle_truth = str(cfg.data.truth)
        if not storage.exists(oracle_truth):
            raise ConfigError(f"data.truth: {oracle_truth} does not exist; loop.method={cfg.loop.method} (a "
                              "diagnostic ceiling) scores the chains against it")
    return _Plan(run_dir, stages, starts, oracle_truth)


def _setup(cfg, shared: dict, plan: _Plan, verbose: bool) -> LoopRun:
    """Open or create loop.json for a planned run (refusing a run directory of another configuration or model)."""
    run_dir, stages = plan.run_dir, plan.stages
    loop_file = loop_manifest_path(run_dir)
    key, sft_key = _result_key(cfg), _result_key(cfg, seed_sft_only=True)
    model_fp = storage.fingerprint(cfg.model.path)  # the same path may hold other weights (a rebuilt pretrain)
    if storage.exists(loop_file):
        manifest = storage.read_json(loop_file)
        _check_key(manifest, key, sft_key, run_dir, model_fp)
    else:
        storage.makedirs(run_dir)
        manifest = {"config_hash": config_hash(cfg), "finished": {}}
    if manifest.get("result_key") != key:  # new, or a seed SFT going on with other round settings
        storage.write_text_atomic(storage.join(run_dir, "config.yaml"), to_yaml(cfg))
        manifest["config_hash"] = config_hash(cfg)
    manifest.update(result_key=key, sft_key=sft_key, model_fingerprint=model_fp)
    manifest["stages"] = [s.name for s in stages]
    manifest["method"] = cfg.loop.method
    run = LoopRun(cfg, run_dir, manifest, stages, plan.starts, shared, plan.oracle_truth, verbose)
    run.save()
    return run


def _finished_earlier(run: LoopRun, st: Stage) -> None:
    """A stage loop.json records as finished: skipped. What the configuration now asks to be measured and the stage
    lacks is measured now, nothing retrained: an evaluation's fit and vote (``eval.fit``, ``eval.vote``), a
    pseudo-labeling stage's premise (from its committed chains) and its pool's greedy answers (``eval.pool_greedy``)."""
    if run.verbose:
        echo(f"[loop] {st.name}: done earlier, skipped")
    done = run.manifest["finished"][st.name]
    added = {}
    if st.kind == "eval":
        added = _eval_extras(run, st, done)
    elif st.kind == "shared-eval":
        added = {k: v for k, v in _shared_eval(run, st).items() if k in ("fit", "vote") and k not in done}
    elif st.kind == "pseudolabel":
        premise = done.get("premise") or {}
        if "vote" not in premise or (_pool_greedy_wanted(run) and "greedy" not in premise):
            premise = _premise(run, st)
            if premise is not None:
                added = {"premise": premise}
    if added:
        done.update(added)
        run.save()
        if run.verbose:
            echo(stage_summary(st.name, st.kind, done, run.manifest))


def _run_stage(run: LoopRun, st: Stage) -> None:
    """Run one stage by the function of its kind; record its result, wall time and when it ran in loop.json."""
    if run.verbose:
        echo(f"[loop] {st.name} ...")
    t0, started_at = time.perf_counter(), time.time()
    track.start_stage(run, st)
    try:
        result = STAGE_RUNNERS[st.kind](run, st)
    except Exception:  # (an interrupt is not a failure: its runs stay open, and a rerun continues them)
        track.fail_loop(run, st)
        raise
    result["seconds"] = round(time.perf_counter() - t0, 1)
    # when it ran (Unix time): a study's arms side by side show their stages overlapping
    result["started_at"], result["ended_at"] = round(started_at, 2), round(time.time(), 2)
    run.manifest["finished"][st.name] = result
    run.save()
    track.finish_stage(run, st, result)
    if run.verbose:
        echo(stage_summary(st.name, st.kind, result, run.manifest))


# --- the stages: one function per kind, ``(run, stage) -> the stage's result in loop.json`` -------------------------


def _sft(run: LoopRun, st: Stage) -> dict:
    """The seed SFT on the labeled seed set (continuing its own checkpoints when interrupted)."""
    from attrpipe.train import run_training

    out = run.path(st.out)
    res = run_training("sft", run.cfg, out_dir=out, resume_from=_resume(out), tracking=_worker_tracking(run, st))
    return {"adapter": storage.join(out, "adapter"), "final_step": res.get("final_step")}


def _shared_sft(run: LoopRun, st: Stage) -> dict:
    """The seed SFT adapter of another loop run (``shared["sft"]``), copied into this run."""
    src = storage.join(run.shared["sft"], "sft", "adapter")
    storage.remove_tree(run.path("sft/adapter"))
    storage.copy_tree(src, run.path("sft/adapter"))
    return {"adapter": run.path("sft/adapter"), "shared_from": src}


def _shared_eval(run: LoopRun, st: Stage) -> dict:
    """The evaluation of the shared seed SFT adapter, as that run recorded it."""
    src = read_loop_manifest(run.shared["sft"])["finished"]["sft/eval"]
    return {**src, "shared_from": storage.join(run.shared["sft"], "sft/eval")}


def _pseudolabel(run: LoopRun, st: Stage) -> dict:
    """A round's chains, consensus and pairs, sampled with the round's start adapter (round 1 of a study arm: the
    shared chains, re-scored); with ``data.truth``, the premise of those chains."""
    from omegaconf import OmegaConf

    from attrpipe.pseudolabel.pipeline import run_pseudolabel

    cfg = run.cfg
    reuse = run.shared.get("chains") if st.round == 1 else None
    m = run_pseudolabel(OmegaConf.merge(cfg, {"pseudolabel": {"round": st.round}}), catalog=cfg.data.unlabeled,
                        out=run.path(st.out), adapter=run.path(st.adapter_in), limit=cfg.data.unlabeled_limit,
                        reuse_chains_from=reuse, truth=run.oracle_truth, verbose=False)
    result = {"counts": m["counts"]}
    if reuse:
        result["reused_chains_from"] = reuse
    if run.oracle_truth:
        result["oracle_truth"] = run.oracle_truth
    premise = _premise(run, st)
    if premise is not None:
        result["premise"] = premise
    return result


def _train(run: LoopRun, st: Stage) -> dict:
    """A round's DPO (on its pairs) or SL (on its kept consensus), from the start :func:`train_start` resolved; a
    round with nothing to train on carries its adapter over unchanged."""
    if _nothing_to_train(st, run.manifest):
        return _carry_over(run, st)
    from omegaconf import OmegaConf

    from attrpipe.train import run_training

    out = run.path(st.out)
    data = storage.join(run.path(f"round-{st.round}/pseudolabels"), "pairs" if st.kind == "dpo" else "consensus")
    start = run.starts[st.name]
    overrides = OmegaConf.merge(start.overrides, training_overrides(run.cfg.loop.method, run.cfg))
    res = run_training(st.kind, OmegaConf.merge(run.cfg, overrides),
                       out_dir=out, data=data, init_adapter=run.path(start.init_adapter), resume_from=_resume(out),
                       reference_adapter=run.path(start.reference_adapter()), tracking=_worker_tracking(run, st))
    result = {"adapter": storage.join(out, "adapter"), "final_step": res.get("final_step"),
              "start": start.init_adapter or "base"}
    if start.reference is not None:
        result["reference"] = start.reference
    return result


def _worker_tracking(run: LoopRun, st: Stage) -> dict | None:
    """What the training job's rank 0 needs to log the trainer's curves to the stage's MLflow run."""
    from attrpipe.tracking.callback import worker_tracking

    t = run.tracker
    return None if t is None else worker_tracking(t.settings, t.stage_run_id(st.name))


def _carry_over(run: LoopRun, st: Stage) -> dict:
    """No pairs (DPO) or no kept example (SL) this round: the adapter carries over unchanged, said so."""
    adapter = storage.join(run.path(st.out), "adapter")
    if st.adapter_in is None:
        raise RuntimeError(f"{st.name}: no training data and no adapter to carry over")
    storage.copy_tree(run.path(st.adapter_in), adapter)
    result = {"adapter": adapter, "skipped": f"no {'kept examples' if st.kind == 'sl' else 'pairs'}; "
              f"adapter copied unchanged from {st.adapter_in}"}
    return result


def _eval(run: LoopRun, st: Stage) -> dict:
    """Greedy accuracy of the stage's adapter on the labeled test set, and what :func:`_eval_extras` adds."""
    from attrpipe.evaluation import run_evaluate

    m = run_evaluate(run.cfg, adapter=run.path(st.adapter_in), out=run.path(st.out), verbose=False)
    result = {"accuracy": m["accuracy"], "parse_failure_rate": m["parse_failure_rate"], "scored": m["scored"],
              "per_vertical": {v: s["accuracy"] for v, s in m["per_vertical"].items()}}
    return {**result, **_eval_extras(run, st, result)}


def _eval_extras(run: LoopRun, st: Stage, done: dict) -> dict:
    """What an evaluation measures beside the greedy test accuracy, when configured and not in ``done`` yet:

    - ``vote`` (``eval.vote``): the adapter's self-consistency accuracy on the test split (the consensus of
      ``generation.num_chains`` chains at ``generation.temperature``), under ``<eval>/vote``;
    - ``fit`` (``eval.fit``, the seed SFT only): its greedy accuracy on its own labeled seed split, under
      ``<eval>/fit``: whether the learner can fit the labels it was trained on.
    """
    from attrpipe.evaluation import brief, run_evaluate

    cfg, adapter, out = run.cfg, run.path(st.adapter_in), run.path(st.out)
    extras = {}
    if cfg.eval.vote and "vote" not in done:
        extras["vote"] = brief(run_evaluate(cfg, adapter=adapter, out=storage.join(out, "vote"), mode="vote",
                                            verbose=False))
    if cfg.eval.fit and st.round == 0 and "fit" not in done:
        extras["fit"] = brief(run_evaluate(cfg, test=cfg.data.seed, adapter=adapter, out=storage.join(out, "fit"),
                                           verbose=False, label="fit"))
    return extras


#: The function that runs each kind of stage :func:`plan_stages` makes. A new kind of stage is a new function here.
STAGE_RUNNERS: dict[str, Callable[[LoopRun, Stage], dict]] = {
    "sft": _sft,
    "shared-sft": _shared_sft,
    "eval": _eval,
    "shared-eval": _shared_eval,
    "pseudolabel": _pseudolabel,
    "dpo": _train,
    "sl": _train,
    "scpo": _train,
}


def stage_summary(name: str, kind: str, result: dict, manifest: dict) -> str:
    """The one line a finished stage leaves on the terminal: what it produced, in the numbers that matter."""
    def pct(x):
        return f"{100 * x:.1f}%"

    head = f"[loop] {name}: "
    if "shared_from" in result and kind != "shared-eval":
        return head + f"shared from {result['shared_from']}"
    if "skipped" in result:
        return head + result["skipped"]
    if kind == "pseudolabel":
        c = result["counts"]
        line = (f"{c['listing_attributes']} listing-attributes, {c['kept']} kept, {c['pairs']} pairs, "
                f"{c['chains_unparsed']}/{c['chains']} chains unparsed")
        p = result.get("premise")
        if p is not None and p.get("consensus_kept") is not None and p.get("single_chain") is not None:
            line += f"; against the truth: kept consensus {pct(p['consensus_kept'])}, a chain {pct(p['single_chain'])}"
            if p.get("greedy_kept") is not None:
                line += f", the greedy answer on the kept {pct(p['greedy_kept'])}"
        return head + line + f" ({result['seconds']:.0f}s)"
    if kind in ("eval", "shared-eval"):
        line = f"accuracy {pct(result['accuracy'])}, {pct(result['parse_failure_rate'])} unparsed"
        sft = manifest["finished"].get("sft/eval")
        if name != "sft/eval" and sft is not None:
            line += f", {100 * (result['accuracy'] - sft['accuracy']):+.1f} points over the seed SFT"
        if result.get("vote"):
            v = result["vote"]
            line += (f"; the vote of {v['num_chains']} chains {pct(v['accuracy'])} "
                     f"({100 * (v['accuracy'] - result['accuracy']):+.1f} over the greedy answer)")
        if result.get("fit"):
            line += f"; its own seed split {pct(result['fit']['accuracy'])} (fit)"
        return head + line + (f" ({result['seconds']:.0f}s)" if "seconds" in result else "")
    return head + f"{result.get('final_step')} steps ({result['seconds']:.0f}s)"


def _truth(run: LoopRun) -> dict | None:
    from attrpipe.premise import read_truth

    if "truth" not in run.truth_cache:
        run.truth_cache["truth"] = read_truth(run.cfg.data.truth, CatalogReading.from_conf(run.cfg))
    return run.truth_cache["truth"]


def _pool_greedy_wanted(run: LoopRun) -> bool:
    return bool(run.cfg.eval.pool_greedy) and _truth(run) is not None


def _premise(run: LoopRun, st: Stage) -> dict | None:
    """The premise of a round's chains (attrpipe.premise), when the pool's true labels exist (``data.truth``); with
    ``eval.pool_greedy``, beside the greedy answers of the adapter the round sampled with on the same pool."""
    from attrpipe.premise import chain_premise, read_chain_rows, read_greedy_answers, sampler_accuracy

    truth = _truth(run)
    if truth is None:
        return None
    greedy = None
    if _pool_greedy_wanted(run):
        greedy = read_greedy_answers(_pool_greedy(run, st))
    sampler_eval = None if st.adapter_in is None else f"{st.adapter_in.rsplit('/', 1)[0]}/eval"
    premise = chain_premise(read_chain_rows(run.path(st.out)), truth, float(run.cfg.consensus.threshold),
                            greedy=greedy)
    premise["sampler"] = sampler_accuracy(run.manifest["finished"].get(sampler_eval), sampler_eval)
    return premise


def _pool_greedy(run: LoopRun, st: Stage) -> str:
    """The pool decoded greedily by the adapter a round samples with (resumable, like any pseudo-labeling output):
    round 1 of a study arm reads the study's shared decode (``shared["pool_greedy"]``, the seed SFT's over the
    largest pool), every other round decodes its own under ``round-<r>/pool-greedy``."""
    from attrpipe.pseudolabel.pipeline import run_pseudolabel

    shared = run.shared.get("pool_greedy") if st.round == 1 else None
    if shared:
        return shared
    out = run.path(f"round-{st.round}/pool-greedy")
    run_pseudolabel(run.cfg, catalog=run.cfg.data.unlabeled, out=out, adapter=run.path(st.adapter_in),
                    limit=run.cfg.data.unlabeled_limit, greedy=True, verbose=False, label="pool greedy")
    return out


def _nothing_to_train(st: Stage, manifest: dict) -> bool:
    counts = manifest["finished"].get(f"round-{st.round}/pseudolabel", {}).get("counts", {})
    # DPO and ScPO pair a kept example's disagreeing chains (an ScPO pair exists where DPO pairs do); SL: the kept
    return counts.get("kept" if st.kind == "sl" else "pairs", 0) == 0


def _resume(out_dir: str) -> str | None:
    """Continue an interrupted training stage from its checkpoints, if it left any (local or URI)."""
    ray_dir = storage.join(out_dir, "ray")
    return out_dir if storage.find_files(ray_dir, "trainer_state.json") else None


def loop_table(manifest: dict) -> str:
    """Per-round accuracy table from the run manifest; with the pool's true labels, each round's premise too (a
    parsed chain's accuracy and the kept consensus's, on the pool)."""
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    rows = [f"{'stage':<16}{'accuracy':>10}{'lift':>8}{'parse fail':>12}{'vote':>8}{'kept':>8}{'pairs':>8}"
            f"{'1 chain right':>15}{'kept right':>12}{'greedy, kept':>14}"]
    fin = manifest["finished"]
    sft = fin.get("sft/eval")
    for name in manifest["stages"]:
        if not name.endswith("eval") or name not in fin:
            continue
        e = fin[name]
        rnd = name.split("/")[0]
        pl = fin.get(f"{rnd}/pseudolabel", {})
        counts, premise = pl.get("counts", {}), pl.get("premise")
        chain, kept = ("", "") if premise is None else (pct(premise["single_chain"]), pct(premise["consensus_kept"]))
        greedy_kept = pct(premise["greedy_kept"]) if premise and "greedy_kept" in premise else ""
        lift = "" if sft is None or name == "sft/eval" else f"{100 * (e['accuracy'] - sft['accuracy']):+.1f}"
        vote = pct(e["vote"]["accuracy"]) if e.get("vote") else ""
        rows.append(f"{rnd:<16}{pct(e['accuracy']):>10}{lift:>8}{pct(e['parse_failure_rate']):>12}{vote:>8}"
                    f"{counts.get('kept', ''):>8}"
                    f"{counts.get('pairs', ''):>8}{chain:>15}{kept:>12}{greedy_kept:>14}")
    if sft is not None and sft.get("fit"):
        rows.append(f"the seed SFT answers {pct(sft['fit']['accuracy'])} of its own labeled seed split right (fit)")
    if is_oracle(manifest.get("method", "")):
        rows.append(f"method {manifest['method']}: a diagnostic ceiling (chains scored against the true labels), "
                    "not the method")
    return "\n".join(rows)
