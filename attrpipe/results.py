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
                   "commands": [{"argv", "seconds", "finished_at", "seeds", "arms"}],
                   "arms": {"<arm>": {"method", "value", "diagnostic", "seeds",
                                      "per_seed": {"<seed>": {accuracy, lift, sft_accuracy, parsed_accuracy,
                                                              kept, pairs, listings, threshold, rounds, premise,
                                                              seconds, ...}},
                                      "accuracy": {"mean", "std", "n"}, "lift": {...}, ..., "premise": {...}}}}},
     "runs": {"<label>": {...}},      # attrpipe results add (e.g. "zero-shot")
     "headline": {"n_seeds", "seed_sft", "smallest_pool", "largest_pool"}}

``headline`` is computed from the arms of the pool-size study (the one without ``study.name``): the number of seeds,
the seed SFT's mean accuracy, and for the smallest and the largest pool the mean accuracy and lift of DPO and SL and
the premise (a parsed chain's accuracy, the kept consensus's). Everything here is pure but :func:`load_summary`,
:func:`save_summary`, :func:`update_summary` and :func:`add_run`.
"""

from __future__ import annotations

import copy
import math
import re
import time

from attrpipe import storage
from attrpipe.methods import METHODS, is_oracle, method_label

__all__ = ["UNITS", "SummaryModelMismatch", "check_summary_model", "seed_record", "merge_study", "headline",
           "render_tables", "fill_markers", "run_record", "load_summary", "save_summary", "update_summary", "add_run",
           "study_for_plot", "TABLES"]

UNITS = ("accuracies and shares in percent; lifts and gains in points; kept, pairs and listings are counts (means "
         "over seeds); seconds are wall-clock")
TABLES = ("table-4", "table-5", "table-6", "premise", "premise-per-attribute", "other-studies", "other-runs",
          "commands")

_STAT_FIELDS = ("accuracy", "lift", "sft_accuracy", "parse_failure_rate", "parsed_accuracy", "sft_parse_failure_rate",
                "sft_parsed_accuracy", "kept", "pairs", "listings", "listing_attributes", "seconds")
_PREMISE_PCT = ("single_chain", "consensus_kept", "gain", "single_chain_kept", "selection", "vote",
                "pairs_toward_truth", "pairs_away_from_truth")
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


def seed_record(arm_result: dict) -> dict:
    """One arm's values on one seed, in percent, from a study's arm row (attrpipe.study._arm_result)."""
    r = arm_result
    acc, sft = r.get("accuracy"), r.get("sft_accuracy")
    return {"method": r["method"], "seed": r["seed"], "value": r["value"], "threshold": r.get("threshold"),
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
                  "reference": study.get("reference"), "threshold": study.get("threshold"),
                  "pool": study.get("pool")})
    for r in study["arms"]:
        arm = entry["arms"].setdefault(r["arm"], {"per_seed": {}})
        arm.update({"method": r["method"], "value": r["value"], "diagnostic": is_oracle(r["method"])})
        arm["per_seed"][str(r["seed"])] = seed_record(r)
    for arm in entry["arms"].values():
        _aggregate(arm)
    entry["values"] = sorted({a["value"] for a in entry["arms"].values()})
    stamp = now if now is not None else time.time()
    entry["commands"].append({"argv": None if command is None else " ".join(command), "seconds": seconds,
                              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)),
                              "seeds": sorted({r["seed"] for r in study["arms"]}),
                              "arms": sorted({r["arm"] for r in study["arms"]})})
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
             else a["accuracy"]["std"] / 100, "sft_accuracy": frac(a.get("sft_accuracy"))}
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
    """The headline numbers, from the arms of the pool-size study (without ``study.name``)."""
    out = {"n_seeds": None, "seed_sft": None, "smallest_pool": None, "largest_pool": None, "single_chain": None,
           "consensus_kept": None}
    src = _main_study(summary, "pool-size")
    if src is None:
        return out
    seeds, pools = _seeds(src), _listings(src)
    sft = {}
    for a in src["arms"].values():
        for s, r in a["per_seed"].items():
            sft.setdefault(int(s), r.get("sft_accuracy"))
    out["n_seeds"] = len(seeds)
    out["seed_sft"] = _mean(sft.values())

    def pool(n: int) -> dict:
        entry: dict = {"listings": n}
        kw = dict(threshold=src["threshold"], listings=n, rounds=src["rounds"], seeds=seeds)
        for m in ("dpo", "sl"):
            recs = _select(summary, src["run"], methods=(m,), **kw)
            entry[m] = ({"accuracy": _mean(r["accuracy"] for r in recs), "lift": _mean(r["lift"] for r in recs)}
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


# --- Markdown ---------------------------------------------------------------------------------------------------------


def _fmt(st: dict | None, *, signed: bool = False, unit: str = "") -> str:
    if not st or st.get("mean") is None:
        return "n/a"
    f = "{:+.1f}" if signed else "{:.1f}"
    s = f.format(st["mean"])
    if st.get("std") is not None:
        s += f" ± {st['std']:.1f}"
    return s + unit


def _count(st: dict | None) -> str:
    return "n/a" if not st or st.get("mean") is None else f"{st['mean']:,.0f}"


def _over(recs: list[dict], field: str) -> dict:
    return _stat(r.get(field) for r in recs)


def _premise_over(recs: list[dict], field: str) -> dict:
    """A premise field's mean and spread over ``recs``; none when a seed lacks it (measured before the field existed),
    so that a mean is never over fewer seeds than its row lists."""
    xs = [(r.get("premise") or {}).get(field) for r in recs]
    return _stat([] if any(x is None for x in xs) else xs)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _one_per_seed(recs: list[dict]) -> list[dict]:
    seen: dict[int, dict] = {}
    for r in recs:
        seen.setdefault(r["seed"], r)
    return [seen[s] for s in sorted(seen)]


def _seed_list(recs_by_method: dict[str, list[dict]]) -> str:
    seeds = sorted({r["seed"] for recs in recs_by_method.values() for r in recs})
    return ", ".join(str(s) for s in seeds) or "n/a"


_ORACLE_NOTE = ("The oracle rows are diagnostic ceilings, never the method: the same chains scored against the true "
                "labels instead of their consensus (preferred = the chains whose answer is the truth, C = their share, "
                "the same threshold and pairing), then trained exactly as DPO / SL are.")


def _table4(summary: dict) -> str | None:
    src = _main_study(summary, "pool-size")
    if src is None or not _listings(src):
        return None
    n, seeds = _listings(src)[-1], _seeds(src)
    kw = dict(threshold=src["threshold"], listings=n, rounds=src["rounds"], seeds=seeds)
    by = {m: _select(summary, src["run"], methods=(m,), **kw) for m in METHODS}
    base = _select(summary, src["run"], methods=METHODS, **kw)
    header = ["model", "seeds", "test accuracy %", "lift over the seed SFT (points)",
              "greedy answers that do not parse %", "accuracy of the parsed answers %", "kept", "pairs"]
    rows = []
    zs = summary.get("runs", {}).get("zero-shot")
    if zs:
        rows.append(["pretrained model, no adapter (zero-shot)", "-", _fmt({"mean": zs.get("accuracy")}), "",
                     _fmt({"mean": zs.get("parse_failure_rate")}), _fmt({"mean": zs.get("parsed_accuracy")}), "", ""])
    else:
        rows.append(["pretrained model, no adapter (zero-shot)", "-", "not recorded", "", "", "", "", ""])
    rows.append(["seed SFT", str(len(base)), _fmt(_over(base, "sft_accuracy")), "",
                 _fmt(_over(base, "sft_parse_failure_rate")), _fmt(_over(base, "sft_parsed_accuracy")), "", ""])
    for m in ("sl", "dpo", "dpo-oracle", "sl-oracle"):
        recs = by[m]
        if not recs:
            rows.append([method_label(m), "0", "not run", "", "", "", "", ""])
            continue
        rows.append([method_label(m), str(len(recs)), _fmt(_over(recs, "accuracy")),
                     _fmt(_over(recs, "lift"), signed=True), _fmt(_over(recs, "parse_failure_rate")),
                     _fmt(_over(recs, "parsed_accuracy")), _count(_over(recs, "kept")), _count(_over(recs, "pairs"))])
    caption = (f"{n} unlabeled listings, C >= {src['threshold']}, {src['rounds']} round(s); mean ± standard deviation "
               f"over seeds {', '.join(map(str, seeds))}. " + _ORACLE_NOTE)
    return _table(header, rows) + "\n\n" + caption


def _method_columns(methods: list[str]) -> list[str]:
    return [f"{method_label(m)} accuracy % (lift)" for m in methods]


def _table5(summary: dict) -> str | None:
    src = _main_study(summary, "threshold")
    if src is None or not _listings(src):
        return None
    n, seeds = _listings(src)[-1], _seeds(src)
    cs = set(src["values"])
    pool = _main_study(summary, "pool-size", src["run"])
    if pool is not None and pool.get("threshold") is not None:
        cs.add(pool["threshold"])  # its arms at this pool are the same configuration
    rows_by_c = []
    for c in sorted(cs):
        kw = dict(threshold=c, listings=n, rounds=src["rounds"], seeds=seeds)
        by = {m: _select(summary, src["run"], methods=(m,), **kw) for m in METHODS}
        if any(by.values()):
            rows_by_c.append((c, by))
    if not rows_by_c:
        return None
    methods = [m for m in ("dpo", "sl", "dpo-oracle", "sl-oracle")
               if m in ("dpo", "sl") or any(by.get(m) for _, by in rows_by_c)]
    every = [r for _, by in rows_by_c for recs in by.values() for r in recs]
    header = ["C", "seeds", f"kept of {_count(_over(every, 'listing_attributes'))}", "kept consensus right %",
              "pairs", *_method_columns(methods)]
    rows = []
    for c, by in rows_by_c:
        method_recs = by["dpo"] or by["sl"]  # kept and pairs of the consensus (an oracle arm keeps by the truth)
        any_recs = [r for recs in by.values() for r in recs]  # the premise is the chains', whatever the method
        cells = [f"{c:g}", _seed_list({m: by[m] for m in methods}), _count(_over(method_recs, "kept")),
                 _fmt(_premise_over(_one_per_seed(any_recs), "consensus_kept")), _count(_over(method_recs, "pairs"))]
        for m in methods:
            recs = by[m]
            cells.append("not run" if not recs else
                         f"{_fmt(_over(recs, 'accuracy'))} ({_fmt(_over(recs, 'lift'), signed=True)})")
        rows.append(cells)
    caption = f"{n} unlabeled listings, {src['rounds']} round(s); mean ± standard deviation over the seeds listed."
    if any(is_oracle(m) for m in methods):
        caption += " " + _ORACLE_NOTE
    return _table(header, rows) + "\n\n" + caption


def _table6(summary: dict) -> str | None:
    src = _main_study(summary, "pool-size")
    if src is None or not _listings(src):
        return None
    seeds = _seeds(src)
    per_pool = []
    for n in _listings(src):
        kw = dict(threshold=src["threshold"], listings=n, rounds=src["rounds"], seeds=seeds)
        per_pool.append((n, {m: _select(summary, src["run"], methods=(m,), **kw) for m in METHODS}))
    methods = [m for m in ("dpo", "sl", "dpo-oracle", "sl-oracle")
               if m in ("dpo", "sl") or any(by.get(m) for _, by in per_pool)]
    header = ["unlabeled listings", "seeds", "listing-attributes", f"kept (C >= {src['threshold']})", "pairs"]
    for m in methods:
        header += [f"{method_label(m)} accuracy %", f"{method_label(m)} lift (points)"]
    rows = []
    for n, by in per_pool:
        base = by["dpo"] or by["sl"]
        cells = [f"{n:,}", _seed_list({m: by[m] for m in methods}), _count(_over(base, "listing_attributes")),
                 _count(_over(base, "kept")), _count(_over(base, "pairs"))]
        for m in methods:
            cells += ([_fmt(_over(by[m], "accuracy")), _fmt(_over(by[m], "lift"), signed=True)] if by[m]
                      else ["not run", ""])
        rows.append(cells)
    caption = (f"C >= {src['threshold']}, {src['rounds']} round(s); mean ± standard deviation over the seeds listed; "
               "kept and pairs are means.")
    if any(is_oracle(m) for m in methods):
        caption += " " + _ORACLE_NOTE
    return _table(header, rows) + "\n\n" + caption


def _premise_configs(summary: dict) -> list[tuple[str, float, int, int, list[int]]]:
    """(run, C, listings, rounds, seeds) of the pool-size study's pools and the threshold study's values."""
    out = []
    pool = _main_study(summary, "pool-size")
    if pool is not None:
        out += [(pool["run"], pool["threshold"], n, pool["rounds"], _seeds(pool)) for n in _listings(pool)]
    thr = _main_study(summary, "threshold")
    if thr is not None and _listings(thr):
        out += [(thr["run"], c, _listings(thr)[-1], thr["rounds"], _seeds(thr)) for c in thr["values"]]
    seen, unique = set(), []
    for run, c, n, rounds, seeds in out:
        if (run, round(float(c), 9), n) not in seen:
            seen.add((run, round(float(c), 9), n))
            unique.append((run, c, n, rounds, seeds))
    return unique


def _premise_table(summary: dict) -> str | None:
    rows = []
    for run, c, n, rounds, seeds in _premise_configs(summary):
        recs = [r for r in _select(summary, run, methods=METHODS, threshold=c, listings=n, rounds=rounds, seeds=seeds)
                if r.get("premise")]
        if not recs:
            continue
        rows.append([f"{n:,}", f"{c:g}", ", ".join(str(r["seed"]) for r in recs),
                     _fmt(_premise_over(recs, "single_chain")), _fmt(_premise_over(recs, "consensus_kept")),
                     _fmt(_premise_over(recs, "gain"), signed=True), _fmt(_premise_over(recs, "single_chain_kept")),
                     _fmt(_premise_over(recs, "vote"), signed=True), _fmt(_premise_over(recs, "pairs_toward_truth")),
                     _fmt(_premise_over(recs, "pairs_away_from_truth")), _fmt(_over(recs, "sft_accuracy")),
                     _fmt(_over(recs, "sft_parsed_accuracy"))])
    if not rows:
        return None
    header = ["unlabeled listings", "C", "seeds", "a parsed chain right %", "kept consensus right %",
              "gain (points)", "a parsed chain right, on the kept %", "of the gain, the vote (points)",
              "pairs toward the truth %", "pairs away from the truth %", "seed SFT test accuracy %, all answers",
              "seed SFT, parsed answers %"]
    caption = ("Round 1's chains on the pool's true labels (data.truth): a parsed chain's accuracy (unparsed chains "
               "left out), the accuracy of the consensus among the kept at C, the gain between them. The gain has two "
               "parts: keeping the confident listing-attributes (a parsed chain is right more often on the kept) and "
               "the vote (the kept consensus against a parsed chain on the same kept listing-attributes). Pairs "
               "toward the truth: the consensus is the truth and the rejected chain's answer is not; away from it: "
               "the rejected chain had the truth (shares of all pairs; the rest reject a wrong or unparsed answer for "
               "another wrong one or an unparsed one). Beside them the seed SFT's greedy accuracy on the test split. "
               "Mean ± standard deviation over the seeds listed; n/a: measured before these columns existed.")
    return _table(header, rows) + "\n\n" + caption


def _premise_per_attribute(summary: dict) -> str | None:
    pool = _main_study(summary, "pool-size")
    configs = _premise_configs(summary)
    if pool is not None and _listings(pool):  # the largest pool of the pool-size study
        configs = [(pool["run"], pool["threshold"], _listings(pool)[-1], pool["rounds"], _seeds(pool))]
    for run, c, n, rounds, seeds in configs:
        prem = [r["premise"] for r in _select(summary, run, methods=METHODS, threshold=c, listings=n, rounds=rounds,
                                              seeds=seeds) if r.get("premise")]
        if not prem:
            continue
        attrs = sorted({a for p in prem for a in p.get("per_attribute", {})})
        rows = []
        for a in attrs:
            vals = [p["per_attribute"].get(a, {}) for p in prem]
            col = {f: _stat(v.get(f) for v in vals) for f in _PREMISE_FIELDS}
            rows.append([a, _count(col["examples"]), _fmt(col["single_chain"]), _count(col["kept"]),
                         _fmt(col["consensus_kept"]), _fmt(col["gain"], signed=True),
                         _fmt(col["single_chain_kept"]), _fmt(col["vote"], signed=True)])
        header = ["attribute", "listing-attributes", "a parsed chain right %", f"kept (C >= {c:g})",
                  "kept consensus right %", "gain (points)", "a parsed chain right, on the kept %",
                  "of the gain, the vote (points)"]
        return (_table(header, rows) + f"\n\n{n:,} unlabeled listings, round 1; mean ± standard deviation over "
                f"{len(prem)} seed(s).")
    return None


def _used_keys(summary: dict) -> set[str]:
    keys = set()
    for kind in ("pool-size", "threshold"):
        st = _main_study(summary, kind)
        if st is not None:
            keys.add(f"{st.get('run')}/{st.get('dir')}")
    return keys


def _other_studies(summary: dict) -> str | None:
    parts = []
    used = _used_keys(summary)
    for key, st in sorted(summary.get("studies", {}).items()):
        if key in used:
            continue
        rows = []
        for name, arm in sorted(st["arms"].items(), key=lambda kv: (kv[1]["value"], kv[1]["method"])):
            recs = [arm["per_seed"][s] for s in sorted(arm["per_seed"], key=int)]
            n_rounds = max(len(r.get("per_round") or []) for r in recs)
            by_round = " / ".join(_fmt(_stat(r["per_round"][i] if i < len(r.get("per_round") or []) else None
                                             for r in recs)) for i in range(n_rounds))
            rows.append([name, method_label(arm["method"]), ", ".join(map(str, arm["seeds"])), by_round,
                         _fmt(arm.get("accuracy")), _fmt(arm.get("lift"), signed=True), _count(arm.get("kept")),
                         _count(arm.get("pairs")), _fmt((arm.get("premise") or {}).get("consensus_kept"))])
        header = ["arm", "method", "seeds", "accuracy by round % (seed SFT first)", "final accuracy %",
                  "lift (points)", "kept (round 1)", "pairs (round 1)", "kept consensus right %"]
        parts.append(f"**{key}** ({st['kind']}, {st.get('rounds')} round(s), reference {st.get('reference')})\n\n"
                     + _table(header, rows))
    return "\n\n".join(parts) if parts else None


def _other_runs(summary: dict) -> str | None:
    """The runs recorded with ``attrpipe results add`` other than the zero-shot evaluation (Table 4 shows that one):
    an evaluation's accuracy, or a loop run's accuracy by round with the last round's form and parsed accuracy."""
    rows = []
    for label, r in sorted(summary.get("runs", {}).items()):
        if label == "zero-shot":
            continue
        if r.get("kind") == "loop":
            evals = r.get("evaluations") or []
            last = evals[-1] if evals else {}
            acc = " / ".join(_fmt({"mean": e.get("accuracy")}) for e in evals) or "n/a"
            kind = f"loop ({method_label(r['method'])})" if r.get("method") else "loop"
        else:
            last, acc, kind = r, _fmt({"mean": r.get("accuracy")}), "evaluation"
        rows.append([label, kind, acc, _fmt({"mean": last.get("parse_failure_rate")}),
                     _fmt({"mean": last.get("parsed_accuracy")}), f"`{r.get('path', '')}`"])
    if not rows:
        return None
    return _table(["run", "kind", "test accuracy % (a loop's by round, seed SFT first)",
                   "greedy answers that do not parse %", "accuracy of the parsed answers %", "recorded from"], rows)


def _commands(summary: dict) -> str | None:
    rows = []
    for key, st in sorted(summary.get("studies", {}).items()):
        for c in st.get("commands", []):
            secs = "n/a" if c.get("seconds") is None else f"{c['seconds']:,.0f}"
            rows.append([key, f"`{c['argv']}`" if c.get("argv") else "n/a", secs, c.get("finished_at", "")])
    if not rows:
        return None
    return _table(["study or run", "command", "wall time (s)", "finished (UTC)"], rows)


def render_tables(summary: dict) -> dict[str, str]:
    """The Markdown tables of a summary, by name (:data:`TABLES`); a table with nothing to show is left out."""
    makers = {"table-4": _table4, "table-5": _table5, "table-6": _table6, "premise": _premise_table,
              "premise-per-attribute": _premise_per_attribute, "other-studies": _other_studies,
              "other-runs": _other_runs, "commands": _commands}
    out = {}
    for name in TABLES:
        t = makers[name](summary)
        if t:
            out[name] = t
    return out


_TITLES = {"table-4": "Table 4 shape: methods (the largest pool)", "table-5": "Table 5 shape: the threshold C",
           "table-6": "Table 6 shape: the unlabeled pool", "premise": "The premise",
           "premise-per-attribute": "The premise per attribute", "other-studies": "Other studies",
           "other-runs": "Other runs", "commands": "Commands and wall times"}


def tables_markdown(summary: dict) -> str:
    """Every table, each under a heading (what ``attrpipe results tables`` prints)."""
    parts = []
    h = summary.get("headline") or headline(summary)
    parts.append("headline: " + ", ".join(f"{k} {v}" for k, v in h.items() if not isinstance(v, dict))
                 if h.get("n_seeds") is not None else "headline: no pool-size study in the summary")
    for name, t in render_tables(summary).items():
        parts.append(f"## {_TITLES[name]}\n\n<!-- results:{name} -->\n{t}\n<!-- /results:{name} -->")
    return "\n\n".join(parts) + "\n"


_BLOCK = re.compile(r"(<!-- results:([\w-]+) -->\n)(.*?)(<!-- /results:\2 -->)", re.S)


def fill_markers(text: str, tables: dict[str, str]) -> str:
    """Replace every ``<!-- results:NAME -->`` ... ``<!-- /results:NAME -->`` block of ``text`` with table NAME."""
    def sub(m: re.Match) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise ValueError(f"unknown results table {name!r}; one of {', '.join(TABLES)}")
        body = tables.get(name, "(not measured: nothing in the summary for this table)")
        return f"{m.group(1)}{body}\n{m.group(4)}"

    return _BLOCK.sub(sub, text)


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
