import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attrpipe.parsing import NoAnswer, match_value, normalize_value, parse_generation

PATTERNS = ("Solid", "Striped", "Polka Dot", "Animal Print", "Self Design")
WHEELS = ("2", "4", "8")


def gen(reasoning: str, answer: str) -> str:
    return f"<reasoning> {reasoning} </reasoning><answer> {answer} </answer>"


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Striped", "Striped"),
        ("striped", "Striped"),
        ("  STRIPED  ", "Striped"),
        ("polka-dot", "Polka Dot"),
        ("Polka  Dot.", "Polka Dot"),
        ("polkadot", "Polka Dot"),
        ('"Animal Print"', "Animal Print"),
        ("self_design", "Self Design"),
        ("（Solid）", "Solid"),  # full-width brackets fold under NFKC
    ],
)
def test_answer_maps_to_exactly_one_allowed_value(answer, expected):
    p = parse_generation(gen("the shell shows lines", answer), PATTERNS)
    assert p.ok and p.value == expected and p.reason is None
    assert p.reasoning == "the shell shows lines"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", NoAnswer.EMPTY_OUTPUT),
        ("   \n ", NoAnswer.EMPTY_OUTPUT),
        ("Striped", NoAnswer.NO_ANSWER_TAG),
        ("<reasoning> lines </reasoning>", NoAnswer.NO_ANSWER_TAG),
        ("<reasoning> lines </reasoning><answer> Strip", NoAnswer.UNCLOSED_ANSWER_TAG),
        (gen("x", ""), NoAnswer.EMPTY_ANSWER),
        (gen("x", "..."), NoAnswer.EMPTY_ANSWER),
        (gen("x", "Checkered"), NoAnswer.OUT_OF_SET),
        (gen("x", "striped pattern"), NoAnswer.OUT_OF_SET),
        (gen("x", "not striped"), NoAnswer.OUT_OF_SET),
        (gen("x", "Striped or Solid"), NoAnswer.SEVERAL_VALUES),
        (gen("x", "Striped, Solid"), NoAnswer.SEVERAL_VALUES),
        (gen("x", "Solid / Polka Dot"), NoAnswer.SEVERAL_VALUES),
        (gen("x", "Solid") + "<answer>Striped</answer>", NoAnswer.CONFLICTING_ANSWERS),
    ],
)
def test_no_answer_with_reason(text, reason):
    p = parse_generation(text, PATTERNS)
    assert not p.ok and p.value is None
    assert p.reason == reason


def test_repeated_same_answer_and_tag_variants_are_accepted():
    p = parse_generation("<Reasoning>a</Reasoning>< answer >4</answer> <ANSWER>4</ ANSWER>", WHEELS)
    assert p.value == "4"
    assert p.reasoning == "a"


def test_missing_reasoning_still_answers():
    p = parse_generation("<answer> 8 </answer>", WHEELS)
    assert p.value == "8" and p.reasoning is None


def test_numbers_are_not_confused():
    assert parse_generation(gen("", "48"), WHEELS).value is None
    assert parse_generation(gen("", "4 wheels"), WHEELS).value is None


def test_match_value_rejects_indistinguishable_allowed_values():
    with pytest.raises(ValueError, match="indistinguishable"):
        match_value("x", ("Polka Dot", "polka-dot"))


def test_normalize_value_non_ascii():
    assert normalize_value("Bandhani Ｐrint") == normalize_value("bandhani print")
    assert normalize_value("Zari-Kāam") == "zarikāam"


value_sets = st.lists(
    st.text(alphabet=st.characters(categories=("L", "N", "Zs", "P")), min_size=1, max_size=12).filter(
        lambda s: normalize_value(s) != "" and s == s.strip()
    ),
    min_size=2,
    max_size=8,
    unique_by=normalize_value,
)


@settings(max_examples=300, deadline=None)
@given(allowed=value_sets, text=st.text(max_size=200))
def test_fuzz_never_crashes_and_never_accepts_out_of_set(allowed, text):
    p = parse_generation(text, allowed)
    assert (p.value is None) != (p.reason is None)
    if p.value is not None:
        assert p.value in allowed
    else:
        assert p.reason in NoAnswer.ALL


@settings(max_examples=300, deadline=None)
@given(allowed=value_sets, data=st.data())
def test_fuzz_wrapped_allowed_value_is_recovered(allowed, data):
    value = data.draw(st.sampled_from(allowed))
    noise = data.draw(st.sampled_from(["", " ", "  ", ".", "\n", "\t"]))
    reasoning = data.draw(st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=80))
    styled = data.draw(st.sampled_from([str.upper, str.lower, str.title, lambda s: s]))(value)
    text = f"<reasoning>{reasoning}</reasoning><answer>{noise}{styled}{noise}</answer>"
    p = parse_generation(text, allowed)
    # Case changes may collide with another value only if normalisation says so; then it must still be in-set.
    if normalize_value(styled) == normalize_value(value):
        assert p.value == value
    assert p.value is None or p.value in allowed


@settings(max_examples=200, deadline=None)
@given(allowed=value_sets, junk=st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=40))
def test_fuzz_adversarial_answer_contents(allowed, junk):
    text = f"<answer>{junk}</answer>"
    p = parse_generation(text, allowed)
    matches = [v for v in allowed if normalize_value(v) == normalize_value(junk)]
    if matches:
        assert p.value == matches[0]
    else:
        assert p.value is None
