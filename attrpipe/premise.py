"""The method's premise, measured where the pool's true labels are known (``data.truth``): is the consensus of the kept
chains right more often than a single chain? (pure, but for the two readers at the end)

For the listing-attributes of a round's pool that have a true label:

- ``single_chain``: among the chains that parsed to an allowed value, the share whose answer is the truth (unparsed
  chains are left out, so that the form of the answers does not count as knowledge);
- ``consensus_kept``: among the kept listing-attributes (consensus at C >= the round's threshold), the share whose
  consensus is the truth. The consensus is computed again from the chains' parsed answers with attrpipe.consensus,
  whatever the shards were scored with, so a diagnostic oracle arm's premise is the method's, on the same chains;
- ``gain``: ``consensus_kept - single_chain``, the sum of two parts:
  - ``selection``: ``single_chain_kept - single_chain``, where ``single_chain_kept`` is a parsed chain's accuracy on
    the kept listing-attributes only: what keeping the confident ones gains, with no vote;
  - ``vote``: ``consensus_kept - single_chain_kept``: what the vote of seven chains knows beyond one chain, on the
    same listing-attributes;
- the pairs, by what they teach (each dispreferred chain of a kept listing-attribute makes one pair, attrpipe.consensus
  .make_pairs, and its chosen chain has the consensus's answer): ``pairs_right_over_wrong`` (the consensus is the
  truth, the rejected chain's answer is not), ``pairs_wrong_over_right`` (the rejected chain had the truth),
  ``pairs_wrong_over_wrong`` (neither), ``pairs_over_unparsed`` (the rejected chain did not parse), and
  ``pairs_toward_truth`` / ``pairs_away_from_truth``, the first two as shares of all pairs. DPO learns the truth from
  the first kind and unlearns it from the second: their difference is its signal;

With the greedy answers of the adapter the round sampled with on the same pool (``greedy``; the loop decodes them
when ``eval.pool_greedy`` is on), the comparison that says whether the vote knows more than the model's own answer,
which is what DPO on consensus pairs distills into it:

- ``greedy``: the greedy answer's accuracy on the listing-attributes with a true label (an unparsed answer is wrong),
  and ``consensus_all``, the vote's on the same ones (no consensus is wrong); ``vote_over_greedy_all`` between them;
- ``greedy_kept``: the greedy answer's accuracy on the kept listing-attributes, and ``vote_over_greedy``:
  ``consensus_kept - greedy_kept``. Against a sampled chain the kept consensus always looks better (keeping the
  confident ones selects the listing-attributes the greedy answer already gets right); against the greedy answer on
  the same listing-attributes it is what the vote adds.

overall and per attribute (``vertical.attribute``, as evaluation keys them). Beside them (:func:`sampler_accuracy`),
the greedy test accuracy of the adapter the round sampled with (round 1: the seed SFT), over all answers and over the
parsed ones. Accuracies are fractions here and in loop.json; summaries and tables show percent.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from attrpipe import storage
from attrpipe.consensus import Consensus, compute_consensus, is_kept
from attrpipe.pseudolabel.output import committed_files
from attrpipe.catalog_io import CatalogReading
from attrpipe.pseudolabel.units import read_labels

__all__ = ["chain_premise", "premise_text", "parsed_accuracy", "sampler_accuracy", "read_truth", "read_chain_rows",
           "read_greedy_answers"]

_COUNTS = ("examples", "chains_parsed", "chains_right", "kept", "kept_right", "kept_chains_parsed",
           "kept_chains_right", "pairs", "pairs_right_over_wrong", "pairs_wrong_over_right", "pairs_wrong_over_wrong",
           "pairs_over_unparsed")
_GREEDY_COUNTS = ("consensus_right", "greedy_examples", "greedy_right", "kept_greedy_examples", "kept_greedy_right")


def _ratio(a: int, n: int) -> float | None:
    return a / n if n else None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _finish(c: dict[str, int]) -> dict:
    single, kept = _ratio(c["chains_right"], c["chains_parsed"]), _ratio(c["kept_right"], c["kept"])
    single_kept = _ratio(c["kept_chains_right"], c["kept_chains_parsed"])
    out = {**c, "single_chain": single, "consensus_kept": kept, "gain": _diff(kept, single),
           "single_chain_kept": single_kept, "selection": _diff(single_kept, single), "vote": _diff(kept, single_kept),
           "pairs_toward_truth": _ratio(c["pairs_right_over_wrong"], c["pairs"]),
           "pairs_away_from_truth": _ratio(c["pairs_wrong_over_right"], c["pairs"])}
    if "greedy_examples" in c:
        greedy, greedy_kept = _ratio(c["greedy_right"], c["greedy_examples"]), _ratio(c["kept_greedy_right"],
                                                                                      c["kept_greedy_examples"])
        consensus_all = _ratio(c["consensus_right"], c["examples"])
        out.update(greedy=greedy, greedy_kept=greedy_kept, consensus_all=consensus_all,
                   vote_over_greedy=_diff(kept, greedy_kept), vote_over_greedy_all=_diff(consensus_all, greedy))
    return out


def _pair_kinds(answers: list[str | None], c: Consensus, label: str) -> dict[str, int]:
    """The pairs of a kept listing-attribute (one per dispreferred chain, as make_pairs makes them), by what they
    teach."""
    out = dict.fromkeys(("pairs", "pairs_right_over_wrong", "pairs_wrong_over_right", "pairs_wrong_over_wrong",
                         "pairs_over_unparsed"), 0)
    for i in c.dispreferred:
        a = answers[i]
        out["pairs"] += 1
        if a is None:
            out["pairs_over_unparsed"] += 1
        elif c.value == label:
            out["pairs_right_over_wrong"] += 1
        elif a == label:
            out["pairs_wrong_over_right"] += 1
        else:
            out["pairs_wrong_over_wrong"] += 1
    return out


def chain_premise(rows: Iterable[dict], truth: dict[str, dict[str, str]], threshold: float,
                  greedy: dict[tuple[str, str], str | None] | None = None) -> dict:
    """The premise of one round. ``rows``: consensus rows (listing_id, vertical, attribute, chains with their parsed
    ``answer``); ``truth``: listing_id -> {attribute: true value}; rows without a true label are left out.
    ``greedy``: (listing_id, attribute) -> the sampling adapter's parsed greedy answer (None: it did not parse); a
    listing-attribute it lacks is left out of the greedy comparison only."""
    counts = _COUNTS + (_GREEDY_COUNTS if greedy is not None else ())
    total = dict.fromkeys(counts, 0)
    per: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(counts, 0))
    for r in rows:
        label = truth.get(r["listing_id"], {}).get(r["attribute"])
        if label is None:
            continue
        answers = [ch["answer"] for ch in r["chains"]]
        c = compute_consensus(answers)
        kept = is_kept(c, threshold)
        parsed = [a for a in answers if a is not None]
        right = sum(a == label for a in parsed)
        add = {"examples": 1, "chains_parsed": len(parsed), "chains_right": right,
               "kept": int(kept), "kept_right": int(kept and c.value == label)}
        if kept:
            add.update({"kept_chains_parsed": len(parsed), "kept_chains_right": right,
                        **_pair_kinds(answers, c, label)})
        key = (r["listing_id"], r["attribute"])
        if greedy is not None:
            add["consensus_right"] = int(c.value == label)
            if key in greedy:
                g = int(greedy[key] == label)
                add.update(greedy_examples=1, greedy_right=g, kept_greedy_examples=int(kept),
                           kept_greedy_right=g * int(kept))
        for bucket in (total, per[f"{r['vertical']}.{r['attribute']}"]):
            for k, v in add.items():
                bucket[k] += v
    return {"threshold": threshold, **_finish(total), "per_attribute": {k: _finish(v) for k, v in sorted(per.items())}}


def premise_text(p: dict) -> str:
    """The premise of a chain set as lines for a terminal (``attrpipe results premise``)."""
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def pts(x):
        return "n/a" if x is None else f"{100 * x:+.1f} points"

    rows = [
        ("listing-attributes with a true label", f"{p['examples']:,}"),
        ("chains that parsed", f"{p['chains_parsed']:,}"),
        ("a parsed chain right", pct(p["single_chain"])),
        (f"kept (C >= {p['threshold']:g})", f"{p['kept']:,}"),
        ("kept consensus right", pct(p["consensus_kept"])),
        ("gain", pts(p["gain"])),
        ("  of it, keeping the confident", pts(p["selection"])),
        ("  of it, the vote", f"{pts(p['vote'])} (a parsed chain right on the kept: {pct(p['single_chain_kept'])})"),
        *([("the sampling adapter's greedy answer right", pct(p["greedy"])),
           ("  the vote's (the consensus, kept or not)", f"{pct(p['consensus_all'])} "
                                                          f"({pts(p['vote_over_greedy_all'])})"),
           ("  on the kept", f"{pct(p['greedy_kept'])}; the kept consensus {pts(p['vote_over_greedy'])} beyond it")]
          if "greedy" in p else []),
        ("pairs", f"{p['pairs']:,}"),
        ("  toward the truth", f"{p['pairs_right_over_wrong']:,} ({pct(p['pairs_toward_truth'])})"),
        ("  away from the truth", f"{p['pairs_wrong_over_right']:,} ({pct(p['pairs_away_from_truth'])})"),
        ("  a wrong answer over another", f"{p['pairs_wrong_over_wrong']:,}"),
        ("  over an unparsed chain", f"{p['pairs_over_unparsed']:,}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def parsed_accuracy(eval_result: dict) -> float | None:
    """Greedy accuracy over the answers that parsed: correct / (scored - parse failures), from an evaluation's
    accuracy and parse failure rate (loop.json's eval entries, metrics.json)."""
    acc, pfr = eval_result.get("accuracy"), eval_result.get("parse_failure_rate")
    if acc is None or pfr is None or pfr >= 1:
        return None
    return acc / (1 - pfr)


def sampler_accuracy(eval_result: dict | None, stage: str | None) -> dict | None:
    """The greedy test accuracy of the adapter a round sampled with, over all answers and over the parsed ones."""
    if eval_result is None:
        return None
    return {"stage": stage, "accuracy": eval_result.get("accuracy"), "parsed_accuracy": parsed_accuracy(eval_result),
            "parse_failure_rate": eval_result.get("parse_failure_rate")}


# --- readers ----------------------------------------------------------------------------------------------------------


def read_truth(path: str | None, reading: CatalogReading | None = None) -> dict[str, dict[str, str]] | None:
    """listing_id -> true labels from ``data.truth`` (read with ``data.columns``: ``reading``); None when it is unset
    or missing (nothing is measured)."""
    if not path or not storage.exists(path):
        return None
    return read_labels(path, reading or CatalogReading())


def read_greedy_answers(pseudolabel_dir: str) -> dict[tuple[str, str], str | None]:
    """(listing_id, attribute) -> the parsed greedy answer (None: unparsed) of a greedy decode's committed shards."""
    return {(r["listing_id"], r["attribute"]): r["consensus"]
            for r in _committed_rows(pseudolabel_dir, ["listing_id", "attribute", "consensus"])}


def read_chain_rows(pseudolabel_dir: str) -> list[dict]:
    """The consensus rows of a pseudo-labeling output (only the committed shards), with just what the premise reads."""
    return _committed_rows(pseudolabel_dir, ["listing_id", "vertical", "attribute", "chains"])


def _committed_rows(pseudolabel_dir: str, columns: list[str]) -> list[dict]:
    d = storage.join(pseudolabel_dir, "consensus")
    files = committed_files(d)
    if files is None:
        files = storage.list_files(d, ".parquet") if storage.exists(d) else []
    rows: list[dict] = []
    for f in files:
        rows.extend(storage.read_parquet(f, columns=columns).to_pylist())
    return rows
