"""Taxonomy loading and validation: every malformed file is a TaxonomyError naming the file and the key."""

from pathlib import Path

import pytest
import yaml

from attrpipe.taxonomy import CATEGORY_ATTRIBUTE, TaxonomyError, load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
TAXONOMY = ROOT / "conf" / "taxonomy"
DISPLAY_NAMES = {
    "sandal", "ethnic set", "kurta", "shoe", "slipper flip-flop", "trouser", "t-shirt", "top", "shirt", "suitcase",
    "sari", "watch",
}


def _vertical(**overrides) -> dict:
    data = {
        "name": "suitcase",
        "display_name": "suitcase",
        "attributes": {
            "pattern": {"description": "The shell's pattern.", "inferable": True, "values": ["Solid", "Striped"]},
            "warranty": {"description": "The warranty.", "inferable": False, "values": ["1 Year", "2 Years"]},
        },
    }
    data.update(overrides)
    return data


def _write(tmp_path: Path, data: object, stem: str = "suitcase") -> Path:
    d = tmp_path / "taxonomy"
    d.mkdir(exist_ok=True)
    (d / f"{stem}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return d


def _with_attr(**spec) -> dict:
    data = _vertical()
    data["attributes"]["pattern"] = {"description": "The shell's pattern.", "inferable": True,
                                     "values": ["Solid", "Striped"], **spec}
    return data


def test_a_valid_file_loads(tmp_path):
    tax = load_taxonomy(_write(tmp_path, _vertical()))
    v = tax.vertical("suitcase")
    assert v.attributes["pattern"].values == ("Solid", "Striped")
    assert [a.name for a in v.inferable_attributes()] == ["pattern"]
    assert v.attributes["warranty"].inferable is False


def test_empty_values_list(tmp_path):
    with pytest.raises(TaxonomyError, match=r"suitcase\.yaml.*'pattern'.*values.*got 0"):
        load_taxonomy(_write(tmp_path, _with_attr(values=[])))


def test_values_must_be_a_list(tmp_path):
    with pytest.raises(TaxonomyError, match=r"attributes\.pattern\.values"):
        load_taxonomy(_write(tmp_path, _with_attr(values="Solid, Striped")))


@pytest.mark.parametrize(
    "values, dup",
    [(["Solid", "Solid"], "Solid"), (["Polka Dot", "polka-dot"], "polka-dot"), (["T-Shirt", "t shirt"], "t shirt")],
)
def test_duplicate_values_after_normalising(tmp_path, values, dup):
    with pytest.raises(TaxonomyError, match=rf"'pattern'.*{dup!r} duplicates"):
        load_taxonomy(_write(tmp_path, _with_attr(values=values)))


def test_unknown_key_at_vertical_level(tmp_path):
    with pytest.raises(TaxonomyError, match=r"suitcase\.yaml.*unknown key.*'colour_map'"):
        load_taxonomy(_write(tmp_path, _vertical(colour_map={})))


def test_unknown_key_at_attribute_level(tmp_path):
    with pytest.raises(TaxonomyError, match=r"attributes\.pattern.*unknown key.*'default'"):
        load_taxonomy(_write(tmp_path, _with_attr(default="Solid")))


def test_name_must_equal_file_stem(tmp_path):
    with pytest.raises(TaxonomyError, match=r"name 'suitcase' must equal the file name 'luggage'"):
        load_taxonomy(_write(tmp_path, _vertical(), stem="luggage"))


def test_category_is_reserved(tmp_path):
    data = _vertical()
    data["attributes"][CATEGORY_ATTRIBUTE] = {"description": "x", "values": ["a", "b"]}
    with pytest.raises(TaxonomyError, match=r"attributes\.category.*reserved"):
        load_taxonomy(_write(tmp_path, data))


@pytest.mark.parametrize("bad", ["true", 1, "no", None])
def test_inferable_must_be_a_bool(tmp_path, bad):
    with pytest.raises(TaxonomyError, match=r"'pattern'\.inferable: must be true or false"):
        load_taxonomy(_write(tmp_path, _with_attr(inferable=bad)))


def test_other_malformed_files(tmp_path):
    with pytest.raises(TaxonomyError, match="top level"):
        load_taxonomy(_write(tmp_path, ["not", "a", "mapping"]))
    with pytest.raises(TaxonomyError, match=r"attributes: must be a non-empty mapping"):
        load_taxonomy(_write(tmp_path, _vertical(attributes={})))
    with pytest.raises(TaxonomyError, match=r"'pattern'\.description"):
        load_taxonomy(_write(tmp_path, _with_attr(description="  ")))
    with pytest.raises(TaxonomyError, match="does not exist"):
        load_taxonomy(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaxonomyError, match="no \\*.yaml"):
        load_taxonomy(tmp_path / "empty")


def test_category_attribute_lists_the_display_names():
    tax = load_taxonomy(TAXONOMY)
    cat = tax.category_attribute()
    assert cat.name == CATEGORY_ATTRIBUTE and cat.inferable
    assert set(cat.values) == DISPLAY_NAMES and len(cat.values) == 12
    assert tax.attribute("suitcase", CATEGORY_ATTRIBUTE) == cat
    for v in tax.verticals.values():
        assert tax.vertical_for_display_name(v.display_name) == v.name


def test_subset_keeps_only_the_named_verticals():
    tax = load_taxonomy(TAXONOMY, ["watch", "suitcase"])
    assert list(tax.verticals) == ["watch", "suitcase"]
    with pytest.raises(TaxonomyError, match="unknown verticals"):
        load_taxonomy(TAXONOMY, ["spaceship"])
