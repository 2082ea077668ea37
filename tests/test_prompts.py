from attrpipe.prompts import SYSTEM_PROMPT, build_messages, format_target, user_text
from attrpipe.taxonomy import Attribute, Taxonomy, Vertical

WHEELS = Attribute("number_of_wheels", "How many wheels the suitcase stands on.", ("2", "4", "8"))


def test_system_prompt_is_the_methods():
    assert SYSTEM_PROMPT == "Respond in the following format:<reasoning> ... </reasoning><answer> ... </answer>"


def test_user_text_is_table_3():
    assert user_text(WHEELS, "suitcase") == (
        "what is the most suitable value for number of wheels for this suitcase. "
        "How many wheels the suitcase stands on. Options: 2, 4, 8"
    )


def test_messages_have_one_image_slot_per_image_before_the_text():
    m = build_messages(WHEELS, "suitcase", 3)
    assert [x["role"] for x in m] == ["system", "user"]
    assert m[0]["content"] == [{"type": "text", "text": SYSTEM_PROMPT}]
    content = m[1]["content"]
    assert content[:3] == [{"type": "image"}] * 3
    assert content[3]["type"] == "text" and content[3]["text"] == user_text(WHEELS, "suitcase")
    assert len(build_messages(WHEELS, "suitcase", 0)[1]["content"]) == 1


def test_prompt_prefix_is_shared_by_a_listings_attributes():
    other = Attribute("pattern", "The shell's pattern.", ("Solid", "Striped"))
    a, b = build_messages(WHEELS, "suitcase", 2), build_messages(other, "suitcase", 2)
    assert a[0] == b[0] and a[1]["content"][:2] == b[1]["content"][:2]


def test_target_format():
    assert format_target(" four wheels at the base ", "4") == (
        "<reasoning> four wheels at the base </reasoning><answer> 4 </answer>"
    )


def test_category_question_uses_the_same_machinery():
    tax = Taxonomy(
        {
            "watch": Vertical("watch", "watch", {"dial_shape": Attribute("dial_shape", "Dial shape.", ("Round", "Square"))}),
            "sari": Vertical("sari", "sari", {"border": Attribute("border", "Border width.", ("Narrow", "Wide"))}),
        }
    )
    cat = tax.category_attribute()
    assert cat.values == ("watch", "sari")
    text = user_text(cat, "watch")
    assert text.startswith("what is the most suitable value for category for this product.")
    assert text.endswith("Options: watch, sari")
    assert tax.attribute("watch", "category") == cat
