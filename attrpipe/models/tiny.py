"""A tiny Qwen2.5-VL with random weights, saved like a hub checkpoint, for CPU tests and demos.

No model hub is reachable on the CPU machines, so tests and the demo pipeline use this model instead of
``Qwen/Qwen2.5-VL-3B-Instruct``. It is the same architecture class (``Qwen2_5_VLForConditionalGeneration``), the same
processor classes (``Qwen2_5_VLProcessor`` with ``Qwen2VLImageProcessor``, ``Qwen2VLVideoProcessor`` and
``Qwen2Tokenizer``), the same special tokens in the same order and the same chat template; only the sizes differ.
``save_pretrained`` of model and processor gives a directory that :func:`attrpipe.models.loader.load_model` and
:func:`attrpipe.models.loader.load_processor` reload exactly as they load a real checkpoint.

What is tiny: text hidden 128, 2 layers, 4 heads / 2 KV heads (head_dim 32, mrope sections [4, 6, 6]), MLP 256;
vision depth 2, hidden 64, 2 heads, patch 14, merge 2 (a 224x224 image -> 64 image tokens, as on the 3B model);
a byte-level BPE tokenizer (Qwen2's pre-tokenizer) trained on prompt-like sentences built from
:mod:`attrpipe.prompts`. The weights are random: generations are gibberish, but every code path (chat template,
image tokens, batched sampling, LoRA, saving and reloading adapters) runs as it does on the real model.

The build is deterministic for a seed and cached: ``out_dir/attrpipe_tiny.json`` records a hash of everything the
build depends on, and a matching directory is returned as-is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "build_tiny_model",
    "tiny_model_hash",
    "tiny_corpus",
    "TINY_MARKER_FILE",
    "QWEN_SPECIAL_TOKENS",
    "QWEN2_5_VL_CHAT_TEMPLATE",
]

TINY_MARKER_FILE = "attrpipe_tiny.json"
# Bump when the build changes in a way the hashed inputs do not capture (a new file, a different tokenizer setup).
_BUILDER_VERSION = 1
_TOKENIZER_VOCAB_SIZE = 4096

# Qwen2/Qwen2.5 special tokens, in the order (and so with the relative ids) of the real tokenizer: they follow the
# BPE vocabulary (151643 ... 151656 on the real one). The rest of Qwen's added tokens are ordinary (non-special).
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_QWEN_ADDED_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)

# The chat template of Qwen2.5-VL-*-Instruct (chat_template.json on the hub): a default system turn when none is
# given, one <|vision_start|><|image_pad|><|vision_end|> slot per image item, generation prompt "<|im_start|>assistant\n".
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The architecture, minus the token ids (those come from the tokenizer). Only sizes differ from the 3B model.
_TEXT_SPEC: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1000000.0},
    "use_sliding_window": False,
    "initializer_range": 0.02,
}
_VISION_SPEC: dict[str, Any] = {
    "depth": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_heads": 2,
    "out_hidden_size": 128,
    "fullatt_block_indexes": [1],
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "tokens_per_second": 2,
    "hidden_act": "silu",
    "in_channels": 3,
    "initializer_range": 0.02,
}
# Qwen2.5-VL-3B-Instruct ties its input and output embeddings; so does the tiny model.
_TOP_SPEC: dict[str, Any] = {"tie_word_embeddings": True}
# The image processor as saved by the 3B checkpoint (its own defaults); attrpipe's loader sets the pixel budget.
_IMAGE_PROCESSOR_SPEC: dict[str, Any] = {
    "size": {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16384},
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
}

# The built-in vocabulary of the tokenizer corpus: verticals, attributes, descriptions and values that look like the
# catalog's. It only shapes the BPE merges (so prompts tokenize to a realistic number of tokens); nothing reads it.
_CORPUS_TAXONOMY: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "suitcase": {
        "pattern": ("The dominant surface pattern of the suitcase shell.",
                    ("Solid", "Striped", "Checked", "Floral", "Geometric", "Camouflage", "Polka Dot")),
        "number_of_wheels": ("How many wheels the suitcase rolls on.", ("0", "2", "4", "8")),
        "shell_type": ("Whether the suitcase has a hard or a soft shell.", ("Hardside", "Softside", "Hybrid")),
        "material": ("The main material of the outer shell.",
                     ("Polycarbonate", "ABS", "Aluminium", "Polypropylene", "Nylon", "Polyester", "Leather")),
        "color": ("The main color of the suitcase.",
                  ("Black", "Blue", "Red", "Grey", "Silver", "Green", "Pink", "Navy", "Purple", "Multicolor")),
    },
    "dress": {
        "sleeve_length": ("The length of the sleeves.", ("Sleeveless", "Short Sleeve", "Three Quarter", "Long Sleeve")),
        "neckline": ("The shape of the neckline.",
                     ("V Neck", "Round Neck", "Square Neck", "Halter", "Off Shoulder", "Sweetheart")),
        "dress_length": ("Where the hem of the dress falls.", ("Mini", "Knee Length", "Midi", "Maxi")),
        "pattern": ("The dominant print or pattern of the fabric.",
                    ("Solid", "Floral", "Striped", "Animal Print", "Paisley", "Polka Dot")),
        "color": ("The main color of the dress.", ("Black", "White", "Red", "Blue", "Beige", "Yellow", "Green")),
    },
    "sneaker": {
        "closure_type": ("How the shoe is fastened.", ("Lace Up", "Slip On", "Hook and Loop", "Buckle", "Zip")),
        "upper_material": ("The material of the upper.", ("Mesh", "Leather", "Suede", "Canvas", "Knit", "Synthetic")),
        "shaft_height": ("How high the shoe reaches on the ankle.", ("Low Top", "Mid Top", "High Top")),
        "color": ("The main color of the shoe.", ("White", "Black", "Grey", "Blue", "Red", "Orange", "Multicolor")),
    },
    "backpack": {
        "closure_type": ("How the main compartment closes.", ("Zipper", "Drawstring", "Flap", "Buckle", "Roll Top")),
        "laptop_compartment": ("Whether there is a padded laptop sleeve.", ("Yes", "No")),
        "material": ("The main material of the bag.", ("Nylon", "Polyester", "Canvas", "Leather", "Denim")),
        "number_of_straps": ("How many shoulder straps the backpack has.", ("1", "2")),
    },
    "table_lamp": {
        "shade_shape": ("The shape of the lamp shade.", ("Drum", "Empire", "Bell", "Dome", "Globe", "No Shade")),
        "base_material": ("The material of the lamp base.", ("Ceramic", "Metal", "Glass", "Wood", "Marble", "Resin")),
        "style": ("The design style of the lamp.",
                  ("Modern", "Traditional", "Industrial", "Mid Century", "Farmhouse", "Art Deco")),
    },
    "wristwatch": {
        "display_type": ("How the watch shows the time.", ("Analog", "Digital", "Analog Digital", "Smart")),
        "strap_material": ("The material of the strap.", ("Leather", "Stainless Steel", "Silicone", "Nylon", "Titanium")),
        "dial_shape": ("The shape of the dial.", ("Round", "Square", "Rectangular", "Tonneau", "Oval")),
        "dial_color": ("The main color of the dial.", ("Black", "White", "Blue", "Green", "Silver", "Gold")),
    },
    "sofa": {
        "upholstery": ("The covering fabric of the seat and back.",
                       ("Velvet", "Linen", "Leather", "Boucle", "Chenille", "Microfiber", "Corduroy")),
        "seating_capacity": ("How many people can sit on it.", ("1", "2", "3", "4", "5")),
        "arm_style": ("The shape of the arms.", ("Track Arm", "Rolled Arm", "Flared Arm", "Armless", "Sloped Arm")),
        "leg_finish": ("The finish of the visible legs.", ("Walnut", "Oak", "Black Metal", "Brass", "Chrome", "Hidden")),
    },
    "coffee_mug": {
        "mug_material": ("What the mug is made of.", ("Ceramic", "Porcelain", "Stoneware", "Enamel", "Glass", "Bamboo")),
        "capacity": ("How much the mug holds.", ("Small", "Medium", "Large", "Extra Large")),
        "handle": ("Whether the mug has a handle.", ("Handle", "No Handle", "Double Handle")),
        "decoration": ("How the surface is decorated.",
                       ("Plain", "Printed Text", "Illustration", "Speckled Glaze", "Embossed", "Hand Painted")),
    },
    "sunglasses": {
        "frame_shape": ("The shape of the frame.",
                        ("Aviator", "Wayfarer", "Round", "Cat Eye", "Rectangle", "Oversized", "Shield", "Clubmaster")),
        "lens_tint": ("The tint of the lenses.", ("Grey", "Brown", "Green", "Mirrored", "Gradient", "Polarized", "Clear")),
        "frame_material": ("The material of the frame.", ("Acetate", "Metal", "Titanium", "Plastic", "Wood")),
        "rim_type": ("How the lenses are held.", ("Full Rim", "Semi Rimless", "Rimless")),
    },
    "handbag": {
        "bag_style": ("The kind of handbag.",
                      ("Tote", "Crossbody", "Shoulder Bag", "Clutch", "Satchel", "Hobo", "Bucket Bag", "Baguette")),
        "hardware_color": ("The color of the metal hardware.", ("Gold", "Silver", "Gunmetal", "Rose Gold", "Antique Brass")),
        "texture": ("The surface texture of the bag.",
                    ("Smooth", "Pebbled", "Quilted", "Woven", "Croc Embossed", "Suede", "Patent")),
    },
    "t_shirt": {
        "fit": ("How the shirt fits the body.", ("Slim", "Regular", "Relaxed", "Oversized", "Cropped")),
        "collar": ("The collar style.", ("Crew Neck", "V Neck", "Henley", "Polo", "Mock Neck", "Scoop Neck")),
        "graphic": ("What is printed on the front.",
                    ("None", "Logo", "Slogan", "Photographic Print", "Abstract Graphic", "Band Print", "Tie Dye")),
    },
    "headphones": {
        "form_factor": ("How the headphones are worn.",
                        ("Over Ear", "On Ear", "In Ear", "Earbuds", "Neckband", "Bone Conduction")),
        "connectivity": ("How the headphones connect.", ("Wired", "Wireless", "Bluetooth", "Hybrid")),
        "noise_cancelling": ("Whether active noise cancellation is present.", ("Yes", "No")),
        "finish": ("The surface finish of the ear cups.", ("Matte", "Glossy", "Metallic", "Fabric Wrapped", "Transparent")),
    },
    "office_chair": {
        "back_type": ("The kind of backrest.", ("Mesh Back", "Upholstered", "High Back", "Mid Back", "Low Back")),
        "base": ("The base and how it moves.", ("Five Star Casters", "Sled Base", "Four Legs", "Pedestal", "Rocking")),
        "armrests": ("The kind of armrests.", ("Fixed", "Adjustable", "Flip Up", "None")),
        "headrest": ("Whether there is a headrest.", ("Yes", "No")),
    },
    "water_bottle": {
        "bottle_material": ("The material of the bottle body.",
                            ("Stainless Steel", "Tritan Plastic", "Glass", "Aluminium", "Silicone", "Copper")),
        "lid_type": ("The kind of lid.", ("Screw Cap", "Flip Top", "Straw Lid", "Sport Cap", "Chug Cap", "Push Button")),
        "insulation": ("Whether the bottle is vacuum insulated.", ("Insulated", "Single Wall")),
    },
    "area_rug": {
        "rug_shape": ("The shape of the rug.", ("Rectangle", "Runner", "Round", "Square", "Oval", "Irregular")),
        "weave": ("How the rug is made.",
                  ("Hand Knotted", "Hand Tufted", "Flatweave", "Machine Made", "Braided", "Shag", "Hooked")),
        "motif": ("The main motif of the design.",
                  ("Oriental", "Moroccan Trellis", "Abstract", "Medallion", "Distressed", "Tribal", "Solid")),
    },
    "ring": {
        "metal": ("The metal of the band.",
                  ("Yellow Gold", "White Gold", "Rose Gold", "Sterling Silver", "Platinum", "Tungsten", "Titanium")),
        "stone_cut": ("The cut of the main stone.",
                      ("Round Brilliant", "Princess", "Emerald", "Oval", "Pear", "Marquise", "Cushion", "No Stone")),
        "setting": ("How the stone is set.", ("Prong", "Bezel", "Pave", "Halo", "Channel", "Tension", "Solitaire")),
    },
}
_VERTICAL_DISPLAY = {"wristwatch": "wrist watch", "t_shirt": "t-shirt", "area_rug": "area rug"}
_REASONING_TEMPLATES = (
    "The images show a {vertical} and its {label} looks {value_lc}.",
    "Looking closely at the {label} of this {vertical}, the best match among the options is {value}.",
    "The first image clearly shows the {label}; it is {value_lc}, not {other_lc}.",
    "The product photos are not very clear, but the {label} seems closest to {value} rather than {other}.",
    "In the close-up shot the {label} is visible and matches {value}; the listing title agrees.",
    "Several angles of the {vertical} are shown. Comparing them, {value} describes the {label} better than {other}.",
    "The lighting makes colors hard to judge, yet the shape and texture point to {value} for the {label}.",
    "Zooming into the second picture reveals details that are typical of {value_lc} designs.",
    "Nothing in the images contradicts {value}, and the description mentions it explicitly.",
    "Although {other} is plausible, the visible stitching, edges and proportions suggest {value}.",
)
_EXTRA_SENTENCES = (
    "You are a helpful assistant.",
    "system",
    "user",
    "assistant",
    "I cannot tell from the images.",
    "The description does not mention it and the photos do not show it.",
    "Based on the listing title and the main image, the answer is clear.",
    "There are several images of the same product from different angles.",
    "The seller uploaded a lifestyle photo, a white background packshot and a detail view.",
    "Free shipping, easy returns and a two year warranty are included with every order.",
    "Dimensions, weight and care instructions are listed in the specification table below.",
    "Customers often ask whether the item is durable, waterproof, lightweight or machine washable.",
    "Premium quality, handcrafted finish, eco friendly packaging, perfect gift for birthdays and holidays.",
    "The photograph is blurry, cropped or taken in low light, so some details are uncertain.",
)


def tiny_corpus(extra: Sequence[str] | None = None) -> list[str]:
    """The deterministic tokenizer corpus: the system prompt, questions and ``<reasoning>/<answer>`` targets."""
    from attrpipe.prompts import SYSTEM_PROMPT, format_target, user_text
    from attrpipe.taxonomy import CATEGORY_ATTRIBUTE, Attribute

    lines: list[str] = [SYSTEM_PROMPT, *_EXTRA_SENTENCES]
    displays = [_VERTICAL_DISPLAY.get(v, v.replace("_", " ")) for v in _CORPUS_TAXONOMY]
    category = Attribute(CATEGORY_ATTRIBUTE, "The kind of product shown in the images.", tuple(displays))
    lines.append(user_text(category, "product"))
    for i, d in enumerate(displays):
        lines.append(format_target(f"The images show a {d}, not a {displays[(i + 1) % len(displays)]}.", d))
    for vname, attrs in _CORPUS_TAXONOMY.items():
        display = _VERTICAL_DISPLAY.get(vname, vname.replace("_", " "))
        for aname, (description, values) in attrs.items():
            attr = Attribute(aname, description, values)
            lines.append(user_text(attr, display))
            label = aname.replace("_", " ")
            for j, value in enumerate(values):
                other = values[(j + 1) % len(values)]
                template = _REASONING_TEMPLATES[(j + len(aname)) % len(_REASONING_TEMPLATES)]
                reasoning = template.format(
                    vertical=display, label=label, value=value, value_lc=value.lower(),
                    other=other, other_lc=other.lower(),
                )
                lines.append(format_target(reasoning, value))
    lines.extend(str(s) for s in (extra or ()))
    return lines


def _merged(base: dict[str, Any], override: dict[str, Any] | None, what: str) -> dict[str, Any]:
    unknown = sorted(set(override or {}) - set(base))
    if unknown:
        raise ValueError(f"unknown {what} size key(s) {unknown}; known: {sorted(base)}")
    return {**base, **(override or {})}


def _spec(sizes: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    sizes = dict(sizes or {})
    unknown = sorted(set(sizes) - {"text", "vision"})
    if unknown:
        raise ValueError(f"sizes take 'text' and 'vision' only, not {unknown}")
    return {
        "text": _merged(_TEXT_SPEC, sizes.get("text"), "text"),
        "vision": _merged(_VISION_SPEC, sizes.get("vision"), "vision"),
        "top": _TOP_SPEC,
        "image_processor": _IMAGE_PROCESSOR_SPEC,
        "tokenizer_vocab_size": _TOKENIZER_VOCAB_SIZE,
        "special_tokens": list(QWEN_SPECIAL_TOKENS),
        "added_tokens": list(_QWEN_ADDED_TOKENS),
        "chat_template": QWEN2_5_VL_CHAT_TEMPLATE,
        "builder_version": _BUILDER_VERSION,
    }


def tiny_model_hash(*, seed: int = 0, corpus_extra: Sequence[str] | None = None,
                    sizes: dict[str, dict[str, Any]] | None = None) -> str:
    """The cache key: a hash of the model spec, the tokenizer corpus, the seed and the transformers version."""
    import transformers

    payload = {
        "spec": _spec(sizes),
        "corpus": tiny_corpus(corpus_extra),
        "seed": int(seed),
        "transformers": transformers.__version__,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _read_marker(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / TINY_MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(out_dir: Path, digest: str) -> bool:
    marker = _read_marker(out_dir)
    if not marker or marker.get("hash") != digest:
        return False
    return all((out_dir / f).is_file() for f in marker.get("files", ()))


def _train_tokenizer(corpus: list[str]):
    """A byte-level BPE with Qwen2's normaliser, pre-tokenizer and decoder, wrapped as a ``Qwen2Tokenizer``."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    bpe = Tokenizer(
        BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
    )
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TOKENIZER_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    bpe.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    model_json = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = model_json["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]

    # Qwen2Tokenizer rebuilds this exact backend from vocab + merges when it reloads, as for the hub tokenizer.
    # <|endoftext|> is added first (it is the pad token), then the other special tokens in Qwen's order.
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        errors="replace",
        split_special_tokens=False,
    )
    tok.add_special_tokens({"extra_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    tok.add_tokens(list(_QWEN_ADDED_TOKENS), special_tokens=False)
    tok.eos_token = "<|im_end|>"  # as in the Instruct checkpoints' tokenizer_config.json
    base = len(vocab)
    for i, t in enumerate(QWEN_SPECIAL_TOKENS):
        got = tok.convert_tokens_to_ids(t)
        if got != base + i:
            raise RuntimeError(f"tiny tokenizer: {t} got id {got}, expected {base + i}")
    return tok


def _build_into(tmp: Path, *, seed: int, corpus: list[str], digest: str,
                sizes: dict[str, dict[str, Any]] | None = None) -> None:
    import torch
    import transformers
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    t0 = time.perf_counter()
    tok = _train_tokenizer(corpus)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    spec = _spec(sizes)
    text = dict(spec["text"])
    text["rope_parameters"] = dict(text["rope_parameters"])
    text.update(vocab_size=len(tok), bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(spec["vision"]),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        **_TOP_SPEC,
    )
    config.dtype = torch.float32

    # Seeded in a forked RNG (the caller's RNG state is left as it was); built on the CPU in float32 so the weights
    # are reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=pad,
        eos_token_id=[eos, pad],
        pad_token_id=pad,
    )
    model.save_pretrained(tmp, safe_serialization=True)

    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**_IMAGE_PROCESSOR_SPEC),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(tmp)

    files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
    marker = {
        "hash": digest,
        "seed": int(seed),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "vocab_size": len(tok),
        "token_ids": ids,
        "files": files,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    (tmp / TINY_MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_tiny_model(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    corpus_extra: list[str] | None = None,
    sizes: dict[str, dict[str, Any]] | None = None,
    force: bool = False,
) -> Path:
    """Build (or reuse) the tiny random-weight Qwen2.5-VL checkpoint in ``out_dir`` and return its path.

    A directory whose ``attrpipe_tiny.json`` carries the same hash (model spec, tokenizer corpus, seed, transformers
    version) and whose files are all present is returned untouched unless ``force``. ``sizes`` overrides entries of
    the text and vision configs (``{"text": {"hidden_size": 256}, "vision": {"depth": 4}}``): the same architecture,
    other sizes (``attrpipe synth pretrain`` builds its model this way). Otherwise the model is built in a
    temporary sibling directory and renamed into place, so a reader never sees a half-written checkpoint; a stale
    tiny build is replaced, but a non-empty directory that is not a tiny build is never overwritten.
    """
    out = Path(out_dir).expanduser().resolve()
    corpus = tiny_corpus(corpus_extra)
    digest = tiny_model_hash(seed=seed, corpus_extra=corpus_extra, sizes=sizes)
    if not force and _is_complete(out, digest):
        return out
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"tiny model output {str(out)!r} exists and is not a directory")
        if any(out.iterdir()) and _read_marker(out) is None:
            raise FileExistsError(
                f"tiny model output {str(out)!r} is a non-empty directory without {TINY_MARKER_FILE}; "
                "refusing to overwrite it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    try:
        _build_into(tmp, seed=seed, corpus=corpus, digest=digest, sizes=sizes)
        trash = None
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            try:
                os.rename(out, trash / "old")
            except FileNotFoundError:  # someone else removed it meanwhile
                pass
        try:
            os.rename(tmp, out)
        except OSError:
            # Lost a race with a concurrent build of the same directory: keep theirs if it is what we wanted.
            if _is_complete(out, digest):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
