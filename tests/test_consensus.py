import pytest

from attrpipe.consensus import Pair, compute_consensus, example_id, is_kept, make_pairs

S, T, P = "Solid", "Striped", "Printed"


def test_four_of_seven_agree_kept_with_three_pairs():
    values = [S, S, T, None, S, P, S]
    c = compute_consensus(values)
    assert c.value == S
    assert c.n_agree == 4 and c.n_chains == 7 and c.n_valid == 6
    assert c.confidence == pytest.approx(4 / 7)
    assert c.preferred == (0, 1, 4, 6)
    assert c.dispreferred == (2, 3, 5)
    assert is_kept(c, 0.5)
    pairs = make_pairs(c, 0.5, seed=0, ex_id="L1::pattern")
    assert len(pairs) == 3
    assert [p.rejected for p in pairs] == [2, 3, 5]
    assert all(p.chosen in c.preferred for p in pairs)


def test_three_of_seven_dropped_no_pairs():
    values = [S, S, S, T, T, P, None]
    c = compute_consensus(values)
    assert c.value == S and c.confidence == pytest.approx(3 / 7)
    assert not is_kept(c, 0.5)
    assert make_pairs(c, 0.5, seed=0, ex_id="x") == []


def test_seven_of_seven_kept_as_label_zero_pairs():
    c = compute_consensus([T] * 7)
    assert c.value == T and c.confidence == 1.0 and is_kept(c, 0.5)
    assert c.dispreferred == ()
    assert make_pairs(c, 0.5, seed=0, ex_id="x") == []


def test_unparseable_chains_count_against_and_cannot_be_consensus():
    c = compute_consensus([None, None, None, None, S, S, T])
    assert c.value == S
    assert c.confidence == pytest.approx(2 / 7)
    assert set(c.dispreferred) == {0, 1, 2, 3, 6}


def test_no_valid_chain_no_consensus():
    c = compute_consensus([None] * 7)
    assert c.value is None and c.confidence == 0.0 and c.n_valid == 0
    assert not is_kept(c, 0.0)
    assert c.dispreferred == tuple(range(7))
    assert make_pairs(c, 0.0, seed=0, ex_id="x") == []


def test_tie_broken_by_earliest_chain_and_flagged():
    c = compute_consensus([None, T, S, S, T, P, None])
    assert c.tied
    assert c.value == T  # T first appears at chain 1, S at chain 2
    c2 = compute_consensus([S, T, T, S])
    assert c2.value == S and c2.tied
    assert not compute_consensus([S, S, T]).tied


def test_threshold_boundary_is_exact():
    c = compute_consensus([S, S, S, S, T, T, T, T])  # 4/8 == 0.5 exactly, a tie
    assert is_kept(c, 0.5)
    c7 = compute_consensus([S] * 5 + [T, T])  # 5/7 = 0.714...
    assert is_kept(c7, 0.7) and not is_kept(c7, 0.72)
    assert is_kept(compute_consensus([S] * 7), 1.0)


def test_pairs_are_deterministic_per_seed_and_example_and_vary_between_them():
    values = [S, S, S, S, S, T, P]  # 5 preferred, 2 dispreferred
    c = compute_consensus(values)
    a = make_pairs(c, 0.5, seed=1, ex_id=example_id("L1", "pattern"))
    assert a == make_pairs(c, 0.5, seed=1, ex_id=example_id("L1", "pattern"))
    draws = {
        tuple(p.chosen for p in make_pairs(c, 0.5, seed=s, ex_id=example_id(f"L{i}", "pattern")))
        for s in range(5)
        for i in range(10)
    }
    assert len(draws) > 5  # the draw really depends on (seed, example)
    assert all(isinstance(p, Pair) for p in a)


def test_example_id():
    assert example_id("L1", "pattern") == "L1::pattern"


def test_score_chains_end_to_end_from_texts():
    from attrpipe.scoring import score_chains
    from attrpipe.taxonomy import Attribute

    attr = Attribute("pattern", "The pattern.", (S, T, P))
    texts = [f"<reasoning>r{i}</reasoning><answer>{a}</answer>" for i, a in enumerate(["solid", "Solid", "striped", "SOLID", "x", "solid."])]
    texts.append("no tags at all")
    ex = score_chains(texts, attr, threshold=0.5, seed=3, ex_id="L9::pattern")
    assert ex.consensus.value == S and ex.consensus.n_agree == 4 and ex.kept
    assert [p.rejected for p in ex.pairs] == [2, 4, 6]
    assert ex.chains[4].reason == "out_of_set" and ex.chains[6].reason == "no_answer_tag"
    assert all(ex.chains[p.chosen].value == S for p in ex.pairs)
