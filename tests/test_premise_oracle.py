"""The premise (a parsed chain's accuracy against the kept consensus's, on the pool's true labels), the diagnostic
oracle arms' scoring and configuration, the report's premise and the loop's backfill (no Ray, no model)."""

from pathlib import Path

import pytest

from attrpipe.config import ConfigError, load_config
from attrpipe.consensus import compute_consensus, make_pairs, oracle_consensus
from attrpipe.methods import method_label, training_kind
from attrpipe.premise import chain_premise, parsed_accuracy, premise_text, sampler_accuracy
from attrpipe.scoring import score_chains
from attrpipe.taxonomy import load_taxonomy

S, T, P = "Solid", "Striped", "Printed"


def test_oracle_prefers_the_chains_that_give_the_truth_and_pairs_them_as_make_pairs_does():
    values = [S, S, T, None, S, T, S]
    # the consensus (Solid) is wrong; the truth (Striped) has 2 of 7 chains
    oc = oracle_consensus(values, T)
    assert oc.value == T and oc.preferred == (2, 5) and oc.dispreferred == (0, 1, 3, 4, 6)
    assert oc.n_agree == 2 and oc.n_valid == 6 and oc.confidence == pytest.approx(2 / 7)
    assert make_pairs(oc, 0.5, seed=0, ex_id="L::pattern") == []  # C against the truth below the threshold
    pairs = make_pairs(oc, 0.25, seed=0, ex_id="L::pattern")
    assert [p.rejected for p in pairs] == [0, 1, 3, 4, 6] and {p.chosen for p in pairs} <= {2, 5}
    # where the consensus is right, the oracle is the consensus: the same kept decision and the very same pairs
    c = compute_consensus(values)
    same = oracle_consensus(values, S)
    assert (same.value, same.preferred, same.dispreferred, same.n_agree) == (c.value, c.preferred, c.dispreferred,
                                                                            c.n_agree)
    assert make_pairs(same, 0.5, seed=3, ex_id="x") == make_pairs(c, 0.5, seed=3, ex_id="x")
    # no true label, or no chain that gives it: nothing to prefer, never kept (even at C = 0)
    for truth in (None, P):
        none = oracle_consensus(values, truth)
        assert none.value is None and none.preferred == () and make_pairs(none, 0.0, seed=0, ex_id="x") == []


def test_score_chains_oracle_uses_the_truth_in_place_of_the_consensus():
    tax = load_taxonomy("conf/taxonomy", ["watch"])
    attr = next(a for a in tax.vertical("watch").attributes.values() if len(a.values) >= 2)
    a, b = attr.values[0], attr.values[1]
    texts = [f"<reasoning> r </reasoning><answer> {v} </answer>" for v in (a, a, a, a, b, b)] + ["no answer"]
    method = score_chains(texts, attr, threshold=0.25, seed=0, ex_id="L::x")
    oracle = score_chains(texts, attr, threshold=0.25, seed=0, ex_id="L::x", oracle=True, truth=b)
    assert method.consensus.value == a and oracle.consensus.value == b
    assert oracle.kept and {p.chosen for p in oracle.pairs} <= {4, 5}
    assert sorted(p.rejected for p in oracle.pairs) == [0, 1, 2, 3, 6]


def _row(listing, attr, answers, vertical="watch"):
    return {"listing_id": listing, "vertical": vertical, "attribute": attr,
            "chains": [{"answer": x} for x in answers]}


def test_chain_premise_overall_and_per_attribute():
    truth = {"A": {"colour": "Red", "shape": "Round"}, "B": {"colour": "Blue"}}
    rows = [
        _row("A", "colour", ["Red", "Red", "Red", "Blue", None, None, None]),  # kept (3/7 >= 0.4), right
        _row("A", "shape", ["Square", "Square", "Square", "Round", "Round", None, None]),  # kept, wrong
        _row("B", "colour", ["Blue", "Red", "Green", None, None, None, None]),  # not kept (1/7)
        _row("B", "shape", ["Round"] * 7),  # no true label: left out
        _row("C", "colour", ["Red"] * 7),  # no true label: left out
    ]
    p = chain_premise(rows, truth, 0.4)
    # parsed chains with a label: 4 + 5 + 3 = 12; right: 3 + 2 + 1 = 6
    assert (p["examples"], p["chains_parsed"], p["chains_right"]) == (3, 12, 6)
    assert p["single_chain"] == pytest.approx(6 / 12)
    assert (p["kept"], p["kept_right"]) == (2, 1) and p["consensus_kept"] == pytest.approx(0.5)
    assert p["gain"] == pytest.approx(0.0) and p["threshold"] == 0.4
    colour, shape = p["per_attribute"]["watch.colour"], p["per_attribute"]["watch.shape"]
    assert colour["single_chain"] == pytest.approx(4 / 7) and colour["consensus_kept"] == pytest.approx(1.0)
    assert colour["gain"] == pytest.approx(1 - 4 / 7)
    assert shape["single_chain"] == pytest.approx(2 / 5) and shape["consensus_kept"] == pytest.approx(0.0)
    # the consensus is recomputed from the chains: a row's stored consensus (an oracle arm's truth) is not read
    assert chain_premise([{**rows[1], "consensus": "Round", "kept": True}], truth, 0.4)["consensus_kept"] == 0.0
    empty = chain_premise([], truth, 0.5)
    assert empty["single_chain"] is None and empty["consensus_kept"] is None and empty["gain"] is None


def test_the_premise_sets_the_vote_beside_the_greedy_answer_on_the_same_listing_attributes():
    truth = {"A": {"colour": "Red", "shape": "Round"}, "B": {"colour": "Blue", "shape": "Oval"}}
    rows = [
        _row("A", "colour", ["Red", "Red", "Red", "Blue", None, None, None]),  # kept, consensus right
        _row("A", "shape", ["Square", "Square", "Square", "Round", "Round", None, None]),  # kept, wrong
        _row("B", "colour", ["Blue", "Red", "Green", None, None, None, None]),  # not kept, consensus right
        _row("B", "shape", ["Oval", "Oval", "Oval", "Round", None, None, None]),  # kept, right; no greedy answer
    ]
    greedy = {("A", "colour"): "Blue", ("A", "shape"): "Round", ("B", "colour"): None}
    p = chain_premise(rows, truth, 0.4, greedy=greedy)
    # greedy: 3 listing-attributes answered, 1 right (A.shape); on the kept: A.colour, A.shape -> 1 of 2
    assert (p["greedy_examples"], p["greedy_right"]) == (3, 1) and p["greedy"] == pytest.approx(1 / 3)
    assert (p["kept_greedy_examples"], p["kept_greedy_right"]) == (2, 1) and p["greedy_kept"] == pytest.approx(0.5)
    # the vote over all four (kept or not): A.colour, B.colour, B.shape right
    assert p["consensus_all"] == pytest.approx(3 / 4) and p["vote_over_greedy_all"] == pytest.approx(3 / 4 - 1 / 3)
    assert p["consensus_kept"] == pytest.approx(2 / 3) and p["vote_over_greedy"] == pytest.approx(2 / 3 - 1 / 2)
    assert p["per_attribute"]["watch.shape"]["greedy_kept"] == 1.0
    assert "greedy" not in chain_premise(rows, truth, 0.4)  # not measured: not there (a rerun measures it)
    assert "the sampling adapter's greedy answer right" in premise_text(p)


def test_the_premise_gain_splits_into_selection_and_vote_and_the_pairs_by_what_they_teach():
    truth = {"A": {"colour": "Red", "shape": "Round"}, "B": {"colour": "Blue", "shape": "Oval"}}
    rows = [
        _row("A", "colour", ["Red", "Red", "Red", "Blue", None, None, None]),  # kept, right: 1 toward, 3 unparsed
        _row("A", "shape", ["Square", "Square", "Square", "Round", "Round", None, None]),  # kept, wrong: 2 away
        _row("B", "colour", ["Blue", "Red", "Green", None, None, None, None]),  # not kept: no pairs, not "on the kept"
        _row("B", "shape", ["Square", "Square", "Square", "Round", "Oval", "Oval", None]),  # kept, wrong
    ]
    p = chain_premise(rows, truth, 0.4)
    # on the kept: parsed chains 4 + 5 + 6, right 3 + 2 + 2
    assert (p["kept_chains_parsed"], p["kept_chains_right"]) == (15, 7)
    assert p["single_chain_kept"] == pytest.approx(7 / 15)
    assert p["single_chain"] == pytest.approx(8 / 18) and p["consensus_kept"] == pytest.approx(1 / 3)
    assert p["selection"] == pytest.approx(7 / 15 - 8 / 18) and p["vote"] == pytest.approx(1 / 3 - 7 / 15)
    assert p["selection"] + p["vote"] == pytest.approx(p["gain"])
    assert (p["pairs"], p["pairs_right_over_wrong"], p["pairs_wrong_over_right"], p["pairs_wrong_over_wrong"],
            p["pairs_over_unparsed"]) == (12, 1, 4, 1, 6)
    assert p["pairs_toward_truth"] == pytest.approx(1 / 12) and p["pairs_away_from_truth"] == pytest.approx(4 / 12)
    shape = p["per_attribute"]["watch.shape"]
    assert (shape["pairs"], shape["pairs_wrong_over_right"], shape["pairs_toward_truth"]) == (8, 4, 0.0)
    assert shape["single_chain_kept"] == pytest.approx(4 / 11)
    # the pairs counted are the pairs the method makes: one per dispreferred chain of a kept example
    from attrpipe.consensus import compute_consensus, make_pairs
    made = sum(len(make_pairs(compute_consensus([c["answer"] for c in r["chains"]]), 0.4, seed=0, ex_id="x"))
               for r in rows)
    assert made == p["pairs"]
    # no kept example: nothing on the kept, and no pairs
    none_kept = chain_premise(rows[2:3], truth, 0.4)
    assert none_kept["single_chain_kept"] is None and none_kept["vote"] is None
    assert none_kept["pairs"] == 0 and none_kept["pairs_toward_truth"] is None


def test_sampler_accuracy_over_all_and_parsed_answers():
    e = {"accuracy": 0.25, "parse_failure_rate": 0.5, "scored": 100}
    assert parsed_accuracy(e) == pytest.approx(0.5)
    assert parsed_accuracy({"accuracy": 0.0, "parse_failure_rate": 1.0}) is None
    assert sampler_accuracy(e, "sft/eval") == {"stage": "sft/eval", "accuracy": 0.25, "parsed_accuracy": 0.5,
                                               "parse_failure_rate": 0.5}
    assert sampler_accuracy(None, None) is None


def test_oracle_methods_are_named_as_ceilings_and_need_the_truth():
    assert training_kind("dpo-oracle") == "dpo" and training_kind("sl") == "sl"
    assert "diagnostic ceiling" in method_label("sl-oracle") and method_label("dpo") == "DPO"
    c = load_config("conf/tiny_cpu.yaml", ["loop.method=dpo-oracle", "study.methods=[dpo,sl,dpo-oracle,sl-oracle]"])
    assert c.loop.method == "dpo-oracle"
    with pytest.raises(ConfigError, match=r"^loop.method: dpo-oracle .*data.truth is not set$"):
        load_config("conf/tiny_cpu.yaml", ["loop.method=dpo-oracle", "data.truth=null"])
    with pytest.raises(ConfigError, match=r"^study.methods: sl-oracle .*data.truth"):
        load_config("conf/tiny_cpu.yaml", ["study.methods=[dpo,sl-oracle]", "data.truth=null"])
    with pytest.raises(ConfigError, match="study.methods"):
        load_config("conf/tiny_cpu.yaml", ["study.methods=[dpo,ppo]"])


def test_the_loop_refuses_an_oracle_without_the_truth_file(tmp_path):
    from attrpipe.loop import run_loop

    missing = str(tmp_path / "nowhere.parquet")
    cfg = load_config("conf/tiny_cpu.yaml", ["loop.method=sl-oracle", f"data.truth={missing}",
                                             f"run.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"^data.truth: .*nowhere.parquet does not exist"):
        run_loop(cfg, verbose=False)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_the_report_shows_each_rounds_premise_and_names_the_oracle_a_ceiling(tmp_path):
    import json

    from attrpipe.loop import loop_table
    from attrpipe.report import write_report

    truth = {"A": {"colour": "Red"}}
    premise = chain_premise([_row("A", "colour", ["Red", "Red", "Blue", None, None, None, None])], truth, 0.25)
    premise["sampler"] = sampler_accuracy({"accuracy": 0.2, "parse_failure_rate": 0.5}, "sft/eval")
    ev = {"accuracy": 0.2, "parse_failure_rate": 0.5, "scored": 10, "per_vertical": {"watch": 0.2}}
    m = {"method": "dpo-oracle", "stages": ["sft", "sft/eval", "round-1/pseudolabel", "round-1/train", "round-1/eval"],
         "finished": {"sft": {}, "sft/eval": ev, "round-1/pseudolabel": {"counts": {"kept": 1, "pairs": 2},
                                                                          "premise": premise},
                      "round-1/train": {}, "round-1/eval": {**ev, "accuracy": 0.3}}}
    run = tmp_path / "run"
    run.mkdir()
    (run / "loop.json").write_text(json.dumps(m))
    page = (tmp_path / "run" / "report" / "index.html")
    assert write_report([str(run)]) == str(page)
    html = page.read_text()
    assert "The premise (run)" in html and "<td>watch.colour</td>" in html
    assert "<td>66.7%</td>" in html and "<td>100.0%</td>" in html and "<td>+33.3</td>" in html  # 2/3, 1/1, gain
    assert "DPO-oracle (diagnostic ceiling)" in html and "diagnostic ceilings, not the method" in html
    table = loop_table(m)
    assert "66.7%" in table and "100.0%" in table and "diagnostic ceiling" in table


def test_a_finished_loop_gets_its_premise_on_rerun_without_running_anything(tmp_path):
    """A run from before the premise was measured: rerunning the loop measures it from the committed chains."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from attrpipe import storage
    from attrpipe.loop import _result_key, plan_stages, run_loop

    truth = tmp_path / "truth.parquet"
    pq.write_table(pa.Table.from_pylist([{"listing_id": "A", "labels": [("colour", "Red")]}],
                                        schema=pa.schema([("listing_id", pa.string()),
                                                          ("labels", pa.map_(pa.string(), pa.string()))])), truth)
    cfg = load_config("conf/tiny_cpu.yaml", [f"run.output_dir={tmp_path}", "run.name=r", "loop.rounds=1",
                                             f"data.truth={truth}", "consensus.threshold=0.25"])
    run = tmp_path / "r"
    shards = run / "round-1" / "pseudolabels" / "consensus"
    shards.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([_row("A", "colour", ["Red", "Red", "Blue", None, None, None, None])]),
                   shards / "u.parquet")
    ev = {"accuracy": 0.2, "parse_failure_rate": 0.5, "scored": 10}
    stages = [s.name for s in plan_stages(rounds=1, method="dpo", seed_sft=True)]
    manifest = {"config_hash": "x", "result_key": _result_key(cfg), "sft_key": _result_key(cfg, seed_sft_only=True),
                "model_fingerprint": storage.fingerprint(cfg.model.path), "stages": stages,
                "finished": {s: dict(ev) if s.endswith("eval") else {"counts": {}} for s in stages}}
    (run / "loop.json").write_text(json.dumps(manifest))
    out = run_loop(cfg, verbose=False)
    p = out["finished"]["round-1/pseudolabel"]["premise"]
    assert p["single_chain"] == pytest.approx(2 / 3) and p["consensus_kept"] == 1.0
    assert p["sampler"] == {"stage": "sft/eval", "accuracy": 0.2, "parsed_accuracy": 0.4, "parse_failure_rate": 0.5}
    assert json.loads((run / "loop.json").read_text())["finished"]["round-1/pseudolabel"]["premise"] == p
    assert p["vote"] == pytest.approx(1.0 - 2 / 3) and p["pairs"] == 5 and p["pairs_right_over_wrong"] == 1
    # a premise recorded before its decomposition (selection, vote, the pairs) existed is measured again
    old = json.loads((run / "loop.json").read_text())
    old["finished"]["round-1/pseudolabel"]["premise"] = {"single_chain": p["single_chain"], "consensus_kept": 1.0}
    (run / "loop.json").write_text(json.dumps(old))
    assert run_loop(cfg, verbose=False)["finished"]["round-1/pseudolabel"]["premise"] == p


def test_a_finished_round_gains_the_greedy_answers_on_its_pool(tmp_path, monkeypatch):
    """eval.pool_greedy on a finished run: the round's sampling adapter decodes the pool greedily (once), and the
    premise sets the kept consensus beside that greedy answer."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    import attrpipe.pseudolabel.pipeline
    from attrpipe import storage
    from attrpipe.loop import _result_key, plan_stages, run_loop

    truth = tmp_path / "truth.parquet"
    pq.write_table(pa.Table.from_pylist([{"listing_id": "A", "labels": [("colour", "Red")]}],
                                        schema=pa.schema([("listing_id", pa.string()),
                                                          ("labels", pa.map_(pa.string(), pa.string()))])), truth)
    cfg = load_config("conf/tiny_cpu.yaml", [f"run.output_dir={tmp_path}", "run.name=r", "loop.rounds=1",
                                             f"data.truth={truth}", "consensus.threshold=0.25",
                                             "eval.pool_greedy=true", "data.unlabeled_limit=5"])
    run = tmp_path / "r"
    shards = run / "round-1" / "pseudolabels" / "consensus"
    shards.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([_row("A", "colour", ["Red", "Red", "Blue", None, None, None, None])]),
                   shards / "u.parquet")
    stages = [s.name for s in plan_stages(rounds=1, method="dpo", seed_sft=True)]
    ev = {"accuracy": 0.2, "parse_failure_rate": 0.5, "scored": 10}
    manifest = {"config_hash": "x", "result_key": _result_key(cfg), "sft_key": _result_key(cfg, seed_sft_only=True),
                "model_fingerprint": storage.fingerprint(cfg.model.path), "stages": stages,
                "finished": {s: dict(ev) if s.endswith("eval") else {"counts": {}} for s in stages}}
    (run / "loop.json").write_text(json.dumps(manifest))
    calls = []

    def greedy_decode(cfg, *, catalog, out, adapter, limit, greedy, verbose, label):
        calls.append((out, adapter, limit, greedy))
        (Path(out) / "consensus").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([{"listing_id": "A", "attribute": "colour", "consensus": "Blue"}]),
                       Path(out) / "consensus" / "u.parquet")

    monkeypatch.setattr(attrpipe.pseudolabel.pipeline, "run_pseudolabel", greedy_decode)
    p = run_loop(cfg, verbose=False)["finished"]["round-1/pseudolabel"]["premise"]
    assert calls == [(str(run / "round-1" / "pool-greedy"), str(run / "sft" / "adapter"), 5, True)]
    assert p["consensus_kept"] == 1.0 and p["greedy"] == 0.0 and p["greedy_kept"] == 0.0
    assert p["vote_over_greedy"] == 1.0
    run_loop(cfg, verbose=False)
    assert len(calls) == 1  # measured once


def test_results_premise_measures_a_chain_set_from_the_command_line(tmp_path, capsys):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from attrpipe.cli import main

    truth = tmp_path / "truth.parquet"
    pq.write_table(pa.Table.from_pylist([{"listing_id": "A", "labels": [("colour", "Red"), ("shape", "Round")]}],
                                        schema=pa.schema([("listing_id", pa.string()),
                                                          ("labels", pa.map_(pa.string(), pa.string()))])), truth)
    chains = tmp_path / "chains"
    (chains / "consensus").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([_row("A", "colour", ["Red", "Red", "Blue", None, None, None, None]),
                                         _row("A", "shape", ["Square", "Square", "Round", "Round", "Oval", None,
                                                             None])]), chains / "consensus" / "u.parquet")
    args = ["results", "premise", "conf/tiny_cpu.yaml", "--chains", str(chains), f"data.truth={truth}",
            "consensus.threshold=0.25"]
    assert main(args) == 0
    out = capsys.readouterr().out
    # colour: kept, right (3 parsed, 2 right); shape: 2/7 Square ties 2/7 Round, broken by first vote: kept, wrong
    assert "a parsed chain right                  50.0%" in out  # 4 of 8
    assert "pairs                                 10" in out
    assert main(args + ["--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["pairs"] == 10 and p["per_attribute"]["watch.colour"]["consensus_kept"] == 1.0
    assert p["single_chain"] + p["selection"] + p["vote"] == pytest.approx(p["consensus_kept"])
    assert main(["results", "premise", "conf/tiny_cpu.yaml", "--chains", str(chains),
                 f"data.truth={tmp_path / 'none.parquet'}"]) == 2
    assert "data.truth: no truth file" in capsys.readouterr().err
    assert main(["results", "premise", "conf/tiny_cpu.yaml", "--chains", str(tmp_path), f"data.truth={truth}"]) == 2
    assert "no consensus shards" in capsys.readouterr().err
