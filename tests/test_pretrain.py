"""`attrpipe synth pretrain`: the generic visual questions (pure), the pretrain training kind's plan, the sized model
builder, and (slow) the whole recipe on a few questions through Ray Train, cached on rerun."""

import io
import json
import math
import random
from collections import Counter

import pytest
from PIL import Image

from attrpipe.config import load_config
from attrpipe.prompts import OPTIONS_SEPARATOR
from attrpipe.synth.render.colours import COLOURS, PATTERNS
from attrpipe.synth.vqa import (KINDS, MAX_COUNT, SCHEDULE, SHAPES, render_attribute, render_vqa, vqa_corpus,
                                vqa_examples, vqa_records)
from attrpipe.synth.catalog import part_described
from attrpipe.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy("conf/taxonomy")
from attrpipe.train.plan import default_paths, hyperparameters, output_subdir, resolve_start


def test_questions_are_deterministic_and_well_formed():
    a = list(vqa_examples(20, seed=3, size=64, taxonomy=TAXONOMY))
    b = list(vqa_examples(20, seed=3, size=64, taxonomy=TAXONOMY))
    assert [(x.user_text, x.target, x.image.tobytes()) for x in a] == [(x.user_text, x.target, x.image.tobytes())
                                                                         for x in b]
    assert [x.kind for x in a[:len(SCHEDULE)]] == list(SCHEDULE) and set(KINDS) - set(SCHEDULE) == {"view"}
    assert "caption" not in {x.kind for x in vqa_examples(10, seed=3, size=64)}  # no taxonomy: no products
    products = {v.display_name for v in TAXONOMY.verticals.values()}
    pools = {"colour": set(COLOURS), "swatch_colour": set(COLOURS), "shape": set(SHAPES), "pattern": set(PATTERNS),
             "count": {str(k) for k in range(1, MAX_COUNT + 1)}, "caption": products,
             "part": {val for v in TAXONOMY.verticals.values() for a in v.inferable_attributes()
                      if part_described(v, a) for val in a.values},
             "feature": {val for v in TAXONOMY.verticals.values() for a in v.inferable_attributes()
                         if not part_described(v, a) for val in a.values}}
    for x in a:
        assert x.image.size == (64, 64) and x.image.mode == "RGB"
        assert x.answer in x.options and len(set(x.options)) == len(x.options)
        assert len(x.options) == 5 or x.kind == "feature" and 2 <= len(x.options) <= 5
        assert set(x.options) <= pools[x.kind]
        assert x.target.endswith(f"<answer> {x.answer} </answer>") and x.target.startswith("<reasoning> ")
        assert "most suitable value" not in x.user_text  # never the task's question
    for x in (x for x in a if x.kind == "caption"):  # a product described, never an attribute's option list
        vertical = next(v for v in TAXONOMY.verticals.values() if v.display_name == x.answer)
        assert 1 <= x.reasoning.count(".") <= 3 + x.reasoning.count("Dr.")
        assert not any(OPTIONS_SEPARATOR.join(att.values) in x.user_text for att in vertical.attributes.values())
    assert list(vqa_examples(5, seed=4, size=64))[0].image.tobytes() != a[0].image.tobytes()


def _dominant_non_background(img: Image.Image) -> tuple[int, int, int]:
    counts = Counter(map(tuple, __import__("numpy").asarray(img).reshape(-1, 3).tolist()))
    (bg, _), *rest = counts.most_common()
    far = [(c, n) for c, n in rest if math.dist(c, bg) > 60]
    return max(far, key=lambda cn: cn[1])[0]


@pytest.mark.parametrize("seed", range(12))
def test_a_colour_question_shows_a_figure_of_that_colour(seed):
    ex = render_vqa(random.Random(seed), 112, "colour")
    seen = _dominant_non_background(ex.image)
    nearest = min(COLOURS, key=lambda name: math.dist(COLOURS[name], seen))
    assert math.dist(COLOURS[ex.answer], seen) < 25, (ex.answer, seen, nearest)


def test_records_feed_the_training_examples():
    from attrpipe.train.examples import RECORD_SCHEMA, records_to_table, sft_example

    recs = list(vqa_records(vqa_examples(3, seed=0, size=56)))
    table = records_to_table(recs)
    assert table.schema == RECORD_SCHEMA and table.num_rows == 3
    img = Image.open(io.BytesIO(recs[0]["image_bytes"][0]))
    assert img.size == (56, 56)
    ex = sft_example(recs[0], [img])
    assert ex["images"] == [img] and ex["completion"][0]["content"][0]["text"] == recs[0]["completion"]
    corpus = "\n".join(vqa_corpus())
    assert all(s in corpus for s in ("hexagon", "swatch", "Polka Dot", "Navy Blue"))
    assert "Churidar" not in corpus and "Churidar" in "\n".join(vqa_corpus(TAXONOMY))  # the domain's words


@pytest.mark.parametrize("seed", range(6))
def test_a_caption_describes_the_product_it_names(seed):
    """Each sentence of a caption is the visual evidence of one attribute value of the product it answers."""
    from attrpipe.synth.catalog import evidence_text

    ex = render_vqa(random.Random(seed), 96, "caption", taxonomy=TAXONOMY)
    assert ex.kind == "caption" and ex.image.size == (96, 96) and ex.answer in ex.options
    vertical = next(v for v in TAXONOMY.verticals.values() if v.display_name == ex.answer)
    possible = {evidence_text(vertical, a, v, random.Random(k)).lower()
                for a in vertical.inferable_attributes() for v in a.values for k in range(12)}
    sentences = [s.strip().lower() for s in ex.reasoning.split(". ") if s.strip()]
    assert 1 <= len(sentences) <= 3
    assert all(s.rstrip(".") in possible for s in sentences), sentences
    with pytest.raises(ValueError, match="need a taxonomy"):
        render_vqa(random.Random(seed), 96, "caption")


@pytest.mark.parametrize("seed", range(6))
def test_a_part_question_asks_a_colour_or_print_of_the_product_drawn(seed):
    from attrpipe.synth.catalog import evidence_text

    ex = render_vqa(random.Random(seed), 96, "part", taxonomy=TAXONOMY)
    assert ex.kind == "part" and ex.answer in ex.options and len(ex.options) == 5
    # the question names a part of some vertical's colour or print attribute, whose values hold every option
    asked = [(v, a) for v in TAXONOMY.verticals.values() for a in v.inferable_attributes()
             if part_described(v, a) and part_described(v, a)[1] in ex.question
             and set(ex.options) <= set(a.values)]
    assert asked, ex.question
    assert any(ex.reasoning.rstrip(".").lower() == evidence_text(v, a, ex.answer, random.Random(k)).lower()
               for v, a in asked for k in range(12))
    assert "most suitable value" not in ex.user_text


@pytest.mark.parametrize("seed", range(8))
def test_a_feature_question_asks_another_visible_attribute_of_the_product_drawn(seed):
    from attrpipe.prompts import user_text
    from attrpipe.synth.catalog import evidence_text

    ex = render_vqa(random.Random(seed), 96, "feature", taxonomy=TAXONOMY)
    assert ex.kind == "feature" and ex.answer in ex.options and 2 <= len(ex.options) <= 5
    # the question names a vertical and one of its attributes that is not a colour or print; its values hold the
    # options, and the reasoning is that value's visual evidence
    asked = [(v, a) for v in TAXONOMY.verticals.values() for a in v.inferable_attributes()
             if not part_described(v, a) and f" {v.display_name}" in ex.question
             and a.name.replace("_", " ") in ex.question and set(ex.options) <= set(a.values)]
    assert asked, ex.question
    assert any(ex.reasoning.rstrip(".").lower() == evidence_text(v, a, ex.answer, random.Random(0)).lower()
               for v, a in asked)
    # never the task's prompt: not its wording, not the attribute's description
    for v, a in asked:
        assert "most suitable value" not in ex.user_text and a.description.strip() not in ex.user_text
        assert ex.user_text != user_text(a, v.display_name)


@pytest.mark.parametrize("kind", ["part", "feature"])
def test_an_offer_of_every_value_never_in_the_taxonomys_order_with_distractors(kind):
    """``Offer(values=0, distractors=...)``: every value of the asked attribute, shuffled (never in the taxonomy's
    order), and at the offer's rate one more option that is not one of its values: the product's kind or a value of
    another of the product's attributes."""
    from attrpipe.synth.vqa import Offer

    offer = Offer(values=0, distractors=0.5)
    with_distractor = 0
    for seed in range(40):
        ex = render_vqa(random.Random(seed), 64, kind, taxonomy=TAXONOMY, offer=offer)
        assert ex.answer in ex.options and len(set(ex.options)) == len(ex.options)
        asked = [(v, a) for v in TAXONOMY.verticals.values() for a in v.inferable_attributes()
                 if ex.answer in a.values and set(a.values) <= set(ex.options)
                 and len(ex.options) - len(a.values) <= 1]
        assert asked, (ex.question, ex.options)
        assert all([o for o in ex.options if o in a.values] != list(a.values) for v, a in asked)
        extra = [o for o in ex.options if o not in asked[0][1].values]
        if extra:
            with_distractor += 1
            assert any(extra[0] == v.display_name or any(extra[0] in b.values for b in v.inferable_attributes()
                                                         if b is not a) for v, a in asked), extra
    assert 10 <= with_distractor <= 30  # about half of 40
    # the default offer is the original question set, drawn exactly as before
    a = render_vqa(random.Random(3), 64, kind, taxonomy=TAXONOMY)
    b = render_vqa(random.Random(3), 64, kind, taxonomy=TAXONOMY, offer=Offer(values=5, distractors=0.0))
    assert a == b or (a.user_text, a.target) == (b.user_text, b.target)
    with pytest.raises(ValueError, match="0 \\(all\\) or >= 2"):
        Offer(values=1)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        Offer(distractors=1.5)


@pytest.mark.parametrize("kind", ["part", "feature"])
def test_explained_reasoning_names_the_answer_in_the_teachers_generic_phrasings(kind):
    """``reasoning="explained"``: the same image, question and options as the evidence alone, and a reasoning that is
    the evidence then the answer, in one of the teacher's phrasings that do not echo the task's question."""
    from attrpipe.parsing import parse_generation
    from attrpipe.synth.catalog import _TEMPLATES, GENERIC_TEMPLATES
    from attrpipe.synth.vqa import Offer

    assert 0 < len(GENERIC_TEMPLATES) < len(_TEMPLATES)
    assert not any("most suitable" in t for t in GENERIC_TEMPLATES)
    offer = Offer(values=0, distractors=0.5)
    phrasings = set()
    for seed in range(30):
        a = render_vqa(random.Random(seed), 64, kind, taxonomy=TAXONOMY, offer=offer)
        b = render_vqa(random.Random(seed), 64, kind, taxonomy=TAXONOMY, offer=offer, reasoning="explained")
        assert (a.question, a.options, a.answer, a.image.tobytes()) == (b.question, b.options, b.answer,
                                                                       b.image.tobytes())
        assert b.reasoning != a.reasoning and a.reasoning[:-1].lower() in b.reasoning.lower()
        assert b.reasoning.rstrip(".").endswith(b.answer)
        assert "most suitable" not in b.reasoning
        assert parse_generation(b.target, b.options).value == b.answer
        phrasings.add(b.reasoning.replace(a.reasoning[:-1], "").replace(a.reasoning[1:-1], "")[:12])
    assert len(phrasings) >= 3  # the phrasing varies
    with pytest.raises(ValueError, match="pretrain.reasoning: 'why' is not one of"):
        render_vqa(random.Random(0), 64, kind, taxonomy=TAXONOMY, reasoning="why")


def test_descriptors_reasoning_names_a_shade_or_a_motif_of_the_answer():
    """``reasoning="descriptors"``: the same image, question and options as the evidence alone; a part question's
    reasoning names one of the answer's shades or motifs (the catalog's descriptors teacher), then the answer."""
    from attrpipe.parsing import parse_generation
    from attrpipe.synth.catalog import PRINTS, SHADES
    from attrpipe.synth.vqa import Offer

    offer = Offer(values=0, distractors=0.5)
    named = set()
    for seed in range(40):
        a = render_vqa(random.Random(seed), 64, "part", taxonomy=TAXONOMY, offer=offer)
        b = render_vqa(random.Random(seed), 64, "part", taxonomy=TAXONOMY, offer=offer, reasoning="descriptors")
        assert (a.question, a.options, a.answer, a.image.tobytes()) == (b.question, b.options, b.answer,
                                                                       b.image.tobytes())
        ds = SHADES.get(b.answer) or PRINTS[b.answer]
        hit = [d for d in ds if f" is {d}" in b.reasoning or f" shows {d}" in b.reasoning]
        assert hit and b.reasoning.rstrip(".").endswith(b.answer), b.reasoning
        assert parse_generation(b.target, b.options).value == b.answer
        named.update(hit)
    assert len(named) >= 10


def test_a_schedule_sets_the_order_of_the_kinds_and_the_recipe_keeps_old_hashes(tmp_path):
    from attrpipe.synth.pretrain import pretrain_recipe, question_plan, recipe_hash

    kinds = ["part", "feature", "colour"]
    assert [x.kind for x in vqa_examples(6, seed=0, size=48, taxonomy=TAXONOMY, schedule=kinds)] == kinds * 2
    assert [x.kind for x in vqa_examples(2, seed=0, size=48, schedule=kinds)] == ["colour"] * 2  # no products
    with pytest.raises(ValueError, match="unknown question kinds \\['hue'\\]"):
        list(vqa_examples(1, seed=0, size=48, taxonomy=TAXONOMY, schedule=["hue"]))
    out = [f"pretrain.output={tmp_path}"]
    default = load_config("conf/tiny_cpu.yaml", out)  # the original question set: no new keys in the recipe
    assert "schedule" not in pretrain_recipe(default)["pretrain"] and "options" not in pretrain_recipe(default)["pretrain"]
    # the documented rebuild of conf/miniature.yaml is the shipped model's recipe (up to the transformers version)
    card = json.loads(open("models/miniature/attrpipe-model.json").read())
    recipe = pretrain_recipe(load_config("conf/miniature.yaml", out + ["ray.train.num_workers=1",
                                                                        "ray.train.num_cpus_per_worker=1"]))
    assert {**recipe, "transformers": card["recipe"]["transformers"]} == card["recipe"]
    g = load_config("conf/tiny_cpu.yaml", out + ["pretrain.options.attribute_values=0", "pretrain.schedule=[part,feature]"])
    assert recipe_hash(pretrain_recipe(g)) != recipe_hash(pretrain_recipe(default))
    plan = question_plan(g)
    assert plan["schedule"] == ["part", "feature"] and plan["offer"].values == 0 and plan["reasoning"] == "evidence"
    assert "reasoning" not in pretrain_recipe(g)["pretrain"]  # the default keeps the recipes before it
    h = load_config("conf/tiny_cpu.yaml", out + ["pretrain.reasoning=explained"])
    assert pretrain_recipe(h)["pretrain"]["reasoning"] == "explained" and question_plan(h)["reasoning"] == "explained"
    assert recipe_hash(pretrain_recipe(h)) != recipe_hash(pretrain_recipe(default))
    with pytest.raises(ValueError, match="pretrain.reasoning: must be one of evidence, explained, descriptors"):
        load_config("conf/tiny_cpu.yaml", out + ["pretrain.reasoning=why"])
    assert question_plan(load_config("conf/tiny_cpu.yaml", out + ["pretrain.reasoning=descriptors"]))["reasoning"] \
        == "descriptors"
    from attrpipe.config import PRETRAIN_REASONING, SYNTHETIC_TEACHERS
    from attrpipe.synth.catalog import TEACHERS
    from attrpipe.synth.vqa import REASONING

    assert set(SYNTHETIC_TEACHERS) == set(TEACHERS) and set(PRETRAIN_REASONING) == set(REASONING)
    with pytest.raises(ValueError, match="unknown question kinds"):
        question_plan(load_config("conf/tiny_cpu.yaml", out + ["pretrain.schedule=[hue]"]))
    # pretrain.vision_tower: train (the default, out of the recipe) | freeze (after a vision stage only)
    assert "vision_tower" not in pretrain_recipe(g)["pretrain"]
    stage = ["pretrain.vision_stage.examples=8", "pretrain.vision_stage.steps=1"]
    with_stage = load_config("conf/tiny_cpu.yaml", out + stage)
    frozen = load_config("conf/tiny_cpu.yaml", out + stage + ["pretrain.vision_tower=freeze"])
    assert pretrain_recipe(frozen)["pretrain"]["vision_tower"] == "freeze"
    assert recipe_hash(pretrain_recipe(frozen)) != recipe_hash(pretrain_recipe(with_stage))
    with pytest.raises(ValueError, match="pretrain.vision_tower: must be train or freeze"):
        load_config("conf/tiny_cpu.yaml", out + ["pretrain.vision_tower=thaw"])
    with pytest.raises(ValueError, match="pretrain.vision_tower: freeze keeps the tower the vision stage trained"):
        load_config("conf/tiny_cpu.yaml", out + ["pretrain.vision_tower=freeze"])


def test_an_attribute_question_is_a_part_or_a_feature():
    with pytest.raises(ValueError, match="a part or a feature, not 'caption'"):
        render_attribute(random.Random(0), 96, TAXONOMY, "caption")


def test_the_pretrain_kind_trains_a_whole_model_from_its_own_section():
    cfg = load_config("conf/tiny_cpu.yaml", ["pretrain.output=/x/pt", "pretrain.learning_rate=0.002"])
    h = hyperparameters("pretrain", cfg)
    assert h.learning_rate == 0.002 and h.batch_size == cfg.pretrain.batch_size and h.beta is None
    start = resolve_start("pretrain", cfg, None, "/run/sft/adapter")
    assert start.init_adapter is None and start.reference is None
    with pytest.raises(ValueError, match="no adapter"):
        resolve_start("pretrain", cfg, "/some/adapter", "/run/sft/adapter")
    paths = default_paths("pretrain", cfg)
    assert paths["data"] == "/x/pt/data/train" and paths["out_dir"] == "/x/pt/train"
    assert output_subdir("pretrain") == "model" and output_subdir("dpo") == "adapter"


def test_sized_builds_hash_apart_and_unknown_sizes_are_refused(tmp_path):
    from attrpipe.models.tiny import build_tiny_model, tiny_model_hash

    assert tiny_model_hash() == tiny_model_hash(sizes={"text": {}, "vision": {}})  # no sizes: the tiny model
    assert tiny_model_hash(sizes={"text": {"hidden_size": 256}}) != tiny_model_hash()
    with pytest.raises(ValueError, match="unknown text size"):
        build_tiny_model(tmp_path / "m", sizes={"text": {"hiden_size": 256}})
    with pytest.raises(ValueError, match="'text' and 'vision' only"):
        build_tiny_model(tmp_path / "m", sizes={"lm": {}})
    out = build_tiny_model(tmp_path / "m", sizes={"text": {"num_hidden_layers": 3}, "vision": {"depth": 1}})
    conf = json.loads((out / "config.json").read_text())
    assert conf["text_config"]["num_hidden_layers"] == 3 and conf["vision_config"]["depth"] == 1


@pytest.mark.slow
def test_pretrain_recipe_end_to_end_then_cached(tmp_path, ray_local):
    from attrpipe.models import load_model
    from attrpipe.synth.pretrain import PRETRAIN_FILE, run_pretrain

    cfg = load_config("conf/tiny_cpu.yaml", [f"pretrain.output={tmp_path / 'pt'}", "pretrain.examples=48",
                                             f"pretrain.eval_examples={len(SCHEDULE)}", "pretrain.max_steps=3",
                                             "pretrain.batch_size=4", "pretrain.image_size=56",
                                             "pretrain.vision_stage.examples=24", "pretrain.vision_stage.steps=2",
                                             "pretrain.vision_stage.batch_size=8", "ray.train.num_workers=1"])
    rec = run_pretrain(cfg, verbose=False)
    model = tmp_path / "pt" / "model"
    assert rec["model"] == str(model) and rec["steps"] == 3
    assert sorted(p.name for p in model.glob("*.safetensors")) and not (model / "training_args.bin").exists()
    assert (model / "chat_template.jinja").is_file() or (model / "chat_template.json").is_file()
    load_model(str(model))  # a normal checkpoint directory
    base_w = (tmp_path / "pt" / "base" / "model.safetensors").read_bytes()
    assert next(model.glob("*.safetensors")).read_bytes() != base_w  # every weight trained, not an adapter
    ev = rec["evaluation"]
    assert set(ev) == {"random_base", "pretrained"} and ev["pretrained"]["questions"] == len(SCHEDULE)
    assert set(ev["pretrained"]["by_kind"]) == set(SCHEDULE)  # the taxonomy's products among them (captions, parts)
    pre = ev["pretrained"]  # chance: one over each question's options, averaged (a kind's and over all)
    assert all(0 < m["chance"] <= 0.5 for m in pre["by_kind"].values())
    assert pre["chance"] == pytest.approx(sum(m["chance"] * m["questions"] for m in pre["by_kind"].values())
                                          / pre["questions"])
    vs = rec["vision_stage"]  # the vision tower trained first, on its own objective, and went into the QA stage
    assert vs["steps"] == 2 and set(vs["held_out"]) == {"questions", "before", "after"}
    assert set(vs["held_out"]["after"]) == {"vertical", "attributes", "by_attribute"}
    assert (tmp_path / "pt" / "base-vision" / "model.safetensors").read_bytes() != base_w
    saved = json.loads((tmp_path / "pt" / PRETRAIN_FILE).read_text())
    assert saved["hash"] == rec["hash"]
    # shipped: a copy with its model card; the loader checks every file's sha256
    from attrpipe.models.loader import MODEL_CARD_FILE, ModelChecksumError, file_sha256, verify_model_files
    from attrpipe.synth.pretrain import export_model

    card = export_model(rec, tmp_path / "shipped")
    assert card["recipe_hash"] == rec["hash"] and card["num_parameters"] == rec["num_parameters"]
    assert card["sha256"]["model.safetensors"] == file_sha256(next(model.glob("*.safetensors")))
    assert verify_model_files(tmp_path / "shipped") == json.loads((tmp_path / "shipped" / MODEL_CARD_FILE).read_text())
    load_model(str(tmp_path / "shipped"))
    (tmp_path / "shipped" / "config.json").write_text("{}")
    with pytest.raises(ModelChecksumError):
        load_model(str(tmp_path / "shipped"))
    again = run_pretrain(cfg, verbose=False)  # cached: the same record, no training
    assert again == saved
    from attrpipe.synth.pretrain import pretrain_recipe, recipe_hash

    changed = load_config("conf/tiny_cpu.yaml", [f"pretrain.output={tmp_path / 'pt'}", "pretrain.examples=49"])
    assert recipe_hash(pretrain_recipe(changed)) != rec["hash"]
    fewer = load_config("conf/tiny_cpu.yaml", [f"pretrain.output={tmp_path / 'pt'}", "taxonomy.verticals=[watch]"])
    assert recipe_hash(pretrain_recipe(fewer)) != recipe_hash(pretrain_recipe(load_config(
        "conf/tiny_cpu.yaml", [f"pretrain.output={tmp_path / 'pt'}"])))  # products draw the taxonomy's products
    # continued pretraining: view questions (several photos each) for the model just built, from its own weights
    more = load_config("conf/tiny_cpu.yaml", [f"pretrain.output={tmp_path / 'more'}", f"pretrain.start_from={model}",
                                              "pretrain.examples=8", "pretrain.eval_examples=2", "pretrain.max_steps=2",
                                              "pretrain.batch_size=4", "pretrain.image_size=56",
                                              "pretrain.schedule=[view]", "pretrain.picture_labels=true",
                                              "ray.train.num_workers=1"])
    cont = run_pretrain(more, verbose=False)
    assert cont["steps"] == 2 and cont["num_parameters"] == rec["num_parameters"] and cont["vision_stage"] is None
    assert set(cont["evaluation"]) == {"start", "pretrained"}
    assert set(cont["evaluation"]["pretrained"]["by_kind"]) == {"view"} and not (tmp_path / "more" / "base").exists()
    from transformers import AutoProcessor

    from attrpipe.prompts import messages_for

    for d in ("start", "model"):  # the copy it trained from and the result label their pictures
        text = AutoProcessor.from_pretrained(tmp_path / "more" / d).apply_chat_template(messages_for("Q", 2),
                                                                                      tokenize=False)
        assert "Picture 1: <|vision_start|>" in text and "Picture 2: <|vision_start|>" in text, d
    assert "Picture 1:" not in AutoProcessor.from_pretrained(model).apply_chat_template(messages_for("Q", 2),
                                                                                       tokenize=False)
    continued = next((tmp_path / "more" / "model").glob("*.safetensors")).read_bytes()
    assert continued != next(model.glob("*.safetensors")).read_bytes()


def test_format_pretrain_prints_chance_per_kind_and_reads_older_records():
    from attrpipe.synth.pretrain import format_pretrain

    kinds = {"colour": {"questions": 2, "accuracy": 1.0, "parsed": 1.0, "chance": 0.2},
             "feature": {"questions": 2, "accuracy": 0.5, "parsed": 1.0, "chance": 0.125}}
    rec = {"model": "m", "num_parameters": 10, "steps": 1, "loss_first_50": 1.0, "loss_last_50": 0.5,
           "wall_seconds": 3, "evaluation": {"pretrained": {"accuracy": 0.75, "parsed": 1.0, "chance": 0.1625,
                                                            "by_kind": kinds}}}
    out = format_pretrain(rec)
    chance_row = next(line for line in out.splitlines() if line.startswith("chance "))
    assert chance_row.split()[1:] == ["16.2%", "20.0%", "12.5%"]
    for m in kinds.values():  # a record written before chance was kept per kind
        del m["chance"]
    old = format_pretrain(rec)
    assert not any(line.startswith("chance ") for line in old.splitlines()) and "chance: 16%" in old


@pytest.mark.slow
def test_pretrain_with_a_frozen_vision_tower_trains_its_merger_and_the_language_model_only(tmp_path, ray_local):
    import torch
    from safetensors.torch import load_file

    from attrpipe.synth.pretrain import run_pretrain

    cfg = load_config("conf/tiny_cpu.yaml", [f"pretrain.output={tmp_path / 'pt'}", "pretrain.examples=16",
                                             "pretrain.eval_examples=0", "pretrain.max_steps=2",
                                             "pretrain.batch_size=4", "pretrain.image_size=56",
                                             "pretrain.vision_stage.examples=16", "pretrain.vision_stage.steps=1",
                                             "pretrain.vision_stage.batch_size=8", "pretrain.vision_tower=freeze",
                                             "ray.train.num_workers=1"])
    rec = run_pretrain(cfg, verbose=False)
    before = load_file(tmp_path / "pt" / "base-vision" / "model.safetensors")
    after = load_file(next((tmp_path / "pt" / "model").glob("*.safetensors")))
    tower = [k for k in before if ".visual." in f".{k}" and ".merger." not in k]
    merger = [k for k in before if ".merger." in k]
    text = [k for k in before if ".layers." in k]  # the language model's decoder layers
    assert rec["steps"] == 2 and tower and merger and text and set(before) <= set(after)
    assert all(torch.equal(before[k], after[k]) for k in tower)  # as the vision stage left it
    assert not all(torch.equal(before[k], after[k]) for k in merger)
    assert not all(torch.equal(before[k], after[k]) for k in text)
