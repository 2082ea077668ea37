"""summary.json: every study command's arms in one machine-readable file, and the Markdown tables rendered from it.

Each ``attrpipe study`` command merges its arms into the summary (``study.summary``, default
``<run.output_dir>/<run.name>/summary.json``; :func:`update_summary`), so studies of several kinds (threshold,
pool-size, the named lever and rounds runs) accumulate there, each with the command lines that ran it and their wall
times. ``attrpipe results add`` records a run that is not a study (the zero-shot evaluation, a loop run), and
``attrpipe results tables`` renders the tables (:func:`render_tables`): printed, or written into the marked blocks of a
Markdown file (``<!-- results:NAME -->`` ... ``<!-- /results:NAME -->``), so that docs/results.md's tables are never
typed by hand.

Layout (accuracies in percent, lifts and gains in points; every value of an arm per seed, then its mean and sample
standard deviation over seeds)::

    {"format": 1, "units": ..., "model": {"path", "recipe_hash", "weights_sha256"},   # every result's model
     "studies": {"<run.name>/<study dir>": {"run", "dir", "kind", "name", "rounds", "reference", "threshold", "values",
                   "commands": [{"argv", "seconds", "finished_at", "seeds", "arms", "failed"}],
                   "failed": {"<arm>/seed-<s>": {"method", "value", "seed", "error", "run_dir"}},  # until rerun
                   "arms": {"<arm>": {"method", "value", "diagnostic", "seeds",
                                      "per_seed": {"<seed>": {accuracy, lift, sft_accuracy, parsed_accuracy,
                                                              kept, pairs, listings, threshold, rounds, premise,
                                                              seconds, ...}},
                                      "accuracy": {"mean", "std", "n"}, "lift": {...}, ..., "premise": {...}}}}},
     "runs": {"<label>": {...}},      # attrpipe results add (e.g. "zero-shot")
     "headline": {"n_seeds", "seed_sft", "seed_sft_fit", "seed_sft_vote", "objective", "smallest_pool",
                  "largest_pool"}}

``headline`` is computed from the arms of the pool-size study (the one without ``study.name``): the number of seeds,
the seed SFT's mean accuracy, fit (on its own seed split) and vote (on the test split), the study's preference
objective, and for the smallest and the largest pool the mean accuracy and lift of that objective (``dpo``), SL and
DPO-oracle and the premise (a parsed chain's accuracy, the kept consensus's). Everything here is pure but
:func:`load_summary`, :func:`save_summary`, :func:`update_summary` and :func:`add_run`.
"""

from __future__ import annotations

import copy
import math
import time

from attrpipe import storage
from attrpipe.methods import METHODS, is_oracle

__all__ = ["UNITS", "SummaryModelMismatch", "check_summary_model", "seed_record", "merge_study", "headline",
           "run_record", "load_summary", "save_summary", "update_summary", "add_run", "study_for_plot", "TABLES"]

UNITS = ("accuracies and shares in percent; lifts and gains in points; kept, pairs and listings are counts (means "
         "over seeds); seconds are wall-clock")
TABLES = ("table-4", "table-5", "table-6", "premise", "premise-per-attribute", "other-studies", "other-runs",
          "commands")

_STAT_FIELDS = ("accuracy", "lift", "sft_accuracy", "parse_failure_rate", "parsed_accuracy", "sft_parse_failure_rate",
                "sft_parsed_accuracy", "vote", "sft_vote", "sft_fit", "gap_closed", "kept", "pairs", "listings",
                "listing_attributes", "seconds")
_PREMISE_PCT = ("single_chain", "consensus_kept", "gain", "single_chain_kept", "selection", "vote",
                "pairs_toward_truth", "pairs_away_from_truth", "greedy", "greedy_kept", "consensus_all",
                "vote_over_greedy", "vote_over_greedy_all")
_PREMISE_FIELDS = (*_PREMISE_PCT, "examples", "kept", "pairs")


def _pct(x):
    return None if x is None else 100.0 * x


def _stat(xs) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return {"mean": m, "std": sd, "n": len(xs)}


def _mean(xs) -> float | None:
    return _stat(xs)["mean"]


# --- building the summary ---------------------------------------------------------------------------------------------


def _premise_pct(p: dict | None) -> dict | None:
    if not p:
        return None
    def fields(v: dict) -> dict:  # a premise from before selection, vote and the pairs were measured has None there
        return {"examples": v.get("examples"), "kept": v.get("kept"), "pairs": v.get("pairs"),
                **{f: _pct(v.get(f)) for f in _PREMISE_PCT}}

    out = {"threshold": p.get("threshold"), "chains_parsed": p.get("chains_parsed"), **fields(p),
           "per_attribute": {a: fields(v) for a, v in (p.get("per_attribute") or {}).items()}}
    s = p.get("sampler")
    if s:
        out["sampler"] = {"stage": s.get("stage"), "accuracy": _pct(s.get("accuracy")),
                          "parsed_accuracy": _pct(s.get("parsed_accuracy"))}
    return out


def gap_closed(accuracy: float | None, sft: float | None, sft_vote: float | None) -> float | None:
    """The share of the seed SFT's greedy-to-vote gap an adapter closed: ``(accuracy - sft) / (sft_vote - sft)`` (1:
    its greedy answer is as right as the seed SFT's vote was; above 1: beyond it). None when the vote is not above the
    greedy answer (there was nothing to close) or a value is missing."""
    if accuracy is None or sft is None or sft_vote is None or sft_vote <= sft:
        return None
    return (accuracy - sft) / (sft_vote - sft)


def seed_record(arm_result: dict) -> dict:
    """One arm's values on one seed, in percent, from a study's arm row (attrpipe.study._arm_result)."""
    r = arm_result
    acc, sft = r.get("accuracy"), r.get("sft_accuracy")
    return {"method": r["method"], "seed": r["seed"], "value": r["value"], "threshold": r.get("threshold"),
            "scored": r.get("scored"),
            "vote": _pct(r.get("vote")), "sft_vote": _pct(r.get("sft_vote")), "sft_fit": _pct(r.get("sft_fit")),
            "gap_closed": _pct(gap_closed(acc, sft, r.get("sft_vote"))),
            "listings": r.get("listings"), "listing_attributes": r.get("listing_attributes"),
            "rounds": len(r.get("per_round") or [None]) - 1,
            "accuracy": _pct(acc), "sft_accuracy": _pct(sft),
            "lift": None if acc is None or sft is None else 100.0 * (acc - sft),
            "parse_failure_rate": _pct(r.get("parse_failure_rate")), "parsed_accuracy": _pct(r.get("parsed_accuracy")),
            "sft_parse_failure_rate": _pct(r.get("sft_parse_failure_rate")),
            "sft_parsed_accuracy": _pct(r.get("sft_parsed_accuracy")),
            "per_round": [_pct(x) for x in r.get("per_round") or []], "kept": r.get("kept"), "pairs": r.get("pairs"),
            "premise": _premise_pct(r.get("premise")), "seconds": r.get("seconds"), "run_dir": r.get("run_dir")}


def _aggregate(arm: dict) -> None:
    """An arm's means and standard deviations over its seeds, from ``per_seed``."""
    recs = [arm["per_seed"][s] for s in sorted(arm["per_seed"], key=int)]
    arm["seeds"] = [int(s) for s in sorted(arm["per_seed"], key=int)]
    for f in _STAT_FIELDS:
        arm[f] = _stat(r.get(f) for r in recs)
    prem = [r["premise"] for r in recs if r.get("premise")]
    if not prem:
        arm["premise"] = None
        return
    attrs = sorted({a for p in prem for a in p.get("per_attribute", {})})
    arm["premise"] = {**{f: _stat(p.get(f) for p in prem) for f in _PREMISE_FIELDS},
                      "per_attribute": {a: {f: _mean(p["per_attribute"].get(a, {}).get(f) for p in prem)
                                            for f in _PREMISE_FIELDS} for a in attrs}}


class SummaryModelMismatch(ValueError):
    """A result from one model merged into a summary of another's."""


def _same_model(a: dict, b: dict) -> bool:
    if a.get("weights_sha256") and b.get("weights_sha256"):
        return a["weights_sha256"] == b["weights_sha256"]
    return a.get("path") == b.get("path")


def _check_model(summary: dict, model: dict | None, what: str) -> None:
    """Record ``model`` in ``summary``, or refuse it if the summary already holds another model's results: arms of
    two models averaged over seeds would be a number of neither."""
    if not model:
        return
    held = summary.get("model")
    if held and not _same_model(held, model):
        def name(m):
            weights = m.get("weights_sha256")
            return m.get("path", "?") + (f" (weights {weights[:12]}...)" if weights else "")
        raise SummaryModelMismatch(
            f"the summary holds results of {name(held)}; {what} ran {name(model)}. Write it to another summary "
            "(study.summary=...) or move the old one away")
    summary["model"] = held or model


def check_summary_model(path: str, model: dict | None, what: str) -> None:
    """Refuse, before anything runs, a study whose results the summary at ``path`` could not take (another model's)."""
    summary = load_summary(path)
    if summary:
        _check_model(copy.deepcopy(summary), model, what)


def merge_study(summary: dict | None, study: dict, *, command: list[str] | None = None,
                seconds: float | None = None, now: float | None = None) -> dict:
    """A new summary with ``study`` (a study manifest, attrpipe.study.run_study) merged in: its arms' seeds replace
    those seeds' earlier values, other arms and seeds stay; the command and its wall time are appended; the headline
    is computed again. ``summary`` is not changed."""
    out = copy.deepcopy(summary) if summary else {}
    out.setdefault("format", 1)
    out["units"] = UNITS
    out.setdefault("studies", {})
    out.setdefault("runs", {})
    key = f"{study.get('run')}/{study.get('study_dir') or 'study-' + study['kind']}"
    _check_model(out, study.get("model"), f"the study {key}")
    entry = out["studies"].setdefault(key, {"arms": {}, "commands": []})
    entry.update({"run": study.get("run"), "dir": study.get("study_dir"), "kind": study["kind"],
                  "name": study.get("name"), "variable": study.get("variable"), "rounds": study.get("rounds"),
                  "objective": study.get("objective"),
                  "reference": study.get("reference"), "threshold": study.get("threshold"),
                  "pool": study.get("pool")})
    failed = entry.setdefault("failed", {})
    for r in study["arms"]:
        arm = entry["arms"].setdefault(r["arm"], {"per_seed": {}})
        arm.update({"method": r["method"], "value": r["value"], "diagnostic": is_oracle(r["method"])})
        arm["per_seed"][str(r["seed"])] = seed_record(r)
        failed.pop(f"{r['arm']}/seed-{r['seed']}", None)
    for f in study.get("failed") or []:  # an arm that failed this time: its error line, until a rerun finishes it
        failed[f"{f['arm']}/seed-{f['seed']}"] = {"method": f["method"], "value": f["value"], "seed": f["seed"],
                                                 "error": f["error"], "run_dir": f.get("run_dir")}
    for arm in entry["arms"].values():
        _aggregate(arm)
    entry["values"] = sorted({a["value"] for a in entry["arms"].values()})
    stamp = now if now is not None else time.time()
    entry["commands"].append({"argv": None if command is None else " ".join(command), "seconds": seconds,
                              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)),
                              "seeds": sorted({r["seed"] for r in study["arms"]}),
                              "arms": sorted({r["arm"] for r in study["arms"]}),
                              "failed": sorted(f"{f['arm']}/seed-{f['seed']}" for f in study.get("failed") or [])})
    entry["updated"] = stamp
    out["headline"] = headline(out)
    return out


def study_for_plot(summary: dict, key: str) -> dict:
    """A study of the summary (``<run.name>/<study dir>``) in the shape :func:`attrpipe.report.plot_study` draws: one
    point per arm (mean accuracy over its seeds, its standard deviation; fractions, as a study manifest has them), so
    that a study's plot can be drawn again from summary.json alone, over every seed merged into it."""
    studies = summary.get("studies", {})
    if key not in studies:
        raise KeyError(f"no study {key!r} in the summary; it has: {', '.join(sorted(studies)) or 'none'}")
    entry = studies[key]

    def frac(st):
        return None if not st or st.get("mean") is None else st["mean"] / 100

    rows = [{"method": a["method"], "value": a["value"], "accuracy": frac(a.get("accuracy")),
             "accuracy_std": None if not a.get("accuracy") or a["accuracy"].get("std") is None
             else a["accuracy"]["std"] / 100, "sft_accuracy": frac(a.get("sft_accuracy")),
             "seeds": len(a.get("seeds", [])), "scored": _mean(r.get("scored") for r in a["per_seed"].values())}
            for a in entry["arms"].values()]
    rows.sort(key=lambda r: (r["method"], r["value"]))
    seeds = sorted({s for a in entry["arms"].values() for s in a.get("seeds", [])})
    return {"kind": entry["kind"], "seeds": seeds, "rounds": entry.get("rounds"), "summary": rows}


def run_record(path: str) -> dict:
    """What ``attrpipe results add`` keeps of a run that is not a study: an evaluation output (metrics.json: accuracy,
    answers that do not parse, accuracy of the parsed ones) or a loop run (loop.json: its evaluations, in order)."""
    from attrpipe.models.loader import model_identity
    from attrpipe.premise import parsed_accuracy

    metrics = storage.join(path, "metrics.json")
    if storage.exists(metrics):
        m = storage.read_json(metrics)
        return {"path": path, "kind": "evaluation", "model": model_identity(m.get("model")),
                "accuracy": _pct(m.get("accuracy")),
                "parse_failure_rate": _pct(m.get("parse_failure_rate")), "parsed_accuracy": _pct(parsed_accuracy(m)),
                "scored": m.get("scored"), "adapter": m.get("adapter")}
    loop = storage.join(path, "loop.json")
    if storage.exists(loop):
        m = storage.read_json(loop)
        evals = [s for s in m["stages"] if s.endswith("eval") and s in m["finished"]]
        fin = m["finished"]
        rounds = [{"stage": s.split("/")[0], "accuracy": _pct(fin[s].get("accuracy")),
                   "parse_failure_rate": _pct(fin[s].get("parse_failure_rate")),
                   "parsed_accuracy": _pct(parsed_accuracy(fin[s]))} for s in evals]
        pl = fin.get("round-1/pseudolabel", {})
        cfg_file = storage.join(path, "config.yaml")
        model = None
        if storage.exists(cfg_file):
            from omegaconf import OmegaConf

            model = model_identity(OmegaConf.create(storage.read_text(cfg_file)).get("model", {}).get("path"))
        return {"path": path, "kind": "loop", "model": model, "method": m.get("method"), "evaluations": rounds,
                "kept": pl.get("counts", {}).get("kept"), "pairs": pl.get("counts", {}).get("pairs"),
                "premise": _premise_pct(pl.get("premise")),
                "seconds": round(sum(v.get("seconds", 0) for v in fin.values()), 1)}
    raise FileNotFoundError(f"{path} holds neither metrics.json (an evaluation) nor loop.json (a loop run)")


# --- selecting arms across studies ------------------------------------------------------------------------------------


def _same_c(a, b) -> bool:
    return a is not None and b is not None and abs(float(a) - float(b)) < 1e-9


def _main_study(summary: dict, kind: str, run: str | None = None) -> dict | None:
    """The last updated study of a kind without ``study.name`` (of ``run`` when given)."""
    found = [s for s in summary.get("studies", {}).values()
             if s["kind"] == kind and s.get("name") is None and (run is None or s.get("run") == run)]
    return max(found, key=lambda s: s.get("updated", 0)) if found else None


def _select(summary: dict, run: str, *, methods, threshold, listings, rounds: int, seeds=None) -> list[dict]:
    """Per seed (one each, in seed order), the records of arms of ``run``'s default studies with these settings: a
    threshold study's arm at C and a pool-size study's arm at that pool are the same configuration, and either
    serves (pool-size studies first)."""
    found: dict[int, dict] = {}
    # a named study is a lever and may differ in any setting, so only the default studies serve; the diagnostic oracle
    # arms change nothing but how the chains are scored, so a named study may hold them (study.name=oracle)
    studies = sorted((s for s in summary.get("studies", {}).values() if s.get("run") == run),
                     key=lambda s: (s.get("name") is not None, s["kind"] != "pool-size", s.get("dir") or ""))
    for st in studies:
        for arm in st["arms"].values():
            if arm["method"] not in methods or (st.get("name") is not None and not is_oracle(arm["method"])):
                continue
            for seed, rec in arm["per_seed"].items():
                if seeds is not None and int(seed) not in seeds:
                    continue
                if (_same_c(rec.get("threshold"), threshold) and rec.get("listings") == listings
                        and rec.get("rounds") == rounds):
                    found.setdefault(int(seed), rec)
    return [found[s] for s in sorted(found)]


def _seeds(study: dict) -> list[int]:
    return sorted({int(s) for a in study["arms"].values() for s in a["per_seed"]})


def _listings(study: dict) -> list[int]:
    return sorted({r["listings"] for a in study["arms"].values() for r in a["per_seed"].values()
                   if r.get("listings") is not None})


def headline(summary: dict) -> dict:
    """The headline numbers, from the arms of the pool-size study (without ``study.name``). ``objective``: the
    preference method the study names its own (``study.objective``; the paper's DPO by default): the ``dpo`` entries
    of the pools are its arms'; ``dpo_oracle``, the largest pool's DPO-oracle (a diagnostic ceiling)."""
    out = {"n_seeds": None, "seed_sft": None, "seed_sft_fit": None, "seed_sft_vote": None, "objective": None,
           "smallest_pool": None, "largest_pool": None, "single_chain": None, "consensus_kept": None}
    src = _main_study(summary, "pool-size")
    if src is None:
        return out
    seeds, pools = _seeds(src), _listings(src)
    sft: dict = {}
    for a in src["arms"].values():
        for s, r in a["per_seed"].items():
            sft.setdefault(int(s), r)
    out["n_seeds"] = len(seeds)
    for key, field in (("seed_sft", "sft_accuracy"), ("seed_sft_fit", "sft_fit"), ("seed_sft_vote", "sft_vote")):
        out[key] = _mean(r.get(field) for r in sft.values())
    objective = src.get("objective") or "dpo"
    out["objective"] = objective

    def pool(n: int) -> dict:
        entry: dict = {"listings": n}
        kw = dict(threshold=src["threshold"], listings=n, rounds=src["rounds"], seeds=seeds)
        for key, m in (("dpo", objective), ("sl", "sl"), ("dpo_oracle", "dpo-oracle")):
            recs = _select(summary, src["run"], methods=(m,), **kw)
            entry[key] = ({"accuracy": _mean(r["accuracy"] for r in recs), "lift": _mean(r["lift"] for r in recs)}
                          if recs else None)
        prem = [r["premise"] for r in _select(summary, src["run"], methods=METHODS, **kw) if r.get("premise")]
        entry["single_chain"] = _mean(p["single_chain"] for p in prem)
        entry["consensus_kept"] = _mean(p["consensus_kept"] for p in prem)
        return entry

    if pools:
        out["smallest_pool"], out["largest_pool"] = pool(pools[0]), pool(pools[-1])
        # the premise on the configuration's pool (the largest), also at the top level
        out["single_chain"] = out["largest_pool"]["single_chain"]
        out["consensus_kept"] = out["largest_pool"]["consensus_kept"]
    return out


# --- files ------------------------------------------------------------------------------------------------------------


def load_summary(path: str) -> dict | None:
    return storage.read_json(path) if storage.exists(path) else None


def save_summary(path: str, summary: dict) -> None:
    storage.write_json_atomic(path, summary)


def update_summary(path: str, study: dict, *, command: list[str] | None = None, seconds: float | None = None) -> dict:
    """Merge a study into the summary at ``path`` (created if missing); return the new summary. Study commands run at
    once on one machine each merge their own arms (storage.locked)."""
    with storage.locked(path):
        summary = merge_study(load_summary(path), study, command=command, seconds=seconds)
        save_summary(path, summary)
    return summary


def add_run(path: str, run: str, label: str) -> dict:
    """Record a run that is not a study (``attrpipe results add``) in the summary at ``path``."""
    rec = run_record(run)
    with storage.locked(path):
        summary = copy.deepcopy(load_summary(path) or {"format": 1, "studies": {}, "runs": {}})
        summary["units"] = UNITS
        summary.setdefault("studies", {})
        _check_model(summary, rec.get("model"), f"the run {run}")
        rec["recorded_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        summary.setdefault("runs", {})[label] = rec
        summary["headline"] = headline(summary)
        save_summary(path, summary)
    return summary
