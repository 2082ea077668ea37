"""Pure pieces of the loop, studies, reports and prediction (no Ray, no model)."""

from pathlib import Path

import pytest

from attrpipe.engines.base import GenerationRequest
from attrpipe.pseudolabel.stages import prediction_rows, texts_with_cache
from attrpipe.report import calibration_table, round_series
from attrpipe.study import Arm, arm_overrides, plan_arms, study_table, summarize_arms


def test_texts_with_cache_generates_only_what_is_missing():
    reqs = [GenerationRequest(f"L::{a}", []) for a in "abc"]
    asked = []

    def generate(todo):
        asked.append([r.request_id for r in todo])
        return [[f"new {r.request_id}"] * 2 for r in todo]

    texts, reused = texts_with_cache(reqs, {"L::b": ["old1", "old2"]}, 2, generate)
    assert texts == [["new L::a"] * 2, ["old1", "old2"], ["new L::c"] * 2] and reused == 1
    assert asked == [["L::a", "L::c"]]
    texts, reused = texts_with_cache(reqs, {r.request_id: ["x", "y"] for r in reqs}, 2, generate)
    assert reused == 3 and len(asked) == 1  # nothing left to generate: the engine is not called
    with pytest.raises(ValueError, match="expected 2"):
        texts_with_cache(reqs, {"L::a": ["only one"]}, 2, generate)


def test_plan_units_limit_is_a_prefix_of_the_pool(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from attrpipe.pseudolabel.units import plan_units

    for f, n in (("part-0", 7), ("part-1", 5)):
        pq.write_table(pa.table({"listing_id": [f"{f}-{i}" for i in range(n)]}), tmp_path / f"{f}.parquet")
    full = plan_units(str(tmp_path), 3)
    assert [(u.start, u.stop) for u in full] == [(0, 3), (3, 6), (6, 7), (0, 3), (3, 5)]
    nine = plan_units(str(tmp_path), 3, limit=9)
    assert [(u.unit_id, u.start, u.stop) for u in nine] == [
        (full[0].unit_id, 0, 3), (full[1].unit_id, 3, 6), (full[2].unit_id, 6, 7), (full[3].unit_id, 0, 2)]
    assert plan_units(str(tmp_path), 3, limit=100) == full and plan_units(str(tmp_path), 3, limit=0) == []


def _cons(value, c, answers):
    chains = [{"text": "t", "reasoning": None, "answer": a, "reason": None if a else "no_answer_tag"} for a in answers]
    return {"listing_id": "L", "vertical": "watch", "attribute": "dial_shape", "consensus": value, "confidence": c,
            "n_chains": len(answers), "n_valid": sum(a is not None for a in answers), "chains": chains,
            "image_uris": ["/i.jpg"], "image_bytes": None, "model": "m", "adapter": None}


def test_prediction_rows_review_rule():
    rows = [_cons("Round", 5 / 7, ["Round"] * 5 + ["Square", None]), _cons("Square", 4 / 7, ["Square"] * 4 + [None] * 3),
            _cons(None, 0.0, [None] * 7)]
    preds, review = prediction_rows(rows, review_below=0.7, greedy=False)
    assert [p["needs_review"] for p in preds] == [False, True, True]
    assert [r["review_reason"] for r in review] == ["low_confidence", "no_answer"]
    assert review[0]["votes"] == {"Square": 4} and review[0]["image_uris"] == ["/i.jpg"]
    preds, review = prediction_rows(rows, review_below=0.7, greedy=True)
    assert [p["confidence"] for p in preds] == [None] * 3 and [r["review_reason"] for r in review] == ["no_answer"]


def test_calibration_table_counts_right_consensus_labels_per_c():
    truth = {"a": {"x": "Red"}, "b": {"x": "Blue"}, "c": {"x": "Red"}}
    rows = [{"listing_id": "a", "attribute": "x", "consensus": "Red", "confidence": 5 / 7},
            {"listing_id": "b", "attribute": "x", "consensus": "Red", "confidence": 5 / 7},
            {"listing_id": "c", "attribute": "x", "consensus": "Red", "confidence": 1.0},
            {"listing_id": "c", "attribute": "y", "consensus": "Red", "confidence": 1.0},  # no label: skipped
            {"listing_id": "a", "attribute": "x", "consensus": None, "confidence": 0.0}]  # no consensus: skipped
    t = calibration_table(rows, truth)
    assert t == [{"confidence": round(5 / 7, 6), "right": 1, "n": 2, "accuracy": 0.5},
                 {"confidence": 1.0, "right": 1, "n": 1, "accuracy": 1.0}]


def test_round_series_follows_the_stage_order():
    m = {"stages": ["sft", "sft/eval", "round-1/pseudolabel", "round-1/train", "round-1/eval", "round-2/eval"],
         "finished": {"sft/eval": {"accuracy": 0.5}, "round-1/eval": {"accuracy": 0.6}}}
    assert round_series(m) == (["sft", "round-1"], [0.5, 0.6])


def test_study_arms_overrides_and_summary():
    arms = plan_arms("threshold", [0.5, 0.7], ["dpo", "sl"], [0, 1])
    assert len(arms) == 8 and arms[0] == Arm("threshold", 0.5, "dpo", 0) and arms[4].seed == 1
    assert arms[0].name == "dpo-C-0.5" and Arm("pool-size", 1000, "sl", 0).name == "sl-pool-1000"
    o = arm_overrides(Arm("pool-size", 1000, "sl", 3), rounds=2)
    assert o == {"run": {"seed": 3}, "loop": {"rounds": 2, "method": "sl", "seed_sft": True},
                 "data": {"unlabeled_limit": 1000}}
    assert arm_overrides(arms[1], rounds=1)["consensus"] == {"threshold": 0.5}
    with pytest.raises(ValueError):
        plan_arms("temperature", [1.0], ["dpo"], [0])
    results = [
        {"value": 0.5, "method": "dpo", "seed": 0, "accuracy": 0.60, "sft_accuracy": 0.50, "kept": 10, "pairs": 20},
        {"value": 0.5, "method": "dpo", "seed": 1, "accuracy": 0.70, "sft_accuracy": 0.50, "kept": 12, "pairs": 22},
        {"value": 0.5, "method": "sl", "seed": 0, "accuracy": 0.40, "sft_accuracy": 0.50, "kept": 10, "pairs": 20},
    ]
    s = summarize_arms(results)
    dpo = next(r for r in s if r["method"] == "dpo")
    assert dpo["seeds"] == 2 and dpo["accuracy"] == pytest.approx(0.65) and dpo["accuracy_std"] == pytest.approx(0.0707, abs=1e-4)
    assert dpo["lift"] == pytest.approx(0.15) and dpo["kept"] == 11
    sl = next(r for r in s if r["method"] == "sl")
    assert sl["accuracy_std"] is None and sl["lift"] == pytest.approx(-0.10)
    table = study_table("threshold", s)
    assert "| 0.5 | DPO | 2 | 65.0 ± 7.1 | 50.0 | 15.0 ± 7.1 | 11 | 21 |" in table
    assert "| 0.5 | SL | 1 | 40.0 | 50.0 | -10.0 | 10 | 20 |" in table


def test_a_seed_sft_alone_may_go_on_with_other_round_settings_but_rounds_may_not():
    from attrpipe.config import load_config
    from attrpipe.loop import _check_key, _result_key

    base = load_config("conf/tiny_cpu.yaml", [])
    lever = load_config("conf/tiny_cpu.yaml", ["dpo.learning_rate=1e-4", "consensus.threshold=0.7",
                                               "generation.temperature=0.5", "loop.method=sl"])
    sft_change = load_config("conf/tiny_cpu.yaml", ["sft.learning_rate=1e-4"])
    more_rounds = load_config("conf/tiny_cpu.yaml", ["loop.rounds=5", "ray.train.num_workers=1"])
    key = lambda c: (_result_key(c), _result_key(c, seed_sft_only=True))  # noqa: E731
    assert key(more_rounds) == key(base)  # how many rounds and how it runs: not results
    assert key(lever)[0] != key(base)[0] and key(lever)[1] == key(base)[1]  # round settings: not the seed SFT's
    assert key(sft_change)[1] != key(base)[1]
    k, sk = key(base)
    sft_done = {"result_key": k, "sft_key": sk, "finished": {"sft": {}, "sft/eval": {}}}
    _check_key(sft_done, *key(lever), "/run")  # the seed SFT serves other DPO/SL settings
    with pytest.raises(RuntimeError, match="different configuration"):
        _check_key(sft_done, *key(sft_change), "/run")
    round_done = {**sft_done, "finished": {**sft_done["finished"], "round-1/pseudolabel": {}}}
    _check_key(round_done, *key(more_rounds), "/run")
    with pytest.raises(RuntimeError, match="different configuration"):
        _check_key(round_done, *key(lever), "/run")
    old = {"result_key": k, "finished": {"sft": {}}}  # a manifest from before sft_key: the whole key must match
    with pytest.raises(RuntimeError, match="different configuration"):
        _check_key(old, *key(lever), "/run")
    fp = {**sft_done, "model_fingerprint": "aaaa"}  # other weights at the same model.path: refused, whatever the key
    _check_key(fp, *key(base), "/run", "aaaa")
    with pytest.raises(RuntimeError, match="model at model.path changed"):
        _check_key(fp, *key(base), "/run", "bbbb")


def test_each_round_trains_from_the_previous_adapter_against_the_chosen_reference():
    from attrpipe.loop import plan_stages, train_start

    def starts(method, seed_sft, reference, rounds=3):
        out = {}
        for st in plan_stages(rounds=rounds, method=method, seed_sft=seed_sft):
            if st.kind == method:
                s = train_start(st, seed_sft=seed_sft, reference=reference)
                out[st.round] = (s.init_adapter, s.reference, s.reference_adapter(), s.overrides)
        return out

    # the paper: every round continues the last adapter, scored against the frozen seed SFT adapter
    assert starts("dpo", True, "sft") == {1: ("sft/adapter", "sft/adapter", None, {}),
                                          2: ("round-1/adapter", "sft/adapter", "sft/adapter", {}),
                                          3: ("round-2/adapter", "sft/adapter", "sft/adapter", {})}
    assert starts("dpo", True, "previous") == {1: ("sft/adapter", "sft/adapter", None, {}),
                                               2: ("round-1/adapter", "round-1/adapter", None, {}),
                                               3: ("round-2/adapter", "round-2/adapter", None, {})}
    # "PT": no seed SFT, round 1 is a fresh adapter against the base with the adapter disabled
    pt = starts("dpo", False, "previous")
    assert pt[1] == (None, "base", None, {"dpo": {"reference": "base"}, "sl": {"init": "base"}})
    assert pt[2] == ("round-1/adapter", "round-1/adapter", None, {})
    assert starts("dpo", False, "sft", rounds=1)[1][:2] == (None, "base")
    # without a seed SFT there is no SFT adapter to score round 2 against: refused, not silently "previous"
    with pytest.raises(ValueError, match="loop.reference=previous"):
        starts("dpo", False, "sft", rounds=2)
    # SL has no reference; it continues the last adapter, or starts fresh without a seed SFT
    assert starts("sl", True, "sft") == {r: (a, None, None, {}) for r, a in
                                         ((1, "sft/adapter"), (2, "round-1/adapter"), (3, "round-2/adapter"))}
    assert starts("sl", False, "sft")[1][:2] == (None, None)
    with pytest.raises(ValueError, match="sft or previous"):
        starts("dpo", True, "base")


def _fake_stage_commands(monkeypatch, counts: dict) -> list:
    """run_training, run_pseudolabel and run_evaluate as fakes that record their calls and write what the loop reads
    (an adapter directory); ``counts``: each round's pseudo-labeling counts."""
    import attrpipe.evaluation
    import attrpipe.pseudolabel.pipeline
    import attrpipe.train

    calls = []

    def run_training(kind, cfg, *, out_dir, data=None, init_adapter=None, resume_from=None, reference_adapter=None,
                     tracking=None):
        calls.append(("train", kind, out_dir, data, init_adapter, resume_from, reference_adapter,
                      cfg.dpo.reference, cfg.sl.init))
        (Path(out_dir) / "adapter").mkdir(parents=True)
        (Path(out_dir) / "adapter" / "adapter_model.safetensors").write_text(f"{kind} {out_dir}")
        return {"final_step": 2}

    def run_pseudolabel(cfg, *, catalog, out, adapter, limit, reuse_chains_from=None, truth=None, verbose,
                        greedy=False, label=None):
        if greedy:  # the pool decoded greedily (eval.pool_greedy)
            calls.append(("pool-greedy", out, adapter, limit))
            return {"counts": {}}
        calls.append(("pseudolabel", cfg.pseudolabel.round, out, adapter, reuse_chains_from, truth))
        return {"counts": counts[cfg.pseudolabel.round]}

    def run_evaluate(cfg, *, adapter, out, verbose, test=None, mode="greedy", label=None):
        if mode == "vote" or test is not None:  # the vote on the test split, the fit on the seed split
            calls.append((mode if mode == "vote" else "fit", adapter, out, test))
            acc = 0.75 if mode == "vote" else 0.875
            return {"accuracy": acc, "parse_failure_rate": 0.0, "scored": 8, "mode": mode, "num_chains": 7,
                    "temperature": 1.0}
        calls.append(("eval", adapter, out))
        acc = 0.25 + 0.125 * len([c for c in calls if c[0] == "eval"])
        return {"accuracy": acc, "parse_failure_rate": 0.125, "scored": 8, "confusion": {},
                "per_vertical": {"watch": {"accuracy": acc, "scored": 8}}}

    monkeypatch.setattr(attrpipe.train, "run_training", run_training)
    monkeypatch.setattr(attrpipe.pseudolabel.pipeline, "run_pseudolabel", run_pseudolabel)
    monkeypatch.setattr(attrpipe.evaluation, "run_evaluate", run_evaluate)
    return calls


def _ev(acc: float) -> dict:
    """What the loop records of a fake evaluation (above)."""
    return {"accuracy": acc, "parse_failure_rate": 0.125, "scored": 8, "per_vertical": {"watch": acc}}


def _without_seconds(manifest: dict) -> dict:
    """Each stage's result without when it ran and how long it took (checked here: in order, and consistent)."""
    for r in manifest["finished"].values():
        assert r["seconds"] >= 0 and r["ended_at"] >= r["started_at"] > 1.7e9
    return {name: {k: v for k, v in r.items() if k not in ("seconds", "started_at", "ended_at")}
            for name, r in manifest["finished"].items()}


def test_run_loop_runs_each_stage_kind_records_its_result_and_resumes_after_the_last_finished(tmp_path, monkeypatch):
    """Every stage kind through fakes of the commands it runs (no Ray): what each records in loop.json, a round with
    no pairs carrying its adapter over, a stop and a rerun that goes on from the first unfinished stage, and a
    study arm taking the seed SFT and round 1's chains from another run."""
    import json

    from attrpipe.config import load_config
    from attrpipe.loop import run_loop

    calls = _fake_stage_commands(monkeypatch, {1: {"kept": 3, "pairs": 2}, 2: {"kept": 1, "pairs": 0}})
    cfg = load_config("conf/tiny_cpu.yaml", [f"run.output_dir={tmp_path}", "run.name=a", "loop.rounds=2",
                                             "data.truth=null"])
    run = str(tmp_path / "a")
    first = run_loop(cfg, verbose=False, _stop_after="round-1/train")
    assert list(first["finished"]) == ["sft", "sft/eval", "round-1/pseudolabel", "round-1/train"]
    assert [c[0] for c in calls] == ["train", "eval", "pseudolabel", "train"]
    del calls[:]
    manifest = run_loop(cfg, verbose=False)
    assert [c[0] for c in calls] == ["eval", "pseudolabel", "eval"]  # nothing finished ran again; round 2: no pairs
    assert calls[1] == ("pseudolabel", 2, f"{run}/round-2/pseudolabels", f"{run}/round-1/adapter", None, None)
    assert _without_seconds(manifest) == {
        "sft": {"adapter": f"{run}/sft/adapter", "final_step": 2},
        "sft/eval": _ev(0.375),
        "round-1/pseudolabel": {"counts": {"kept": 3, "pairs": 2}},
        "round-1/train": {"adapter": f"{run}/round-1/adapter", "final_step": 2, "start": "sft/adapter",
                          "reference": "sft/adapter"},
        "round-1/eval": _ev(0.375),
        "round-2/pseudolabel": {"counts": {"kept": 1, "pairs": 0}},
        "round-2/train": {"adapter": f"{run}/round-2/adapter",
                          "skipped": "no pairs; adapter copied unchanged from round-1/adapter"},
        "round-2/eval": _ev(0.5),
    }
    assert json.loads((tmp_path / "a" / "loop.json").read_text()) == manifest
    assert sorted(manifest["stages"]) == sorted(manifest["finished"]) and manifest["method"] == "dpo"
    assert (tmp_path / "a/round-2/adapter/adapter_model.safetensors").read_text() == f"dpo {run}/round-1"

    del calls[:]  # a study arm: SL from the shared seed SFT of run a and its round-1 chains, one round
    arm = load_config("conf/tiny_cpu.yaml", [f"run.output_dir={tmp_path}", "run.name=b", "loop.rounds=1",
                                             "loop.method=sl", "data.truth=null"])
    b = str(tmp_path / "b")
    out = run_loop(arm, shared={"sft": run, "chains": "/chains"}, verbose=False)
    assert [c[:2] for c in calls] == [("pseudolabel", 1), ("train", "sl"), ("eval", f"{b}/round-1/adapter")]
    assert calls[0][4] == "/chains"
    assert calls[1][3:5] == (f"{b}/round-1/pseudolabels/consensus", f"{b}/sft/adapter")
    assert _without_seconds(out) == {
        "sft": {"adapter": f"{b}/sft/adapter", "shared_from": f"{run}/sft/adapter"},
        "sft/eval": {**_ev(0.375), "shared_from": f"{run}/sft/eval"},
        "round-1/pseudolabel": {"counts": {"kept": 3, "pairs": 2}, "reused_chains_from": "/chains"},
        "round-1/train": {"adapter": f"{b}/round-1/adapter", "final_step": 2, "start": "sft/adapter"},
        "round-1/eval": _ev(0.375),
    }
    assert (tmp_path / "b/sft/adapter/adapter_model.safetensors").read_text() == f"sft {run}/sft"

    del calls[:]  # no seed SFT ("PT"): a fresh adapter on the base, DPO against the base with the adapter disabled
    pt = load_config("conf/tiny_cpu.yaml", [f"run.output_dir={tmp_path}", "run.name=c", "loop.rounds=1",
                                            "loop.seed_sft=false", "data.truth=null"])
    c = str(tmp_path / "c")
    out = run_loop(pt, verbose=False)
    assert calls[0] == ("pseudolabel", 1, f"{c}/round-1/pseudolabels", None, None, None)
    assert calls[1] == ("train", "dpo", f"{c}/round-1", f"{c}/round-1/pseudolabels/pairs", None, None, None, "base",
                        "base")
    assert _without_seconds(out)["round-1/train"] == {"adapter": f"{c}/round-1/adapter", "final_step": 2,
                                                      "start": "base", "reference": "base"}


def test_a_second_process_on_a_loop_run_waits_for_the_first_then_skips_what_it_finished(tmp_path, monkeypatch,
                                                                                         capsys):
    """Two processes on one run directory (two study commands of one seed share its seed SFT) run one after the
    other: the second says it waits, runs once the first has ended, and the lock goes with the process."""
    import threading

    from attrpipe import storage
    from attrpipe.config import load_config
    from attrpipe.loop import run_loop

    calls = _fake_stage_commands(monkeypatch, {1: {"kept": 3, "pairs": 2}})
    cfg = load_config("conf/tiny_cpu.yaml", [f"run.output_dir={tmp_path}", "run.name=a", "loop.rounds=1",
                                             "data.truth=null"])
    result = {}
    with storage.locked(str(tmp_path / "a" / ".loop")):  # the first process, at work on the run
        second = threading.Thread(target=lambda: result.update(run_loop(cfg, verbose=False)))
        second.start()
        second.join(1.0)
        assert second.is_alive() and not (tmp_path / "a" / "loop.json").exists() and not calls  # it waits
    second.join(60)
    assert "another process is at work on it; waiting" in capsys.readouterr().err
    assert "round-1/eval" in result["finished"]
    del calls[:]
    run_loop(cfg, verbose=False)  # the lock went with the process that held it: a later run resumes at once
    assert not calls


def test_the_seed_sft_is_measured_on_its_own_labels_and_every_adapter_by_its_vote(tmp_path, monkeypatch):
    """eval.fit: the seed SFT's greedy accuracy on the seed split; eval.vote: each evaluated adapter's vote on the test
    split. A run that finished without them gains them on rerun, and nothing else runs again."""
    from attrpipe.config import load_config
    from attrpipe.loop import run_loop

    calls = _fake_stage_commands(monkeypatch, {1: {"pairs": 3, "kept": 2}})
    over = [f"run.output_dir={tmp_path}", "run.name=r", "loop.rounds=1"]
    run_loop(load_config("conf/tiny_cpu.yaml", over), verbose=False)
    assert [c[0] for c in calls] == ["train", "eval", "pseudolabel", "train", "eval"]
    calls.clear()
    cfg = load_config("conf/tiny_cpu.yaml", [*over, "eval.fit=true", "eval.vote=true"])
    m = run_loop(cfg, verbose=False)
    run = tmp_path / "r"
    assert calls == [("vote", str(run / "sft/adapter"), str(run / "sft/eval/vote"), None),
                     ("fit", str(run / "sft/adapter"), str(run / "sft/eval/fit"), cfg.data.seed),
                     ("vote", str(run / "round-1/adapter"), str(run / "round-1/eval/vote"), None)]
    sft = m["finished"]["sft/eval"]
    assert sft["vote"] == {"accuracy": 0.75, "parse_failure_rate": 0.0, "scored": 8, "num_chains": 7,
                           "temperature": 1.0}
    assert sft["fit"]["accuracy"] == 0.875 and "fit" not in m["finished"]["round-1/eval"]
    assert m["finished"]["round-1/eval"]["vote"]["accuracy"] == 0.75
    calls.clear()
    run_loop(cfg, verbose=False)
    assert calls == []  # measured once


def test_a_plotted_accuracy_carries_its_standard_error(tmp_path):
    """Over seeds: the standard error of their mean; one evaluation: the binomial one. The demo's +0.9 on 216 answers
    is inside it (about 3.4 points), and the rounds plot draws it as a bar."""
    import math

    from attrpipe.report import _plot_rounds, standard_error

    assert standard_error(0.45, scored=216) == pytest.approx(math.sqrt(0.45 * 0.55 / 216))
    assert 100 * standard_error(0.449, scored=216) > 3 > 0.9
    assert standard_error(0.45, std=0.02, seeds=4) == pytest.approx(0.01)
    assert standard_error(0.45, std=0.02, seeds=1, scored=100) == pytest.approx(math.sqrt(0.45 * 0.55 / 100))
    assert standard_error(None) == 0.0 and standard_error(0.5) == 0.0
    m = {"method": "dpo", "stages": ["sft/eval", "round-1/eval"],
         "finished": {"sft/eval": {"accuracy": 0.449, "scored": 216}, "round-1/eval": {"accuracy": 0.458,
                                                                                      "scored": 216}}}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    captured = {}
    real = plt.subplots

    def spy(*a, **k):
        fig, ax = real(*a, **k)
        captured["ax"] = ax
        return fig, ax

    plt.subplots = spy
    try:
        _plot_rounds([("demo", m)], str(tmp_path / "r.png"))
    finally:
        plt.subplots = real
    low, high = captured["ax"].get_ylim()
    assert high - low > 2 * 100 * standard_error(0.449, scored=216)  # the bars, not the 0.9 points, set the scale
    assert (tmp_path / "r.png").stat().st_size > 0


@pytest.mark.parametrize("method,kind,data,sft_weight", [("dpo", "dpo", "pairs", 0.0),
                                                         ("dpo-nll", "dpo", "pairs", 0.5),
                                                         ("scpo", "scpo", "consensus", 0.0)])
def test_each_preference_method_trains_as_its_kind_on_its_shards(tmp_path, monkeypatch, method, kind, data,
                                                                  sft_weight):
    """dpo-nll: DPO on the pairs with dpo.sft_weight = dpo.nll_weight; scpo: its own kind, on the consensus shards,
    against the frozen seed SFT adapter as DPO is."""
    import attrpipe.train
    from attrpipe.config import load_config
    from attrpipe.loop import run_loop

    calls = _fake_stage_commands(monkeypatch, {1: {"pairs": 3, "kept": 2}})
    seen = []
    fake = attrpipe.train.run_training

    def spy(kind, cfg, **kw):
        seen.append((kind, kw.get("data"), float(cfg.dpo.sft_weight), kw.get("reference_adapter")))
        return fake(kind, cfg, **kw)

    monkeypatch.setattr(attrpipe.train, "run_training", spy)
    cfg = load_config("conf/tiny_cpu.yaml", [f"run.output_dir={tmp_path}", "run.name=r", "loop.rounds=1",
                                             f"loop.method={method}", "dpo.nll_weight=0.5"])
    m = run_loop(cfg, verbose=False)
    pl = str(tmp_path / "r" / "round-1" / "pseudolabels" / data)
    assert seen[1] == (kind, pl, sft_weight, None) and m["finished"]["round-1/train"]["reference"] == "sft/adapter"
    assert [c[0] for c in calls] == ["train", "eval", "pseudolabel", "train", "eval"]
