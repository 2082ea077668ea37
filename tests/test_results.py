"""summary.json and the tables rendered from it, on hand-made studies (pure: no Ray, no model)."""

import json
import math
import re

import pytest

from attrpipe.cli import main
from attrpipe.config import ConfigError, load_config
from attrpipe.results import TABLES, headline, merge_study, study_for_plot
from attrpipe.results_tables import fill_markers, render_tables, tables_markdown


def _premise(single, kept_right, threshold=0.5):
    single_kept = (single + kept_right) / 2
    return {"threshold": threshold, "examples": 10, "chains_parsed": 50, "kept": 4, "single_chain": single,
            "consensus_kept": kept_right, "gain": kept_right - single, "single_chain_kept": single_kept,
            "selection": single_kept - single, "vote": kept_right - single_kept, "pairs": 8,
            "pairs_toward_truth": 0.3, "pairs_away_from_truth": 0.1,
            "per_attribute": {"watch.colour": {"examples": 10, "kept": 4, "single_chain": single,
                                               "consensus_kept": kept_right, "gain": kept_right - single}},
            "sampler": {"stage": "sft/eval", "accuracy": 0.2, "parsed_accuracy": 0.4}}


def _arm(kind, value, method, seed, acc, sft, *, threshold=0.5, listings=None, single=0.3, kept_right=0.4,
         kept=10, pairs=20):
    var = "C" if kind == "threshold" else "pool"
    return {"kind": kind, "value": value, "method": method, "seed": seed, "arm": f"{method}-{var}-{value}",
            "accuracy": acc, "sft_accuracy": sft, "per_round": [sft, acc], "kept": kept, "pairs": pairs,
            "parse_failure_rate": 0.2, "parsed_accuracy": acc / 0.8, "sft_parse_failure_rate": 0.5,
            "sft_parsed_accuracy": sft / 0.5, "threshold": threshold, "listings": listings if listings else value,
            "listing_attributes": 3 * (listings if listings else value), "premise": _premise(single, kept_right),
            "seconds": 100.0, "run_dir": f"/runs/m/{kind}/seed-{seed}"}


def _study(kind, arms, *, name=None, rounds=1):
    return {"kind": kind, "variable": "x", "name": name, "run": "m",
            "study_dir": f"study-{kind}" + (f"-{name}" if name else ""), "rounds": rounds, "reference": "sft",
            "threshold": 0.5, "pool": 8, "arms": arms}


SFT = {0: 0.20, 1: 0.30}


def _pool_study():
    arms = []
    for seed in (0, 1):
        for n, (dpo, sl) in ((4, (0.22, 0.25)), (8, (0.26, 0.27))):
            dpo_acc, sl_acc = dpo + 0.1 * seed, sl + 0.1 * seed
            arms.append(_arm("pool-size", n, "dpo", seed, dpo_acc, SFT[seed], single=0.3 + 0.02 * seed,
                             kept_right=0.4 + 0.02 * seed))
            arms.append(_arm("pool-size", n, "sl", seed, sl_acc, SFT[seed], single=0.3 + 0.02 * seed,
                             kept_right=0.4 + 0.02 * seed))
    return _study("pool-size", arms)


def test_a_failed_arm_is_kept_with_its_error_until_a_rerun_finishes_it():
    study = _pool_study()
    done = [a for a in study["arms"] if not (a["arm"] == "sl-pool-8" and a["seed"] == 1)]
    fail = {"kind": "pool-size", "value": 8, "method": "sl", "seed": 1, "arm": "sl-pool-8",
            "error": "RuntimeError: boom", "run_dir": "/runs/m/study-pool-size/seed-1/sl-pool-8"}
    s = merge_study(None, {**study, "arms": done, "failed": [fail]}, seconds=1.0, now=0)
    entry = s["studies"]["m/study-pool-size"]
    assert entry["failed"] == {"sl-pool-8/seed-1": {"method": "sl", "value": 8, "seed": 1,
                                                    "error": "RuntimeError: boom", "run_dir": fail["run_dir"]}}
    assert entry["arms"]["sl-pool-8"]["seeds"] == [0]  # its mean is seed 0's alone, until the rerun
    assert entry["commands"][-1]["failed"] == ["sl-pool-8/seed-1"]
    again = merge_study(s, {**study, "arms": [a for a in study["arms"] if a not in done]}, seconds=1.0, now=1)
    entry = again["studies"]["m/study-pool-size"]
    assert entry["failed"] == {} and entry["arms"]["sl-pool-8"]["seeds"] == [0, 1]
    assert entry["commands"][-1]["failed"] == [] and len(entry["commands"]) == 2


def test_merge_aggregates_per_seed_values_and_the_headline():
    s = merge_study(None, _pool_study(), command=["attrpipe", "study", "pool-size", "c.yaml"], seconds=12.5, now=0)
    arm = s["studies"]["m/study-pool-size"]["arms"]["dpo-pool-8"]
    assert arm["seeds"] == [0, 1] and not arm["diagnostic"]
    accs = [26.0, 36.0]
    assert [arm["per_seed"][k]["accuracy"] for k in ("0", "1")] == pytest.approx(accs)
    assert arm["accuracy"]["mean"] == pytest.approx(31.0)
    assert arm["accuracy"]["std"] == pytest.approx(math.sqrt(((26 - 31) ** 2 + (36 - 31) ** 2) / 1))
    lifts = [26.0 - 20.0, 36.0 - 30.0]
    assert arm["lift"]["mean"] == pytest.approx(sum(lifts) / 2) and arm["lift"]["std"] == pytest.approx(0.0)
    assert arm["premise"]["single_chain"]["mean"] == pytest.approx(31.0)
    assert arm["premise"]["per_attribute"]["watch.colour"]["consensus_kept"] == pytest.approx(41.0)
    h = s["headline"]
    assert h["n_seeds"] == 2 and h["seed_sft"] == pytest.approx(25.0)
    assert h["smallest_pool"]["listings"] == 4 and h["largest_pool"]["listings"] == 8
    assert h["smallest_pool"]["dpo"] == {"accuracy": pytest.approx(27.0), "lift": pytest.approx(2.0)}
    assert h["largest_pool"]["sl"] == {"accuracy": pytest.approx(32.0), "lift": pytest.approx(7.0)}
    assert h["largest_pool"]["single_chain"] == pytest.approx(31.0)
    assert h["largest_pool"]["consensus_kept"] == pytest.approx(41.0)
    assert (h["single_chain"], h["consensus_kept"]) == (h["largest_pool"]["single_chain"],
                                                         h["largest_pool"]["consensus_kept"])
    cmd = s["studies"]["m/study-pool-size"]["commands"]
    assert cmd == [{"argv": "attrpipe study pool-size c.yaml", "seconds": 12.5, "finished_at": "1970-01-01T00:00:00Z",
                    "seeds": [0, 1], "arms": ["dpo-pool-4", "dpo-pool-8", "sl-pool-4", "sl-pool-8"], "failed": []}]


def test_fit_vote_and_the_greedy_answer_reach_the_tables_and_the_headline():
    """The seed SFT's fit and vote, each arm's vote and the share of the seed SFT's greedy-to-vote gap it closed, the
    premise's greedy comparison, the study's objective and the DPO-oracle at the largest pool."""
    arms = []
    for seed in (0, 1):
        for m, acc in (("dpo", 0.26), ("sl", 0.22), ("scpo", 0.30), ("dpo-oracle", 0.34)):
            a = _arm("pool-size", 8, m, seed, acc + 0.1 * seed, SFT[seed])
            a.update(sft_vote=SFT[seed] + 0.2, sft_fit=0.9 + 0.02 * seed, vote=acc + 0.1 * seed + 0.05)
            a["premise"].update(greedy=0.35, greedy_kept=0.38 + 0.02 * seed, vote_over_greedy=0.02 - 0.02 * seed)
            arms.append(a)
    s = merge_study(None, {**_study("pool-size", arms), "objective": "scpo"}, now=0)
    rec = s["studies"]["m/study-pool-size"]["arms"]["scpo-pool-8"]["per_seed"]["0"]
    assert rec["gap_closed"] == pytest.approx(50.0)  # (30 - 20) / (40 - 20)
    h = s["headline"]
    assert h["objective"] == "scpo" and h["seed_sft_fit"] == pytest.approx(91.0)
    assert h["seed_sft_vote"] == pytest.approx(45.0)
    assert h["largest_pool"]["dpo"] == {"accuracy": pytest.approx(35.0), "lift": pytest.approx(10.0)}  # scpo's
    assert h["largest_pool"]["dpo_oracle"] == {"accuracy": pytest.approx(39.0), "lift": pytest.approx(14.0)}
    t = render_tables(s)
    t4 = t["table-4"].splitlines()
    assert "vote of the chains %" in t4[0] and "own seed split right (fit) %" in t4[0]
    assert "| seed SFT | 2 | 25.0 ± 7.1 |  | 50.0 ± 0.0 | 50.0 ± 14.1 | 45.0 ± 7.1 |  | 91.0 ± 1.4 |  |  |" in t4
    assert "| ScPO | 2 | 35.0 ± 7.1 | +10.0 ± 0.0 | 20.0 ± 0.0 | 43.8 ± 8.8 | 40.0 ± 7.1 | 50.0 ± 0.0 |  | 10 | 20 |" in t4
    assert any(r.startswith("| DPO | 2 |") for r in t4) and any(r.startswith("| SL | 2 |") for r in t4)
    assert "| 8 | 0.5 | 0, 1 |" in t["premise"] and "| 35.0 ± 0.0 | 39.0 ± 1.4 | +1.0 ± 1.4 |" in t["premise"]
    assert "ScPO accuracy %" in t["table-6"].splitlines()[0]
    # the gap is undefined where the vote is not above the greedy answer
    from attrpipe.results import gap_closed
    assert gap_closed(0.5, 0.4, 0.4) is None and gap_closed(0.5, 0.4, None) is None
    assert gap_closed(0.45, 0.4, 0.5) == pytest.approx(0.5)


def test_merging_keeps_other_seeds_and_studies_and_replaces_a_rerun_seed():
    s = merge_study(None, _pool_study(), now=0)
    before = json.dumps(s, sort_keys=True)
    rerun = _study("pool-size", [_arm("pool-size", 8, "dpo", 1, 0.50, 0.30)])
    s2 = merge_study(s, rerun, seconds=3.0, now=1)
    assert json.dumps(s, sort_keys=True) == before  # the input is not changed
    arm = s2["studies"]["m/study-pool-size"]["arms"]["dpo-pool-8"]
    assert arm["per_seed"]["0"]["accuracy"] == pytest.approx(26.0) and arm["per_seed"]["1"]["accuracy"] == 50.0
    assert arm["accuracy"]["mean"] == pytest.approx(38.0)
    assert len(s2["studies"]["m/study-pool-size"]["commands"]) == 2
    thr = _study("threshold", [_arm("threshold", c, m, 0, 0.2 + c / 10, 0.2, threshold=c, listings=8)
                               for c in (0.3, 0.7) for m in ("dpo", "sl")])
    oracle = _study("pool-size", [_arm("pool-size", 8, m, s_, 0.4, SFT[s_]) for m in ("dpo-oracle", "sl-oracle")
                                  for s_ in (0, 1)])
    s3 = merge_study(merge_study(s2, thr, now=2), oracle, now=3)
    assert set(s3["studies"]) == {"m/study-pool-size", "m/study-threshold"}
    ps = s3["studies"]["m/study-pool-size"]["arms"]
    assert ps["dpo-oracle-pool-8"]["diagnostic"] and set(ps) >= {"dpo-pool-4", "sl-pool-8", "sl-oracle-pool-8"}
    assert s3["headline"]["largest_pool"]["dpo"]["accuracy"] == pytest.approx(38.0)  # oracle arms are not the method


def _merge_in_child(path, study, ready):
    from attrpipe.results import update_summary
    ready.set()
    update_summary(path, study, seconds=1.0)


def test_study_commands_run_at_once_each_keep_their_arms_in_one_summary(tmp_path):
    """A study finishing while another merges into the same summary waits for it (storage.locked), so neither
    command's arms are lost."""
    import multiprocessing as mp

    from attrpipe import storage
    from attrpipe.results import load_summary, save_summary

    path = str(tmp_path / "summary.json")
    other = _study("threshold", [_arm("threshold", 0.7, "dpo", 0, 0.3, 0.2, threshold=0.7, listings=8)])
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    with storage.locked(path):
        child = ctx.Process(target=_merge_in_child, args=(path, _pool_study(), ready))
        child.start()
        assert ready.wait(60)
        child.join(1.0)
        assert child.is_alive() and not (tmp_path / "summary.json").exists()  # it waits for the lock
        save_summary(path, merge_study(load_summary(path), other, now=0))  # this merge, in the lock
    child.join(60)
    assert child.exitcode == 0
    assert set(load_summary(path)["studies"]) == {"m/study-pool-size", "m/study-threshold"}


def test_a_summary_holds_one_models_results(tmp_path, capsys):
    """Arms of two models averaged over seeds would be a number of neither: a study or run of another model is
    refused with one line; the same weights under another path are the same model."""
    from attrpipe.models.loader import MODEL_CARD_FILE, model_identity
    from attrpipe.results import SummaryModelMismatch

    def card(d, weights):
        d.mkdir()
        (d / MODEL_CARD_FILE).write_text(json.dumps({"recipe_hash": "r", "sha256": {"model.safetensors": weights}}))
        return model_identity(d)

    f, f_copy, g = card(tmp_path / "f", "a" * 64), card(tmp_path / "f2", "a" * 64), card(tmp_path / "g", "b" * 64)
    assert f == {"path": str(tmp_path / "f"), "recipe_hash": "r", "weights_sha256": "a" * 64}
    assert model_identity(tmp_path / "plain") == {"path": str(tmp_path / "plain")}
    s = merge_study(None, {**_pool_study(), "model": f}, now=0)
    assert s["model"] == f
    s = merge_study(s, {**_study("pool-size", [_arm("pool-size", 8, "dpo", 2, 0.5, 0.3)]), "model": f_copy}, now=1)
    assert s["model"] == f and s["headline"]["n_seeds"] == 3
    with pytest.raises(SummaryModelMismatch, match="holds results of .*/f \\(weights aaaaaaaaaaaa...\\); the study "
                                                   "m/study-pool-size ran .*/g \\(weights bbbbbbbbbbbb"):
        merge_study(s, {**_pool_study(), "model": g}, now=2)
    assert "model" in merge_study(merge_study(None, _pool_study(), now=0), {**_pool_study(), "model": g}, now=1)
    summary = tmp_path / "summary.json"  # attrpipe results add: an evaluation of another model is refused too
    summary.write_text(json.dumps(s))
    ev = tmp_path / "zs"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({"accuracy": 0.1, "parse_failure_rate": 0.5, "scored": 10,
                                                 "model": str(tmp_path / "g")}))
    assert main(["results", "add", str(summary), str(ev), "--label", "zero-shot"]) == 2
    assert "holds results of" in capsys.readouterr().err
    (ev / "metrics.json").write_text(json.dumps({"accuracy": 0.1, "parse_failure_rate": 0.5, "scored": 10,
                                                 "model": str(tmp_path / "f2")}))
    assert main(["results", "add", str(summary), str(ev), "--label", "zero-shot"]) == 0


def _full_summary():
    s = merge_study(None, _pool_study(), command=["attrpipe", "study", "pool-size", "c.yaml"], seconds=60, now=0)
    s = merge_study(s, _study("threshold", [_arm("threshold", c, m, 0, 0.2 + c / 10, 0.2, threshold=c, listings=8,
                                                 kept_right=c) for c in (0.3, 0.7) for m in ("dpo", "sl")]), now=1)
    s = merge_study(s, _study("pool-size", [_arm("pool-size", 8, m, sd, 0.45, SFT[sd]) for m in ("dpo-oracle",)
                                            for sd in (0, 1)]), now=2)
    s = merge_study(s, _study("threshold", [_arm("threshold", 0.5, "dpo", 0, 0.21, 0.2, listings=8)], name="lr",
                              rounds=1), now=3)
    s["runs"]["zero-shot"] = {"accuracy": 6.5, "parse_failure_rate": 74.3, "parsed_accuracy": 25.2}
    s["runs"]["more-labels"] = {"kind": "evaluation", "path": "runs/x/eval", "accuracy": 26.5,
                                "parse_failure_rate": 31.1, "parsed_accuracy": 38.5}
    s["runs"]["a-loop"] = {"kind": "loop", "method": "dpo", "path": "runs/l",
                           "evaluations": [{"stage": "sft", "accuracy": 20.0, "parse_failure_rate": 10.0,
                                            "parsed_accuracy": 22.2},
                                           {"stage": "round-1", "accuracy": 24.0, "parse_failure_rate": 5.0,
                                            "parsed_accuracy": None}]}
    return s


def test_tables_are_computed_from_the_arms():
    t = render_tables(_full_summary())
    assert set(t) == set(TABLES)
    t4 = t["table-4"].splitlines()
    assert t4[0].startswith("| model | seeds | test accuracy % |")
    assert "| pretrained model, no adapter (zero-shot) | - | 6.5 |" in t["table-4"]
    # seed SFT: 20 and 30 -> 25.0 ± 7.1; DPO at 8 listings: 26 and 36 -> 31.0 ± 7.1, lift +6.0 ± 0.0
    assert "| seed SFT | 2 | 25.0 ± 7.1 |" in t["table-4"]
    assert "| DPO | 2 | 31.0 ± 7.1 | +6.0 ± 0.0 |" in t["table-4"]
    assert "| DPO-oracle (diagnostic ceiling) | 2 | 45.0 ± 0.0 | +20.0 ± 7.1 |" in t["table-4"]
    assert "| SL-oracle (diagnostic ceiling) | 0 | not run |" in t["table-4"]
    assert "diagnostic ceilings, never the method" in t["table-4"]
    # Table 5: the threshold study's C = 0.3 and 0.7 (seed 0), and C = 0.5 from the pool-size study's seed-0 arms
    t5 = t["table-5"]
    assert [r.split(" | ")[0] for r in t5.splitlines()[2:5]] == ["| 0.3", "| 0.5", "| 0.7"]
    assert "| 0.5 | 0 | 10 | 40.0 | 20 | 26.0 (+6.0) | 27.0 (+7.0) |" in t5
    assert "| 0.3 | 0 | 10 | 30.0 | 20 | 23.0 (+3.0) | 23.0 (+3.0) |" in t5
    # Table 6: both pools, both seeds, the oracle columns because one ran
    t6 = t["table-6"]
    assert "| 4 | 0, 1 | 12 | 10 | 20 | 27.0 ± 7.1 | +2.0 ± 0.0 | 30.0 ± 7.1 | +5.0 ± 0.0 | not run |" in t6
    assert "DPO-oracle (diagnostic ceiling) accuracy %" in t6.splitlines()[0]
    # the premise: seeds 0 and 1 give 30 and 32 (single chain), 40 and 42 (kept consensus)
    # a premise field one seed lacks (measured before it existed) is n/a, never a mean over fewer seeds than listed
    partial = merge_study(None, _pool_study(), now=0)
    del partial["studies"]["m/study-pool-size"]["arms"]["dpo-pool-8"]["per_seed"]["1"]["premise"]["vote"]
    row = [ln for ln in render_tables(partial)["premise"].splitlines() if ln.startswith("| 8 |")][0]
    assert row.split(" | ")[7] == "n/a" and row.split(" | ")[6] == "36.0 ± 1.4"
    # (a parsed chain on the kept: 35 and 37; the vote +5; pairs toward the truth 30%, away from it 10%)
    assert ("| 8 | 0.5 | 0, 1 | 31.0 ± 1.4 | 41.0 ± 1.4 | +10.0 ± 0.0 | 36.0 ± 1.4 | +5.0 ± 0.0 | 30.0 ± 0.0 | "
            "10.0 ± 0.0 | n/a | n/a | n/a | 25.0 ± 7.1 | 50.0 ± 14.1 |") in t["premise"]
    assert "| 8 | 0.3 | 0 | 30.0 | 30.0 | +0.0 |" in t["premise"]
    assert "| watch.colour | 10 | 31.0 ± 1.4 | 4 | 41.0 ± 1.4 | +10.0 ± 0.0 |" in t["premise-per-attribute"]
    assert "m/study-threshold-lr" in t["other-studies"] and "m/study-pool-size" not in t["other-studies"]
    assert "| m/study-pool-size | `attrpipe study pool-size c.yaml` | 60 |" in t["commands"]
    # the runs recorded with `results add` other than zero-shot (Table 4 has that one): a loop by round, its last form
    assert t["other-runs"].splitlines()[2:] == [
        "| a-loop | loop (DPO) | 20.0 / 24.0 | 5.0 | n/a | `runs/l` |",
        "| more-labels | evaluation | 26.5 | 31.1 | 38.5 | `runs/x/eval` |"]
    assert "zero-shot" not in t["other-runs"]
    only_zero_shot = _full_summary()
    only_zero_shot["runs"] = {"zero-shot": only_zero_shot["runs"]["zero-shot"]}
    assert "other-runs" not in render_tables(only_zero_shot)


def test_fill_markers_replaces_only_the_marked_blocks():
    s = _full_summary()
    doc = ("# Results\n\nprose stays\n\n<!-- results:table-6 -->\nold typed table\n<!-- /results:table-6 -->\n\n"
           "more prose\n<!-- results:premise -->\n<!-- /results:premise -->\n")
    out = fill_markers(doc, render_tables(s))
    assert "old typed table" not in out and "prose stays" in out and "more prose" in out
    assert render_tables(s)["table-6"] in out and render_tables(s)["premise"] in out
    assert fill_markers(out, render_tables(s)) == out  # regenerating is stable
    with pytest.raises(ValueError, match="unknown results table"):
        fill_markers("<!-- results:nope -->\n<!-- /results:nope -->", {})
    assert "headline: n_seeds 2" in tables_markdown(s)
    assert headline({"studies": {}})["n_seeds"] is None


def test_results_commands(tmp_path, capsys):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(_full_summary()))
    assert main(["results", "tables", str(summary)]) == 0
    out = capsys.readouterr().out
    assert "<!-- results:table-4 -->" in out and "| DPO | 2 | 31.0 ± 7.1 |" in out
    doc = tmp_path / "results.md"
    doc.write_text("<!-- results:table-4 -->\n<!-- /results:table-4 -->\n")
    assert main(["results", "tables", str(summary), "--into", str(doc)]) == 0
    assert "| seed SFT | 2 | 25.0 ± 7.1 |" in doc.read_text()
    ev = tmp_path / "zs"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({"accuracy": 0.1, "parse_failure_rate": 0.5, "scored": 10}))
    assert main(["results", "add", str(summary), str(ev), "--label", "zero-shot"]) == 0
    rec = json.loads(summary.read_text())["runs"]["zero-shot"]
    assert rec["accuracy"] == pytest.approx(10.0) and rec["parsed_accuracy"] == pytest.approx(20.0)
    assert main(["results", "add", str(summary), str(tmp_path / "none"), "--label", "x"]) == 2
    assert main(["results", "tables", str(tmp_path / "missing.json")]) == 2


def test_a_study_is_plotted_again_from_the_summary(tmp_path, capsys):
    s = _full_summary()
    key = next(k for k, v in s["studies"].items() if v["kind"] == "pool-size" and not v.get("name"))
    study = study_for_plot(s, key)
    arms = s["studies"][key]["arms"]
    assert len(study["summary"]) == len(arms) and study["kind"] == "pool-size"
    dpo = [r for r in study["summary"] if r["method"] == "dpo"]
    assert [r["value"] for r in dpo] == sorted(r["value"] for r in dpo)
    one = next(a for a in arms.values() if a["method"] == "dpo" and a["value"] == dpo[0]["value"])
    assert dpo[0]["accuracy"] == pytest.approx(one["accuracy"]["mean"] / 100)
    with pytest.raises(KeyError, match="no study 'nope'"):
        study_for_plot(s, "nope")
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(s))
    png = tmp_path / "plot.png"
    assert main(["results", "plot", str(summary), key, "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["results", "plot", str(summary), "nope", "--out", str(png)]) == 2
    assert "no study 'nope'" in capsys.readouterr().err


def test_a_study_with_an_oracle_arm_refuses_a_missing_truth_file(tmp_path):
    from attrpipe.study import run_study

    cfg = load_config("conf/tiny_cpu.yaml", ["study.methods=[dpo,dpo-oracle]", f"data.truth={tmp_path / 'no.parquet'}",
                                             f"run.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"^data.truth: .*no.parquet does not exist; study.methods has dpo-oracle"):
        run_study(cfg, "threshold", verbose=False)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_study_of_another_model_is_refused_before_it_runs(tmp_path):
    from attrpipe.results import SummaryModelMismatch
    from attrpipe.study import run_study

    summary = tmp_path / "s" / "summary.json"
    summary.parent.mkdir()
    summary.write_text(json.dumps({"format": 1, "studies": {}, "runs": {},
                                   "model": {"path": "models/other", "weights_sha256": "c" * 64}}))
    cfg = load_config("conf/miniature.yaml", [f"study.summary={summary}", f"run.output_dir={tmp_path / 'runs'}"])
    with pytest.raises(SummaryModelMismatch, match="holds results of models/other .*; this pool-size study ran "
                                                   "models/miniature"):
        run_study(cfg, "pool-size", verbose=False)
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_oracle_arms_of_a_named_study_fill_table_4_but_a_named_levers_method_arms_do_not():
    s = _full_summary()
    s = merge_study(s, _study("threshold", [_arm("threshold", 0.5, "sl-oracle", sd, 0.5, SFT[sd], listings=8)
                                            for sd in (0, 1)], name="oracle"), now=4)
    s = merge_study(s, _study("threshold", [_arm("threshold", 0.5, "sl", sd, 0.9, SFT[sd], listings=8)
                                            for sd in (0, 1)], name="sl-lever"), now=5)
    t4 = render_tables(s)["table-4"]
    assert "| SL-oracle (diagnostic ceiling) | 2 | 50.0 ± 0.0 | +25.0 ± 7.1 |" in t4
    assert "90.0" not in t4  # the lever's SL arms (90%) are not the method's row


def test_docs_results_md_is_the_shipped_summary_rendered():
    """docs/results.md's tables are `attrpipe results tables docs/results/summary.json --into docs/results.md`, never
    typed by hand: rendering them again changes nothing, and the summary is of the shipped model."""
    from attrpipe.models.loader import model_identity
    from attrpipe.results import load_summary

    summary = load_summary("docs/results/summary.json")
    text = open("docs/results.md", encoding="utf-8").read()
    assert fill_markers(text, render_tables(summary)) == text
    # and every table the summary has a row for sits in a block of its own (none measured but left out of the doc)
    assert set(render_tables(summary)) <= set(re.findall(r"<!-- results:([\w-]+) -->", text))
    shipped = model_identity("models/miniature")
    assert summary["model"]["weights_sha256"] == shipped["weights_sha256"]
