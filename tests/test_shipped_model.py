"""The vision stage of `attrpipe synth pretrain` (its pure parts) and shipped model directories: the model card's
sha256 table, checked on every load, a changed or missing file refused in one line."""

import json

import pytest

from attrpipe.models.loader import (MODEL_CARD_FILE, ModelChecksumError, file_sha256, load_processor,
                                    verify_model_files)
from attrpipe.synth.vision import VERTICAL_HEAD, head_spec, product_view, targets
from attrpipe.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy("conf/taxonomy")


def test_every_inferable_attribute_has_a_head_with_its_values():
    spec = head_spec(TAXONOMY)
    assert spec[VERTICAL_HEAD] == tuple(sorted(TAXONOMY.verticals))
    for name, vertical in TAXONOMY.verticals.items():
        for a in vertical.inferable_attributes():
            assert spec[f"{name}.{a.name}"] == tuple(a.values)
        for a in vertical.attributes.values() if isinstance(vertical.attributes, dict) else vertical.attributes:
            if not a.inferable:
                assert f"{name}.{a.name}" not in spec  # what the images cannot show is never a target


@pytest.mark.parametrize("i", range(4))
def test_a_product_view_is_a_pure_function_of_seed_and_index_and_its_targets_are_its_labels(i):
    vertical, visible, image = product_view(3, i, TAXONOMY, 56)
    again = product_view(3, i, TAXONOMY, 56)
    assert (vertical, visible) == again[:2] and image.tobytes() == again[2].tobytes()
    assert image.size == (56, 56) and image.mode == "RGB"
    spec = head_spec(TAXONOMY)
    got = dict(targets(spec, vertical, visible))
    assert spec[VERTICAL_HEAD][got.pop(VERTICAL_HEAD)] == vertical
    assert {key.split(".", 1)[1]: spec[key][y] for key, y in got.items()} == visible
    assert product_view(4, i, TAXONOMY, 56)[2].tobytes() != image.tobytes()  # another stream, another product


def test_product_views_never_come_from_the_catalogs_listing_streams():
    from attrpipe.synth.catalog import listing_rng

    # the catalog seeds each listing from sha256(seed, split, vertical, index); the vision stage from its own string
    # key "vision:<seed>:<i>": the two streams' first draws differ
    import random

    assert random.Random("vision:0:0").random() != listing_rng(0, "seed", "watch", 0).random()


def _card(d, files):
    (d / MODEL_CARD_FILE).write_text(json.dumps({"sha256": {n: file_sha256(d / n) for n in files}}))


def test_a_model_card_is_checked_file_by_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "config.json").write_text("{}")
    assert verify_model_files(tmp_path) is None  # no card: nothing to check
    _card(tmp_path, ["model.safetensors", "config.json"])
    assert set(verify_model_files(tmp_path)["sha256"]) == {"model.safetensors", "config.json"}
    (tmp_path / "model.safetensors").write_bytes(b"weightz")
    with pytest.raises(ModelChecksumError, match=r"model\.safetensors: sha256 .* does not match"):
        verify_model_files(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelChecksumError, match="is missing"):
        verify_model_files(tmp_path)
    (tmp_path / MODEL_CARD_FILE).write_text("[]")
    with pytest.raises(ModelChecksumError, match="not a model card"):
        verify_model_files(tmp_path)


def test_the_loader_refuses_a_model_whose_weights_changed(tmp_path):
    from attrpipe.models.loader import load_model
    from attrpipe.models.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "m", seed=0)
    files = sorted(p.name for p in model.iterdir() if p.is_file())
    _card(model, files)
    load_model(str(model))  # whole: loads
    load_processor(str(model))
    with open(model / "model.safetensors", "r+b") as f:  # one byte flipped near the end of the weights
        f.seek(-3, 2)
        b = f.read(1)
        f.seek(-3, 2)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(ModelChecksumError):
        load_model(str(model))


def test_the_cli_names_a_changed_model_in_one_line(tmp_path, capsys):
    from attrpipe.cli import main
    from attrpipe.models.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "m", seed=0)
    _card(model, ["model.safetensors"])
    (model / "model.safetensors").write_bytes(b"not the weights")
    capsys.readouterr()
    code = main(["evaluate", "conf/tiny_cpu.yaml", f"model.path={model}", "--test", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("attrpipe: error: ") and "sha256" in err[0]
