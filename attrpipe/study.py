"""Studies: the paper's tables as one command each.

- ``attrpipe study threshold CONFIG``: the consensus threshold C over ``study.thresholds`` (the paper's Table 5);
- ``attrpipe study pool-size CONFIG``: the unlabeled pool over ``study.pool_sizes`` listings, the first N of
  ``data.unlabeled`` (its Table 6);

each for every method of ``study.methods`` (DPO and the self-learning baseline side by side; ``dpo-oracle`` and
``sl-oracle``, the diagnostic ceilings of attrpipe.methods, beside them when asked for) and every seed of
``study.seeds`` (mean and spread). An *arm* (value x method x seed) is an ordinary loop run of ``study.rounds`` rounds.
What the arms of a seed have in common is done once and shared, never redone, by both kinds of study of a run:

- the seed SFT and its evaluation (a loop run with no rounds, ``shared/seed-<s>/base``);
- round 1's chains: the pool sampled once with the SFT adapter (``shared/seed-<s>/chains-<N>``, N the listings: the
  largest arm's for a pool-size study, ``data.unlabeled_limit`` for a threshold study, so a threshold study on the
  pool-size study's largest pool samples nothing again). Round 1 of every arm reuses them (the very chains it would
  sample: same adapter, settings and seed, checked) and only re-scores them with its own threshold and pool
  (attrpipe.pseudolabel.pipeline.run_pseudolabel ``reuse_chains_from``).

Layout under ``<run.output_dir>/<run.name>/``::

    shared/seed-<s>/base/                         the shared seed SFT (sft/adapter, sft/eval, loop.json)
    shared/seed-<s>/chains-<N>/                   the shared round-1 chains (a pseudo-labeling output)
    shared/seed-<s>/pool-greedy-<N>/              the seed SFT's greedy answers on that pool (``eval.pool_greedy``,
                                                  with ``data.truth``: the premise's greedy comparison)
    study-<kind>/seed-<s>/<method>-<var>-<value>/ an arm: a loop run directory (loop.json, round-k/...)
    study-<kind>/study.json  study.md  study.png  every arm's results, the table, the plot
    summary.json                                  every study command's arms, merged (``study.summary`` moves it):
                                                  what attrpipe.results renders docs/results.md's tables from

Where the pool's true labels exist (``data.truth``), every arm's row also holds round 1's premise (attrpipe.premise: a
parsed chain's accuracy, the kept consensus's, the gain), and study.md a table of it per attribute.

``study.name`` puts the arms under ``study-<kind>-<name>/`` instead: a lever of DPO, SL or the threshold (say
``dpo.learning_rate=1e-4 study.name=dpo-lr-1e-4``) runs beside the default arms and shares their seed SFT and chains
(the seed SFT's run goes on with any round settings, attrpipe.loop). A lever of what the chains depend on (sampling,
images, the model) needs its own ``run.name``: the shared chains refuse to stand in for chains sampled differently.

The jobs (each seed's shared stages, then its arms) run as Ray tasks, as many at once as fit in the cluster
(``study.max_concurrent_arms``; attrpipe.study_cluster). An arm that fails is recorded with its error line and the
others finish. Rerunning the command resumes: finished arms are skipped stage by stage, as loops are. Study commands
may run at once on one machine (each seed in its own, say): a loop run, a chain set and the summary are each worked on by one process
at a time (attrpipe.storage.locked), so two commands of one seed take turns at its seed SFT and chains, and the
second finds them done.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

from omegaconf import OmegaConf

from attrpipe import storage
from attrpipe.methods import is_oracle, method_label
from attrpipe.console import echo

__all__ = ["KINDS", "Arm", "plan_arms", "arm_overrides", "summarize_arms", "study_table", "premise_table",
           "run_study"]

KINDS = {"threshold": "consensus.threshold", "pool-size": "data.unlabeled_limit"}


@dataclass(frozen=True)
class Arm:
    kind: str  # threshold | pool-size
    value: float | int
    method: str  # dpo | sl | dpo-oracle | sl-oracle (attrpipe.methods)
    seed: int

    @property
    def name(self) -> str:
        var = "C" if self.kind == "threshold" else "pool"
        return f"{self.method}-{var}-{self.value}"


def plan_arms(kind: str, values, methods, seeds) -> list[Arm]:
    """Every (value, method, seed), seeds outermost so a seed's shared stages are made once, then used."""
    if kind not in KINDS:
        raise ValueError(f"unknown study {kind!r}; one of {', '.join(KINDS)}")
    return [Arm(kind, v, m, s) for s in seeds for v in values for m in methods]


def arm_overrides(arm: Arm, *, rounds: int) -> dict:
    """What an arm changes in the study's configuration (besides where it runs)."""
    o: dict = {"run": {"seed": arm.seed}, "loop": {"rounds": rounds, "method": arm.method, "seed_sft": True}}
    if arm.kind == "threshold":
        o["consensus"] = {"threshold": float(arm.value)}
    else:
        o["data"] = {"unlabeled_limit": int(arm.value)}
    return o


def _mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _mean(xs) -> float | None:
    return _mean_std([x for x in xs if x is not None])[0]


def _premise_of(r: dict, key: str):
    p = r.get("premise")
    return None if p is None else p.get(key)


def summarize_arms(results: list[dict]) -> list[dict]:
    """Per (value, method): mean and sample standard deviation over seeds of the final accuracy, the SFT accuracy and
    the lift (final - SFT), plus round 1's kept examples and pairs (means) and, where measured, round 1's premise
    (means of a parsed chain's accuracy, the kept consensus's and the gain; per attribute too). ``results`` are the
    per-arm rows."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["value"], r["method"]), []).append(r)
    rows = []
    for (value, method), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        final = [r["accuracy"] for r in rs if r["accuracy"] is not None]
        sft = [r["sft_accuracy"] for r in rs if r["sft_accuracy"] is not None]
        lift = [r["accuracy"] - r["sft_accuracy"] for r in rs
                if r["accuracy"] is not None and r["sft_accuracy"] is not None]
        (am, asd), (sm, _), (lm, lsd) = _mean_std(final), _mean_std(sft), _mean_std(lift)
        per_attr: dict[str, dict[str, list]] = {}
        for r in rs:
            for attr, p in ((r.get("premise") or {}).get("per_attribute") or {}).items():
                d = per_attr.setdefault(attr, {"single_chain": [], "consensus_kept": [], "gain": [], "kept": []})
                for k in d:
                    d[k].append(p.get(k))
        rows.append({"value": value, "method": method, "seeds": len(rs), "accuracy": am, "accuracy_std": asd,
                     "scored": _mean([r.get("scored") for r in rs]),
                     "sft_accuracy": sm, "lift": lm, "lift_std": lsd,
                     "kept": _mean_std([r["kept"] for r in rs])[0], "pairs": _mean_std([r["pairs"] for r in rs])[0],
                     "single_chain": _mean(_premise_of(r, "single_chain") for r in rs),
                     "consensus_kept": _mean(_premise_of(r, "consensus_kept") for r in rs),
                     "gain": _mean(_premise_of(r, "gain") for r in rs),
                     "premise_per_attribute": {a: {k: _mean(v) for k, v in d.items()}
                                               for a, d in sorted(per_attr.items())}})
    return rows


def study_table(kind: str, summary: list[dict]) -> str:
    """The study as a Markdown table (accuracies in percent; +- is the standard deviation over seeds)."""
    var = "C" if kind == "threshold" else "unlabeled listings"

    def pct(m, sd=None):
        if m is None:
            return "n/a"
        return f"{100 * m:.1f}" + ("" if sd is None else f" ± {100 * sd:.1f}")

    lines = [f"| {var} | method | seeds | accuracy % | SFT % | lift (points) | kept (round 1) | pairs (round 1) "
             "| a parsed chain right % | kept consensus right % | gain (points) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        kept = "n/a" if r["kept"] is None else f"{r['kept']:.0f}"
        pairs = "n/a" if r["pairs"] is None else f"{r['pairs']:.0f}"
        lines.append(f"| {r['value']} | {method_label(r['method'])} | {r['seeds']} "
                     f"| {pct(r['accuracy'], r['accuracy_std'])} "
                     f"| {pct(r['sft_accuracy'])} | {pct(r['lift'], r['lift_std'])} | {kept} | {pairs} "
                     f"| {pct(r.get('single_chain'))} | {pct(r.get('consensus_kept'))} | {pct(r.get('gain'))} |")
    if any(is_oracle(r["method"]) for r in summary):
        lines.append("")
        lines.append("The oracle rows are diagnostic ceilings, not the method: the same chains, scored against the "
                     "true labels instead of their consensus, then trained as DPO / SL are.")
    return "\n".join(lines)


def premise_table(kind: str, summary: list[dict]) -> str | None:
    """Round 1's premise per attribute and study value (means over seeds), as Markdown; None when not measured.
    Every method of a value scores the same chains, so one row per (value, attribute) suffices."""
    var = "C" if kind == "threshold" else "unlabeled listings"
    seen: dict = {}
    for r in summary:
        if r.get("premise_per_attribute") and r["value"] not in seen:
            seen[r["value"]] = r["premise_per_attribute"]
    if not seen:
        return None

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}"

    lines = [f"| {var} | attribute | a parsed chain right % | kept | kept consensus right % | gain (points) |",
             "|---|---|---|---|---|---|"]
    for value, attrs in seen.items():
        for attr, p in attrs.items():
            kept = "n/a" if p.get("kept") is None else f"{p['kept']:.0f}"
            lines.append(f"| {value} | {attr} | {pct(p['single_chain'])} | {kept} | {pct(p['consensus_kept'])} "
                         f"| {pct(p['gain'])} |")
    return "\n".join(lines)


def _arm_result(arm: Arm, manifest: dict, *, threshold: float, run_dir: str | None = None) -> dict:
    """One arm's row: its final and per-round accuracy, round 1's counts and premise (when measured), its wall time
    (the sum of its stages') and the C it kept at."""
    from attrpipe.premise import parsed_accuracy

    fin = manifest["finished"]
    evals = [s for s in manifest["stages"] if s.endswith("/eval") and s != "sft/eval"]
    last = fin.get(evals[-1], {}) if evals else {}
    sft = fin.get("sft/eval", {})
    pl = fin.get("round-1/pseudolabel", {})
    r1 = pl.get("counts", {})
    return {**asdict(arm), "arm": arm.name, "accuracy": last.get("accuracy"), "scored": last.get("scored"),
            "sft_accuracy": sft.get("accuracy"),
            "per_round": [fin.get(s, {}).get("accuracy") for s in ["sft/eval", *evals]],
            "kept": r1.get("kept", 0), "pairs": r1.get("pairs", 0),
            "vote": (last.get("vote") or {}).get("accuracy"), "sft_vote": (sft.get("vote") or {}).get("accuracy"),
            "sft_fit": (sft.get("fit") or {}).get("accuracy"),
            "parse_failure_rate": last.get("parse_failure_rate"), "parsed_accuracy": parsed_accuracy(last),
            "sft_parse_failure_rate": sft.get("parse_failure_rate"), "sft_parsed_accuracy": parsed_accuracy(sft),
            "threshold": threshold, "listings": r1.get("listings_in"),
            "listing_attributes": r1.get("listing_attributes"), "premise": pl.get("premise"),
            "seconds": round(sum(v.get("seconds", 0) for v in fin.values()), 1), "run_dir": run_dir}


def _shared_job(cfg, kind: str, seed: int, chains_limit: int | None, tracking: dict | None,
                verbose: bool, quiet: bool) -> dict:
    """A seed's shared stages (a Ray task of the study's graph): the seed SFT and its evaluation, round 1's chains and,
    with the pool's true labels, the pool's greedy answers. Returns what the seed's arms share and the chains'
    counts."""
    from attrpipe.loop import run_loop
    from attrpipe.pseudolabel.pipeline import run_pseudolabel

    _quiet_worker(quiet)
    shared_dir = storage.join(cfg.run.output_dir, cfg.run.name, "shared", f"seed-{seed}")
    base_cfg = OmegaConf.merge(cfg, {"run": {"output_dir": shared_dir, "name": "base", "seed": seed},
                                     "loop": {"rounds": 0, "seed_sft": True}})
    run_loop(base_cfg, verbose=verbose, tracking=tracking)
    base_dir = storage.join(shared_dir, "base")
    adapter = storage.join(base_dir, "sft", "adapter")
    chains = storage.join(shared_dir, f"chains-{chains_limit if chains_limit is not None else 'all'}")
    chains_cfg = OmegaConf.merge(base_cfg, {"pseudolabel": {"round": 1}})
    manifest = run_pseudolabel(chains_cfg, catalog=cfg.data.unlabeled, out=chains, adapter=adapter,
                               limit=chains_limit, verbose=verbose)
    shared = {"sft": base_dir, "chains": chains}
    if cfg.eval.pool_greedy and storage.exists(cfg.data.truth):  # the seed SFT's greedy answers on that pool
        shared["pool_greedy"] = storage.join(shared_dir, f"pool-greedy-{chains_limit or 'all'}")
        run_pseudolabel(base_cfg, catalog=cfg.data.unlabeled, out=shared["pool_greedy"], adapter=adapter,
                        limit=chains_limit, greedy=True, verbose=verbose, label="pool greedy")
    return {"shared": shared, "chains_manifest": {"counts": manifest.get("counts") or {},
                                                  "generate_seconds": manifest.get("generate_seconds")}}


def _arm_job(cfg, arm: dict, seed_dir: str, overrides: dict, tracking: dict | None, verbose: bool,
             quiet: bool, shared: dict) -> dict:
    """One arm (a Ray task of the study's graph): a loop run over its seed's shared stages; returns its row."""
    from attrpipe.loop import run_loop

    _quiet_worker(quiet)
    a = Arm(**arm)
    acfg = OmegaConf.merge(cfg, {"run": {"output_dir": seed_dir, "name": a.name}}, overrides)
    manifest = run_loop(acfg, shared=shared["shared"], verbose=verbose, tracking=tracking)
    return _arm_result(a, manifest, threshold=float(acfg.consensus.threshold), run_dir=storage.join(seed_dir, a.name))


def _quiet_worker(quiet: bool) -> None:
    """In a task of a quiet command, Ray Data's progress bars would only fill the command's log (attrpipe.console)."""
    if quiet:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False


def arm_line(kind: str, name: str, state: str, *, running: int | None = None, waiting: int | None = None,
             seconds: float | None = None, row: dict | None = None, error: str | None = None) -> str:
    """The terminal's line for a job of a study as it starts or ends (pure)."""
    head = f"[study {kind}] {name}: {state}"
    if state == "running":
        return head + f" ({running} running, {waiting} queued)"
    took = "" if seconds is None else f" in {seconds:.0f}s"
    if state == "failed":
        return head + took + f": {error}"
    if row is None:
        return head + took
    acc, sft = row.get("accuracy"), row.get("sft_accuracy")
    if acc is None:
        return head + took + ": no accuracy"
    lift = "" if sft is None else f", seed SFT {100 * sft:.1f}%, lift {100 * (acc - sft):+.1f}"
    return head + took + f": accuracy {100 * acc:.1f}%{lift}"


def summary_path(cfg) -> str:
    """Where a study command merges its arms: ``study.summary``, else ``<run.output_dir>/<run.name>/summary.json``."""
    return cfg.study.summary or storage.join(cfg.run.output_dir, cfg.run.name, "summary.json")


def run_study(cfg, kind: str, *, verbose: bool = True, command: list[str] | None = None) -> dict:
    """Run (or resume) a study on the cluster (attrpipe.study_cluster): per seed its shared stages, then its arms, as
    many at once as fit (``study.max_concurrent_arms``); write study.json, study.md and study.png, and merge its arms
    into the summary (:func:`summary_path`, attrpipe.results) with ``command`` (the command line) and this
    invocation's wall time; return the study manifest. An arm that fails is recorded with its error line (``failed``)
    and the others go on; a rerun redoes only what did not finish."""
    import ray

    from attrpipe import console
    from attrpipe.config import ConfigError
    from attrpipe.models.loader import model_identity
    from attrpipe.ray_utils import init_ray
    from attrpipe.report import plot_study
    from attrpipe.results import check_summary_model, update_summary
    from attrpipe.study_cluster import (Job, arm_need, arms_that_fit, concurrency, run_jobs, share_overrides,
                                        stage_needs)
    from attrpipe.tracking import runs as track

    t0 = time.perf_counter()
    sc = cfg.study
    oracle = [m for m in sc.methods if is_oracle(m)]
    if oracle and not storage.exists(cfg.data.truth):
        raise ConfigError(f"data.truth: {cfg.data.truth} does not exist; study.methods has {oracle[0]} (a diagnostic "
                          "ceiling), which scores the chains against it")
    check_summary_model(summary_path(cfg), model_identity(cfg.model.path), f"this {kind} study")
    values = list(sc.thresholds) if kind == "threshold" else sorted(int(n) for n in sc.pool_sizes)
    arms = plan_arms(kind, values, list(sc.methods), list(sc.seeds))
    study_dir = storage.join(cfg.run.output_dir, cfg.run.name, f"study-{kind}" + (f"-{sc.name}" if sc.name else ""))
    # The pool the shared chains cover: the largest arm's (pool-size), else the configured pool.
    chains_limit = max(values) if kind == "pool-size" else cfg.data.unlabeled_limit
    tracker = track.open_study(cfg, study_dir, kind, verbose=verbose)  # the study's MLflow run; its arms are children

    init_ray(cfg)
    cluster = {r: float(v) for r, v in ray.cluster_resources().items() if r in ("CPU", "GPU")}
    need = arm_need(stage_needs(cfg.ray))
    k = concurrency(sc.max_concurrent_arms, arms_that_fit(cluster, need), len(arms) + len(sc.seeds))
    quiet = console.is_quiet()
    say = echo if verbose else (lambda _line: None)
    share = share_overrides(cluster, k, cfg.ray.preprocess)
    jobs = [Job(f"seed {s}: shared seed SFT and chains", _shared_job,
                (cfg, kind, s, chains_limit, track.arm_link(tracker, arm=f"seed-{s}/seed-sft"), verbose, quiet),
                extra={"seed": s})
            for s in sc.seeds]
    for arm in arms:
        seed_dir = storage.join(study_dir, f"seed-{arm.seed}")
        overrides = OmegaConf.merge(arm_overrides(arm, rounds=int(sc.rounds)), share)
        jobs.append(Job(f"seed {arm.seed}: {arm.name}", _arm_job,
                        (cfg, asdict(arm), seed_dir, OmegaConf.to_container(overrides),
                         track.arm_link(tracker, arm=f"seed-{arm.seed}/{arm.name}"), verbose, quiet),
                        after=jobs[list(sc.seeds).index(arm.seed)].name, extra={"arm": arm}))
    say(f"[study {kind}] {len(arms)} arms over {len(sc.seeds)} seed(s); {k} job(s) at once (an arm needs "
        + ", ".join(f"{v:g} {r}" for r, v in need.items() if v) + "; the cluster has "
        + ", ".join(f"{v:g} {r}" for r, v in cluster.items()) + ")")

    def on_end(job):
        if job.error is None and "arm" not in job.extra:  # a seed's shared chains: logged once to the study's run
            chains = job.result["shared"]["chains"]
            name = f"seed-{job.extra['seed']}/{chains.rstrip('/').rsplit('/', 1)[-1]}"
            track.log_shared_chains(tracker, chains, name, job.result["chains_manifest"])
        say(arm_line(kind, job.name, "failed" if job.error else "done", seconds=job.ended - job.started,
                     row=job.result if "arm" in job.extra else None, error=job.error))

    run_jobs(jobs, k, on_start=lambda job, n, w: say(arm_line(kind, job.name, "running", running=n, waiting=w)),
             on_end=on_end)
    arm_jobs = [j for j in jobs if "arm" in j.extra]
    results = [j.result for j in arm_jobs if j.error is None]
    failed = [{**asdict(j.extra["arm"]), "arm": j.extra["arm"].name, "error": j.error,
               "run_dir": storage.join(study_dir, f"seed-{j.extra['arm'].seed}", j.extra["arm"].name)}
              for j in arm_jobs if j.error is not None]
    summary = summarize_arms(results)
    table = study_table(kind, summary)
    premise = premise_table(kind, summary)
    out = {"kind": kind, "variable": KINDS[kind], "name": sc.name, "run": cfg.run.name,
           "study_dir": study_dir.rstrip("/").rsplit("/", 1)[-1], "values": values, "methods": list(sc.methods),
           "seeds": list(sc.seeds), "rounds": int(sc.rounds), "reference": str(cfg.loop.reference),
           "objective": str(sc.objective),
           "threshold": float(cfg.consensus.threshold), "pool": cfg.data.unlabeled_limit,
           "model": model_identity(cfg.model.path), "concurrency": k,
           "arms": results, "failed": failed, "summary": summary, "table": table, "premise_table": premise,
           "seconds_this_invocation": round(time.perf_counter() - t0, 1)}
    storage.write_json_atomic(storage.join(study_dir, "study.json"), out)
    md = f"# Study: {kind}\n\n{table}\n"
    if failed:
        md += "\n## Failed arms (rerun the command to redo them)\n\n" + "".join(
            f"- seed {f['seed']}, {f['arm']}: {f['error']}\n" for f in failed)
    if premise:
        md += ("\n## The premise per attribute (round 1, on the pool's true labels)\n\n" + premise + "\n")
    storage.write_text_atomic(storage.join(study_dir, "study.md"), md)
    plot_study(out, storage.join(study_dir, "study.png"))
    dest = summary_path(cfg)
    update_summary(dest, out, command=command, seconds=out["seconds_this_invocation"])
    track.finish_study(tracker, study_dir, dest)
    say(table)
    if failed:
        say(f"[study {kind}] {len(failed)} of {len(arms)} arm(s) failed (listed above and in study.md); rerun the "
            "same command to redo only them")
    say(f"study results: {study_dir} (study.json, study.md, study.png); summary: {dest}")
    return out
