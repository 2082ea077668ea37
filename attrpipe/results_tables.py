"""The Markdown tables of a summary.json (attrpipe.results): Table 4, 5 and 6 shapes, the premise overall and per
attribute, the other studies and runs, the commands. ``attrpipe results tables`` prints them (:func:`tables_markdown`)
or writes them into the marked blocks of a document (:func:`fill_markers`), so that docs/results.md's tables are never
typed by hand. Pure.
"""

from __future__ import annotations

import re

from attrpipe.methods import METHODS, is_oracle, method_label
from attrpipe.results import (TABLES, _PREMISE_FIELDS, _listings, _main_study, _seeds, _select, _stat, headline)

__all__ = ["render_tables", "tables_markdown", "fill_markers"]


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
              "greedy answers that do not parse %", "accuracy of the parsed answers %", "vote of the chains %",
              "of the seed SFT's greedy-to-vote gap, closed %", "own seed split right (fit) %", "kept", "pairs"]
    rows = []
    zs = summary.get("runs", {}).get("zero-shot")
    if zs:
        rows.append(["pretrained model, no adapter (zero-shot)", "-", _fmt({"mean": zs.get("accuracy")}), "",
                     _fmt({"mean": zs.get("parse_failure_rate")}), _fmt({"mean": zs.get("parsed_accuracy")}),
                     "", "", "", "", ""])
    else:
        rows.append(["pretrained model, no adapter (zero-shot)", "-", "not recorded", *[""] * 8])
    rows.append(["seed SFT", str(len(base)), _fmt(_over(base, "sft_accuracy")), "",
                 _fmt(_over(base, "sft_parse_failure_rate")), _fmt(_over(base, "sft_parsed_accuracy")),
                 _fmt(_over(base, "sft_vote")), "", _fmt(_over(base, "sft_fit")), "", ""])
    for m in _ROW_ORDER:
        recs = by.get(m) or []
        if not recs:
            if m in ("dpo", "sl", "dpo-oracle", "sl-oracle"):
                rows.append([method_label(m), "0", "not run", *[""] * 8])
            continue
        rows.append([method_label(m), str(len(recs)), _fmt(_over(recs, "accuracy")),
                     _fmt(_over(recs, "lift"), signed=True), _fmt(_over(recs, "parse_failure_rate")),
                     _fmt(_over(recs, "parsed_accuracy")), _fmt(_over(recs, "vote")), _fmt(_over(recs, "gap_closed")),
                     "", _count(_over(recs, "kept")), _count(_over(recs, "pairs"))])
    caption = (f"{n} unlabeled listings, C >= {src['threshold']}, {src['rounds']} round(s); mean ± standard deviation "
               f"over seeds {', '.join(map(str, seeds))}. Vote: the consensus of the sampled chains on the test split, "
               "scored like the greedy answer; gap closed: (accuracy - the seed SFT's) / (the seed SFT's vote - its "
               "greedy accuracy), per seed (n/a where the vote is not above the greedy answer); fit: the seed SFT's "
               "greedy accuracy on its own labeled seed split. " + _ORACLE_NOTE)
    return _table(header, rows) + "\n\n" + caption


# the order of the method rows and columns; the paper's two always, the others where they ran
_ROW_ORDER = ("sl", "dpo", "dpo-nll", "scpo", "dpo-oracle", "sl-oracle")


def _methods_run(groups) -> list[str]:
    """DPO and SL, then every other method some group of records ran, in :data:`_ROW_ORDER`."""
    return [m for m in ("dpo", "sl", *_ROW_ORDER[2:]) if m in ("dpo", "sl") or any(by.get(m) for by in groups)]


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
    methods = _methods_run([by for _, by in rows_by_c])
    every = [r for _, by in rows_by_c for recs in by.values() for r in recs]
    header = ["C", "seeds", f"kept of {_count(_over(every, 'listing_attributes'))}", "kept consensus right %",
              "pairs", *_method_columns(methods)]
    rows = []
    for c, by in rows_by_c:
        method_recs = by["dpo"] or by["sl"]  # kept and pairs of the consensus (an oracle arm keeps by the truth)
        any_recs = [r for recs in by.values() for r in recs]  # the premise is the chains', whatever the method
        cells = [f"{c:g}", _seed_list({m: by.get(m) or [] for m in methods}), _count(_over(method_recs, "kept")),
                 _fmt(_premise_over(_one_per_seed(any_recs), "consensus_kept")), _count(_over(method_recs, "pairs"))]
        for m in methods:
            recs = by.get(m)
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
    methods = _methods_run([by for _, by in per_pool])
    header = ["unlabeled listings", "seeds", "listing-attributes", f"kept (C >= {src['threshold']})", "pairs"]
    for m in methods:
        header += [f"{method_label(m)} accuracy %", f"{method_label(m)} lift (points)"]
    rows = []
    for n, by in per_pool:
        base = by["dpo"] or by["sl"]
        cells = [f"{n:,}", _seed_list({m: by.get(m) or [] for m in methods}), _count(_over(base, "listing_attributes")),
                 _count(_over(base, "kept")), _count(_over(base, "pairs"))]
        for m in methods:
            cells += ([_fmt(_over(by[m], "accuracy")), _fmt(_over(by[m], "lift"), signed=True)] if by.get(m)
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
                     _fmt(_premise_over(recs, "pairs_away_from_truth")),
                     _fmt(_premise_over(recs, "greedy")), _fmt(_premise_over(recs, "greedy_kept")),
                     _fmt(_premise_over(recs, "vote_over_greedy"), signed=True),
                     _fmt(_over(recs, "sft_accuracy")), _fmt(_over(recs, "sft_parsed_accuracy"))])
    if not rows:
        return None
    header = ["unlabeled listings", "C", "seeds", "a parsed chain right %", "kept consensus right %",
              "gain (points)", "a parsed chain right, on the kept %", "of the gain, the vote (points)",
              "pairs toward the truth %", "pairs away from the truth %", "the sampling adapter's greedy answer on "
              "the pool right %", "its greedy answer, on the kept %", "kept consensus over that greedy answer "
              "(points)", "seed SFT test accuracy %, all answers", "seed SFT, parsed answers %"]
    caption = ("Round 1's chains on the pool's true labels (data.truth): a parsed chain's accuracy (unparsed chains "
               "left out), the accuracy of the consensus among the kept at C, the gain between them. The gain has two "
               "parts: keeping the confident listing-attributes (a parsed chain is right more often on the kept) and "
               "the vote (the kept consensus against a parsed chain on the same kept listing-attributes). Pairs "
               "toward the truth: the consensus is the truth and the rejected chain's answer is not; away from it: "
               "the rejected chain had the truth (shares of all pairs; the rest reject a wrong or unparsed answer for "
               "another wrong one or an unparsed one). The sampling adapter's greedy answer on the same pool "
               "listing-attributes (all, and the kept), and the kept consensus against it on the kept: what the vote "
               "knows beyond the model's own answer, which is what DPO on consensus pairs can distill (against a "
               "sampled chain the kept consensus looks better than that, since keeping the confident ones selects "
               "what the greedy answer already gets right). Beside them the seed SFT's greedy accuracy on the test "
               "split. "
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


