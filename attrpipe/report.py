"""Static HTML reports with PNG plots (matplotlib, Agg backend: no display needed).

``attrpipe report RUN_DIR [RUN_DIR ...]`` writes ``<first RUN_DIR>/report/index.html`` and its PNGs:

- accuracy by round, one line per loop run (DPO and SL side by side when both ran: several run directories, or the
  arms of a study);
- accuracy by vertical after the seed SFT and after the last round;
- the distribution of the confidence C of each round's pseudo-labels;
- calibration of the consensus: how often the consensus label is right at each C, measured on the labeled slice of
  the unlabeled pool named by ``data.truth`` (listing_id + labels; a synthetic catalog has one for every listing);
- the premise of each round, where ``data.truth`` exists (attrpipe.premise): a parsed chain's accuracy on the pool,
  the kept consensus's, the gain, beside the sampling adapter's greedy test accuracy; per attribute for round 1;
- the curves of any study under the run directory (``study-*/study.json``).

The oracle arms (``dpo-oracle``, ``sl-oracle``) are named as diagnostic ceilings wherever they appear.

The numbers come from the runs' manifests (loop.json, study.json) and pseudo-labeling shards; nothing is recomputed
by a model. Pure helpers (:func:`calibration_table`, :func:`round_series`) are unit-tested without plotting.
"""

from __future__ import annotations

import html
import io
import math
from collections import defaultdict

from attrpipe import storage
from attrpipe.methods import METHODS, is_oracle, method_label

__all__ = ["calibration_table", "round_series", "standard_error", "plot_study", "write_report"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, dest: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    storage.write_bytes_atomic(dest, buf.getvalue())


# --- pure helpers -----------------------------------------------------------------------------------------------------


def calibration_table(rows, truth: dict[str, dict[str, str]]) -> list[dict]:
    """Per distinct C: examples with a consensus and a true label, how many consensus labels are right, accuracy.
    ``rows``: consensus rows (listing_id, attribute, consensus, confidence); rows without a label are skipped."""
    acc: dict[float, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        label = truth.get(r["listing_id"], {}).get(r["attribute"])
        if label is None or r["consensus"] is None:
            continue
        c = round(float(r["confidence"]), 6)
        acc[c][0] += r["consensus"] == label
        acc[c][1] += 1
    return [{"confidence": c, "right": a, "n": n, "accuracy": a / n} for c, (a, n) in sorted(acc.items())]


def standard_error(accuracy: float | None, *, scored: int | None = None, std: float | None = None,
                   seeds: int = 1) -> float:
    """The standard error of a plotted accuracy (a fraction): over two seeds or more, the standard error of their mean
    (``std / sqrt(seeds)``); from one evaluation, the binomial one (``sqrt(p (1 - p) / scored)``); 0 when neither is
    known. A plot draws it so that a difference inside it does not read as a rise."""
    if accuracy is None:
        return 0.0
    if seeds >= 2 and std is not None:
        return std / math.sqrt(seeds)
    if scored:
        return math.sqrt(accuracy * (1 - accuracy) / scored)
    return 0.0


def _evaluations(manifest: dict) -> list[tuple[str, dict]]:
    """(stage label, its result) of a loop manifest's finished evaluations, in stage order: ``sft``, ``round-1``, ..."""
    return [(name.split("/")[0], manifest["finished"][name]) for name in manifest["stages"]
            if name.endswith("eval") and name in manifest["finished"]]


def round_series(manifest: dict) -> tuple[list[str], list[float | None]]:
    """(stage labels, accuracies) of a loop manifest's evaluations, in stage order: ``sft``, ``round-1``, ..."""
    evals = _evaluations(manifest)
    return [label for label, _ in evals], [e.get("accuracy") for _, e in evals]


# --- plots ----------------------------------------------------------------------------------------------------------


_STYLES = {"dpo": "o-", "sl": "s--", "dpo-nll": "D-", "scpo": "P-", "dpo-oracle": "^:", "sl-oracle": "v:"}


def plot_study(study: dict, dest: str) -> None:
    """Accuracy against the study's variable, one line per method (mean over seeds, bars: its standard error,
    :func:`standard_error`), SFT dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    summary = study["summary"]
    for method in METHODS:
        pts = [r for r in summary if r["method"] == method and r["accuracy"] is not None]
        if pts:
            ax.errorbar([r["value"] for r in pts], [100 * r["accuracy"] for r in pts],
                        yerr=[100 * standard_error(r["accuracy"], scored=r.get("scored"), std=r.get("accuracy_std"),
                                                   seeds=r.get("seeds") or 1) for r in pts],
                        fmt=_STYLES.get(method, "o-"), capsize=3,
                        label=method_label(method), alpha=0.6 if is_oracle(method) else 1.0)
    sft = [r["sft_accuracy"] for r in summary if r["sft_accuracy"] is not None]
    if sft:
        ax.axhline(100 * sum(sft) / len(sft), color="grey", linestyle=":", label="seed SFT")
    ax.set_xlabel("consensus threshold C" if study["kind"] == "threshold" else "unlabeled listings")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"study: {study['kind']} ({len(study['seeds'])} seed(s), {study['rounds']} round(s))")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, dest)


def _plot_rounds(runs: list[tuple[str, dict]], dest: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, m in runs:
        evals = _evaluations(m)
        labels = [label for label, _ in evals]
        pts = [(i, 100 * e["accuracy"], 100 * standard_error(e["accuracy"], scored=e.get("scored")))
               for i, (_, e) in enumerate(evals) if e.get("accuracy") is not None]
        if pts:
            method = m.get("method", "")
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                        fmt=_STYLES.get(method, "o-"), capsize=3,
                        label=f"{name} ({method_label(method)})" if method else name)
            ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("test accuracy (%), bars: one standard error")
    ax.set_title("accuracy by round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, dest)


def _plot_verticals(m: dict, dest: str) -> None:
    plt = _plt()
    evals = [s for s in m["stages"] if s.endswith("eval") and s in m["finished"]]
    first, last = m["finished"][evals[0]], m["finished"][evals[-1]]
    verticals = sorted(set(first.get("per_vertical", {})) | set(last.get("per_vertical", {})))
    fig, ax = plt.subplots(figsize=(max(6.4, 0.7 * len(verticals)), 4.2))
    xs = range(len(verticals))
    for off, e, lab in ((-0.2, first, evals[0].split("/")[0]), (0.2, last, evals[-1].split("/")[0])):
        ax.bar([x + off for x in xs], [100 * (e.get("per_vertical", {}).get(v) or 0) for v in verticals], width=0.4,
               label=lab)
    ax.set_xticks(list(xs), verticals, rotation=40, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy by vertical")
    ax.legend()
    _save(fig, dest)


def _consensus_rows(pl_dir: str) -> list[dict]:
    d = storage.join(pl_dir, "consensus")
    if not storage.list_files(d, ".parquet"):
        return []
    cols = ["listing_id", "vertical", "attribute", "consensus", "confidence", "chains"]
    return storage.read_parquet(d, columns=cols).to_pylist()


def _plot_confidence(per_round: dict[str, list[dict]], dest: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for rnd, rows in per_round.items():
        cs = [r["confidence"] for r in rows]
        if cs:
            ax.hist(cs, bins=[i / 7 - 1 / 14 for i in range(9)], alpha=0.5, label=f"{rnd} ({len(cs)})")
    ax.set_xlabel("confidence C (share of chains agreeing with the consensus)")
    ax.set_ylabel("listing-attributes")
    ax.set_title("distribution of C")
    ax.legend(fontsize=8)
    _save(fig, dest)


def _plot_calibration(tables: dict[str, list[dict]], dest: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for rnd, table in tables.items():
        if table:
            ax.plot([t["confidence"] for t in table], [100 * t["accuracy"] for t in table], "o-", label=rnd)
    ax.plot([0, 1], [0, 100], ":", color="grey", label="accuracy = C")
    ax.set_xlabel("confidence C")
    ax.set_ylabel("consensus labels right (%)")
    ax.set_title("calibration of consensus")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 102)
    ax.legend(fontsize=8)
    _save(fig, dest)


# --- the report -----------------------------------------------------------------------------------------------------


def _loop_runs(run_dir: str) -> list[tuple[str, str]]:
    """(name, directory) of the loop runs at or under a run directory: itself, or a study's arms."""
    if storage.exists(storage.join(run_dir, "loop.json")):
        return [(run_dir.rstrip("/").rsplit("/", 1)[-1], run_dir)]
    found = []
    for f in storage.find_files(run_dir, "loop.json"):
        d = f.rsplit("/", 1)[0]
        if not d.endswith("/base"):  # a study's shared seed SFT
            found.append((d.split("study-", 1)[-1], d))
    return found


def _run_config(run_dir: str):
    from omegaconf import OmegaConf

    conf = storage.join(run_dir, "config.yaml")
    if not storage.exists(conf):
        return None
    return OmegaConf.create(storage.read_bytes(conf).decode("utf-8"))


def _truth(run_dir: str) -> dict[str, dict[str, str]] | None:
    from attrpipe.premise import read_truth

    cfg = _run_config(run_dir)
    if cfg is None:
        return None
    from attrpipe.catalog_io import CatalogReading

    return read_truth(cfg.data.get("truth"), CatalogReading.from_conf(cfg))


def _premises(d: str, m: dict, per_round: dict[str, list[dict]]) -> dict[str, dict]:
    """Each round's premise: loop.json's, or measured now from its chains (a run from before it was recorded)."""
    from attrpipe.premise import chain_premise, sampler_accuracy

    out = {}
    truth: dict = {}
    for s in m["stages"]:
        if not (s.endswith("/pseudolabel") and s in m["finished"]):
            continue
        rnd = s.split("/")[0]
        p = m["finished"][s].get("premise")
        if p is None and per_round.get(rnd) and "t" not in truth:
            truth["t"] = _truth(d)
        if p is None and truth.get("t") is not None and per_round.get(rnd):
            cfg = _run_config(d)
            p = chain_premise(per_round[rnd], truth["t"], float(cfg.consensus.threshold))
            prev = "sft" if rnd == "round-1" else f"round-{int(rnd.split('-')[1]) - 1}"
            p["sampler"] = sampler_accuracy(m["finished"].get(f"{prev}/eval"), f"{prev}/eval")
        if p is not None:
            out[rnd] = p
    return out


def write_report(run_dirs: list[str], out: str | None = None) -> str:
    """Write the report of one or more runs (loop runs or study directories); return the path of index.html."""
    if not run_dirs:
        raise ValueError("no run directory given")
    main = run_dirs[0]
    out = out or storage.join(main, "report")
    loops: list[tuple[str, str, dict]] = []
    for rd in run_dirs:
        for name, d in _loop_runs(rd):
            if all(d != seen for _, seen, _ in loops):
                loops.append((name, d, storage.read_json(storage.join(d, "loop.json"))))
    studies = [storage.read_json(f) for rd in run_dirs for f in storage.find_files(rd, "study.json")]
    if not loops and not studies:
        raise FileNotFoundError(f"no loop run (loop.json) or study (study.json) under {', '.join(run_dirs)}")
    sections: list[str] = []
    if loops:
        _plot_rounds([(n, m) for n, _, m in loops], storage.join(out, "accuracy_by_round.png"))
        # the first screen: the plot, and the table of what each round did and measured
        sections.append("<h2>Accuracy by round</h2><img src='accuracy_by_round.png' alt='Accuracy by round' "
                        "class='first'>" + _rounds_table(loops)
                        + "<p>Accuracy: greedy decoding of the labeled test set after the seed SFT and after each "
                        "round (bars: one standard error); lift: points over the run's seed SFT. Vote: the "
                        "consensus of the sampled chains on the test split, scored the same way; fit: the seed SFT "
                        "on its own labeled seed split. A parsed chain / the kept consensus right: their accuracy on "
                        "the pool's true labels (data.truth), the premise of the method; greedy answer, on the kept: "
                        "the sampling adapter's own answer on the same kept listing-attributes.</p>")
        # the first run of the method: an oracle arm's consensus column is the truth (its calibration means nothing)
        name, d, m = next((lp for lp in loops if not is_oracle(lp[2].get("method", ""))), loops[0])
        if sum(1 for s in m["stages"] if s.endswith("eval") and s in m["finished"]) >= 1:
            _plot_verticals(m, storage.join(out, "by_vertical.png"))
            sections.append(_figure(f"Accuracy by vertical ({html.escape(name)})", "by_vertical.png",
                                    "After the seed SFT and after the last round."))
        per_round = {s.split("/")[0]: _consensus_rows(storage.join(d, s.split("/")[0], "pseudolabels"))
                     for s in m["stages"] if s.endswith("/pseudolabel") and s in m["finished"]}
        if any(per_round.values()):
            _plot_confidence(per_round, storage.join(out, "confidence.png"))
            sections.append(_figure(f"Distribution of C ({html.escape(name)})", "confidence.png",
                                    "Share of the 7 chains agreeing with the consensus, per listing-attribute."))
            truth = _truth(d)
            if truth is None:
                sections.append("<h2>Calibration of consensus</h2><p>No labeled slice of the pool "
                                "(<code>data.truth</code> is unset or missing): not measured.</p>")
            else:
                tables = {rnd: calibration_table(rows, truth) for rnd, rows in per_round.items()}
                _plot_calibration(tables, storage.join(out, "calibration.png"))
                sections.append(_figure(f"Calibration of consensus ({html.escape(name)})", "calibration.png",
                                        "How often the consensus label equals the true label, at each C, on the "
                                        "labeled slice of the unlabeled pool (data.truth)."))
                sections.append(_calibration_html(tables))
        premises = _premises(d, m, per_round)
        if premises:
            sections.append(_premise_html(name, m, premises))
    for i, st in enumerate(studies):
        png = f"study_{st['kind']}_{i}.png"
        plot_study(st, storage.join(out, png))
        sections.append(_figure(f"Study: {html.escape(st['kind'])}", png,
                                f"{len(st['seeds'])} seed(s), {st['rounds']} round(s) per arm; bars: one "
                                "standard error (of the mean over seeds; of one evaluation with one seed)."))
        sections.append(f"<pre>{html.escape(st['table'])}</pre>")
    title = "attrpipe report"
    runs_line = "<p class='runs'>" + ", ".join(html.escape(r) for r in run_dirs) + "</p>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
            "body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}td{white-space:nowrap}"
            "th{background:#dde6f3}h1{margin:0.2em 0}h2{margin:0.6em 0 0.3em}.runs{color:#666;margin:0}"
            "img{max-width:100%;border:1px solid #ddd}img.first{width:560px;display:block;margin-bottom:6px}"
            "</style></head><body>"
            f"<h1>{title}</h1>{runs_line}" + "\n".join(sections) + "</body></html>\n")
    index = storage.join(out, "index.html")
    storage.write_text_atomic(index, page)
    from attrpipe.tracking.runs import log_report

    log_report([d for _, d, _ in loops], out)  # the report, as an artifact of each tracked loop run it covers
    return index


def _figure(title: str, png: str, caption: str) -> str:
    return f"<h2>{title}</h2><img src='{png}' alt='{html.escape(title)}'><p>{html.escape(caption)}</p>"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _rounds_table(loops) -> str:
    rows = ["<table><tr><th>run</th><th>method</th><th>stage</th><th>accuracy</th><th>lift</th><th>parse failures</th>"
            "<th>vote</th><th>fit</th><th>kept</th><th>pairs</th><th>a parsed chain right</th>"
            "<th>kept consensus right</th><th>greedy answer, on the kept</th><th>MLflow</th></tr>"]
    from attrpipe.tracking.runs import stage_links

    for name, d, m in loops:
        links = stage_links(d)
        method = m.get("method", "")
        sft = m["finished"].get("sft/eval") or {}
        for s in m["stages"]:
            if not (s.endswith("eval") and s in m["finished"]):
                continue
            e = m["finished"][s]
            rnd = s.split("/")[0]
            pl = m["finished"].get(f"{rnd}/pseudolabel", {})
            c, p = pl.get("counts", {}), pl.get("premise") or {}
            run_cell = (f"<a href='{html.escape(links[''])}'>{html.escape(name)}</a>" if "" in links
                        else html.escape(name))
            rows.append(f"<tr><td>{run_cell}</td><td>{html.escape(method_label(method)) if method else ''}"
                        f"</td><td>{rnd}</td><td>{_pct(e.get('accuracy'))}</td>"
                        f"<td>{_lift(e, sft) if s != 'sft/eval' else ''}</td>"
                        f"<td>{_pct(e.get('parse_failure_rate'))}</td>"
                        f"<td>{_pct(e['vote']['accuracy']) if e.get('vote') else ''}</td>"
                        f"<td>{_pct(e['fit']['accuracy']) if e.get('fit') else ''}</td><td>{c.get('kept', '')}</td>"
                        f"<td>{c.get('pairs', '')}</td><td>{_pct(p.get('single_chain')) if p else ''}</td>"
                        f"<td>{_pct(p.get('consensus_kept')) if p else ''}</td>"
                        f"<td>{_pct(p.get('greedy_kept')) if p.get('greedy_kept') is not None else ''}</td>"
                        f"<td>{_stage_links(links, rnd, m['stages'])}</td></tr>")
    note = ""
    if any(is_oracle(m.get("method", "")) for _, _, m in loops):
        note = ("<p>The oracle runs are diagnostic ceilings, not the method: their chains were scored against the true "
                "labels instead of their consensus, then trained as DPO / SL are. What they reach says what the "
                "learner could do if the consensus were right.</p>")
    return "".join(rows) + "</table>" + note


def _stage_links(links: dict[str, str], rnd: str, stages: list[str]) -> str:
    """The round's stages (or the seed SFT's), in order, each linked to its run in MLflow's UI (attrpipe.tracking)."""
    out = [f"<a href='{html.escape(links[s])}'>{html.escape(s.split('/', 1)[1] if '/' in s else 'train')}</a>"
           for s in stages if s in links and s.split("/")[0] == rnd]
    return " ".join(out)


def _lift(e: dict, sft: dict) -> str:
    a, b = e.get("accuracy"), sft.get("accuracy")
    return "" if a is None or b is None else f"{100 * (a - b):+.1f}"


def _points(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _premise_html(name: str, m: dict, premises: dict[str, dict]) -> str:
    """Each round's premise, and round 1's per attribute."""
    out = [f"<h2>The premise ({html.escape(name)})</h2><p>On the pool's true labels (data.truth): the accuracy of a "
           "single chain that parsed to an allowed value (unparsed chains left out), the accuracy of the consensus "
           "among the kept at the round's C, and the gain between them (points); beside them the greedy test "
           "accuracy of the adapter the round sampled with (round 1: the seed SFT), over all answers and over the "
           "parsed ones.</p>",
           "<table><tr><th>round</th><th>C</th><th>listing-attributes</th><th>a parsed chain right</th><th>kept</th>"
           "<th>kept consensus right</th><th>gain</th><th>sampler</th><th>its test accuracy</th>"
           "<th>over parsed answers</th></tr>"]
    for rnd, p in premises.items():
        s = p.get("sampler") or {}
        out.append(f"<tr><td>{rnd}</td><td>{p.get('threshold')}</td><td>{p['examples']}</td>"
                   f"<td>{_pct(p['single_chain'])}</td><td>{p['kept']}</td><td>{_pct(p['consensus_kept'])}</td>"
                   f"<td>{_points(p['gain'])}</td><td>{html.escape(str(s.get('stage') or 'none'))}</td>"
                   f"<td>{_pct(s.get('accuracy'))}</td><td>{_pct(s.get('parsed_accuracy'))}</td></tr>")
    out.append("</table>")
    first = next(iter(premises))
    out.append(f"<h3>Per attribute ({first})</h3><table><tr><th>attribute</th><th>listing-attributes</th>"
               "<th>a parsed chain right</th><th>kept</th><th>kept consensus right</th><th>gain</th></tr>")
    for attr, a in premises[first].get("per_attribute", {}).items():
        out.append(f"<tr><td>{html.escape(attr)}</td><td>{a['examples']}</td><td>{_pct(a['single_chain'])}</td>"
                   f"<td>{a['kept']}</td><td>{_pct(a['consensus_kept'])}</td><td>{_points(a['gain'])}</td></tr>")
    return "".join(out) + "</table>"


def _calibration_html(tables: dict[str, list[dict]]) -> str:
    rows = ["<table><tr><th>round</th><th>C</th><th>consensus right</th><th>examples</th></tr>"]
    for rnd, table in tables.items():
        for t in table:
            rows.append(f"<tr><td>{rnd}</td><td>{t['confidence']:.3f}</td><td>{_pct(t['accuracy'])}</td>"
                        f"<td>{t['n']}</td></tr>")
    return "".join(rows) + "</table>"
