"""Training examples: seed rows, pairs rows and consensus rows -> flat *records* -> TRL example dicts.

Two steps, both plain functions (no Ray, no model):

1. ``seed_records`` / ``pair_record`` / ``sl_records`` / ``scpo_records`` turn one input row into zero or more
   *records*: flat, Arrow-friendly dicts (:data:`RECORD_SCHEMA`) holding the user text, the target(s) and the image
   references (resolved URIs, or inline bytes). Records are what Ray Data streams to the training workers; images
   stay encoded until a worker builds a batch.
2. ``sft_example`` / ``dpo_example`` / ``scpo_example`` turn a record plus its decoded images into the dict TRL's
   vision collators take: ``images`` (PIL images), ``prompt`` (system + user messages from
   :func:`attrpipe.prompts.messages_for`, one image slot per image before the text) and ``completion`` (SFT) or
   ``chosen`` / ``rejected`` (DPO) as assistant messages; ScPO's also carries its ``weight`` (attrpipe.objectives).

Targets follow the method: SFT targets are ``<reasoning> ... </reasoning><answer> value </answer>``
(:func:`attrpipe.prompts.format_target`); DPO, ScPO and self-learning use the generated chains' full texts as they are.
"""

from __future__ import annotations

import posixpath
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from attrpipe.consensus import example_id
from attrpipe.images import resolve_uri
from attrpipe.objectives import scpo_pair
from attrpipe.parsing import match_value
from attrpipe.prompts import format_target, messages_for, user_text
from attrpipe.taxonomy import CATEGORY_ATTRIBUTE, Taxonomy

__all__ = [
    "RECORD_SCHEMA",
    "RECORD_COLUMNS",
    "SEED_COLUMNS",
    "PAIRS_COLUMNS",
    "CONSENSUS_COLUMNS",
    "IMAGE_COLUMNS",
    "TrainingDataError",
    "catalog_root",
    "default_reasoning",
    "seed_records",
    "pair_record",
    "sl_records",
    "scpo_records",
    "records_to_table",
    "record_image_refs",
    "sft_example",
    "dpo_example",
    "scpo_example",
    "assistant",
]


class TrainingDataError(ValueError):
    """A training row that cannot become an example (unknown vertical or attribute, label not an allowed value)."""


# One schema for the records of every kind; the targets a kind does not use are null.
RECORD_SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),  # the user text (attrpipe.prompts.user_text)
        pa.field("completion", pa.string()),  # SFT / self-learning target
        pa.field("chosen", pa.string()),  # DPO
        pa.field("rejected", pa.string()),  # DPO
        pa.field("weight", pa.float64()),  # ScPO: the pair's vote-margin weight (attrpipe.objectives); null otherwise
        pa.field("image_uris", pa.list_(pa.string())),  # resolved (absolute path or URI)
        pa.field("image_bytes", pa.list_(pa.binary())),  # inline images; used instead of image_uris when non-empty
    ]
)
RECORD_COLUMNS = tuple(RECORD_SCHEMA.names)
IMAGE_COLUMNS = ("image_uris", "image_bytes")
# The input columns each kind reads (images included; drop IMAGE_COLUMNS for a cheap counting pass).
SEED_COLUMNS = ("listing_id", "vertical", "image_uris", "image_bytes", "labels", "reasoning")
PAIRS_COLUMNS = ("example_id", "prompt", "chosen", "rejected", "image_uris", "image_bytes")
CONSENSUS_COLUMNS = ("example_id", "vertical", "attribute", "consensus", "kept", "chains", "image_uris", "image_bytes")


def catalog_root(split_path: str) -> str:
    """The directory that relative image URIs of a split resolve against.

    The catalog root is the directory holding ``catalog.json``: the parent of the split directory
    (``DIR/seed`` -> ``DIR``). For a bare Parquet dataset (no ``catalog.json`` beside it) it is the dataset's own
    directory (the file's directory for a single file). Works for local paths and any URI pyarrow understands.
    """
    from pyarrow import fs as pafs

    if "://" in split_path:
        filesystem, path = pafs.FileSystem.from_uri(split_path)
        scheme_prefix = split_path[: split_path.index("://") + 3]
        # from_uri strips the scheme (and keeps the bucket for object stores); rebuild URIs with the same prefix.
        to_uri = (lambda p: scheme_prefix + p.lstrip("/")) if not split_path.startswith("file://") else (lambda p: p)
    else:
        filesystem, path, to_uri = pafs.LocalFileSystem(), posixpath.abspath(split_path), (lambda p: p)
    path = path.rstrip("/")
    is_file = filesystem.get_file_info(path).type == pafs.FileType.File
    split_dir = posixpath.dirname(path) if is_file else path
    parent = posixpath.dirname(split_dir)
    if parent and filesystem.get_file_info(posixpath.join(parent, "catalog.json")).type == pafs.FileType.File:
        return to_uri(parent)
    return to_uri(split_dir)


def default_reasoning(attribute_label: str, vertical_label: str, value: str) -> str:
    """The reasoning used when a seed row has none for an attribute (the target still has both parts)."""
    return f"Looking at the images of this {vertical_label}, the {attribute_label} is {value}."


def _as_dict(m: Any) -> dict:
    """A Parquet map column as read by pyarrow (list of (key, value) tuples), numpy/pandas, or a dict."""
    if m is None:
        return {}
    if isinstance(m, Mapping):
        return dict(m)
    try:
        return {k: v for k, v in m}
    except (TypeError, ValueError):
        raise TrainingDataError(f"expected a map, got {type(m).__name__}") from None


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return list(v)


def record_image_refs(
    row: Mapping[str, Any], *, max_images: int, root: str | None = None, allowed_schemes: Sequence[str] = ("file",)
) -> tuple[list[str], list[bytes]]:
    """(image_uris, image_bytes) of a row, at most ``max_images``: inline bytes win when non-empty; URIs are resolved
    against ``root`` (seed split) or must already be resolved (pairs and consensus rows)."""
    data = [bytes(b) for b in _as_list(row.get("image_bytes")) if b is not None]
    if data:
        return [], data[:max_images]
    uris = [u for u in _as_list(row.get("image_uris"))][:max_images]
    return [resolve_uri(u, root, allowed_schemes) for u in uris], []


def _record(ex_id: str, prompt: str, uris: list[str], data: list[bytes], **targets: Any) -> dict:
    rec = {"example_id": ex_id, "prompt": prompt, "completion": None, "chosen": None, "rejected": None, "weight": None}
    rec.update(targets)
    rec["image_uris"] = uris
    rec["image_bytes"] = data
    return rec


def seed_records(
    row: Mapping[str, Any],
    taxonomy: Taxonomy,
    *,
    root: str | None,
    max_images: int,
    allowed_schemes: Sequence[str] = ("file",),
    skip_non_inferable: bool = True,
    category_question: bool = False,
    with_images: bool = True,
) -> list[dict]:
    """SFT records of one labeled listing: one per labeled attribute, target = reasoning + answer.

    - A label is mapped to its attribute's canonical allowed value (the answer matching rule); a label that matches
      none, an unknown vertical or an unknown attribute is a :class:`TrainingDataError`.
    - Non-inferable attributes are skipped when ``skip_non_inferable``; with ``category_question`` the listing also
      gets the category example (answer: its vertical's display name), unless it is labeled explicitly.
    - The reasoning comes from the row's ``reasoning`` map, else :func:`default_reasoning`.
    - Records come out in attribute-name order (deterministic).
    """
    listing_id = row["listing_id"]
    try:
        vertical = taxonomy.vertical(row["vertical"])
    except KeyError as e:
        raise TrainingDataError(f"listing {listing_id!r}: {e.args[0]}") from None
    labels = _as_dict(row.get("labels"))
    reasoning = _as_dict(row.get("reasoning"))
    if category_question and CATEGORY_ATTRIBUTE not in labels:
        labels[CATEGORY_ATTRIBUTE] = vertical.display_name
    if with_images:
        uris, data = record_image_refs(row, max_images=max_images, root=root, allowed_schemes=allowed_schemes)
    else:
        uris, data = [], []
    out = []
    for name in sorted(labels):
        if name == CATEGORY_ATTRIBUTE and not category_question:
            continue
        try:
            attribute = taxonomy.attribute(vertical.name, name)
        except KeyError as e:
            raise TrainingDataError(f"listing {listing_id!r}: {e.args[0]}") from None
        if skip_non_inferable and not attribute.inferable:
            continue
        value, _ = match_value(str(labels[name] or ""), attribute.values)
        if value is None:
            raise TrainingDataError(
                f"listing {listing_id!r}: label {labels[name]!r} of {name!r} is not one of {list(attribute.values)}"
            )
        why = (reasoning.get(name) or "").strip() or default_reasoning(
            name.replace("_", " "), vertical.display_name, value
        )
        out.append(
            _record(
                example_id(listing_id, name),
                user_text(attribute, vertical.display_name),
                uris,
                data,
                completion=format_target(why, value),
            )
        )
    return out


def pair_record(row: Mapping[str, Any], *, max_images: int, with_images: bool = True,
                allowed_schemes: Sequence[str] = ("file",)) -> dict:
    """The DPO record of one ``pairs/`` row (PAIRS_SCHEMA): its user text, chosen and rejected chain texts."""
    uris, data = (record_image_refs(row, max_images=max_images, allowed_schemes=allowed_schemes) if with_images
                  else ([], []))
    return _record(
        row["example_id"], row["prompt"], uris, data, chosen=str(row["chosen"]), rejected=str(row["rejected"])
    )


def sl_records(row: Mapping[str, Any], taxonomy: Taxonomy, *, max_images: int, with_images: bool = True,
               allowed_schemes: Sequence[str] = ("file",)) -> list[dict]:
    """Self-learning records of one ``consensus/`` row (CONSENSUS_SCHEMA): when the example was kept (C above the
    threshold), one SFT record per preferred chain (a chain whose parsed answer equals the consensus), its full text
    as the target. Rows not kept, or with no consensus, give nothing."""
    if not row.get("kept") or row.get("consensus") is None:
        return []
    consensus = row["consensus"]
    prompt = _consensus_prompt(row, taxonomy)
    uris, data = (record_image_refs(row, max_images=max_images, allowed_schemes=allowed_schemes) if with_images
                  else ([], []))
    out = []
    for i, chain in enumerate(_as_list(row.get("chains"))):
        if chain is None or chain.get("answer") != consensus or not chain.get("text"):
            continue
        out.append(_record(f"{row['example_id']}#{i}", prompt, uris, data, completion=chain["text"]))
    return out


def _consensus_prompt(row: Mapping[str, Any], taxonomy: Taxonomy) -> str:
    """The user text of a consensus row's example, rebuilt from the taxonomy."""
    try:
        attribute = taxonomy.attribute(row["vertical"], row["attribute"])
        display = taxonomy.vertical(row["vertical"]).display_name
    except KeyError as e:
        raise TrainingDataError(f"example {row.get('example_id')!r}: {e.args[0]}") from None
    return user_text(attribute, display)


def scpo_records(row: Mapping[str, Any], taxonomy: Taxonomy, *, seed: int, max_images: int, with_images: bool = True,
                 allowed_schemes: Sequence[str] = ("file",)) -> list[dict]:
    """The ScPO record of one ``consensus/`` row (CONSENSUS_SCHEMA), at most one: chosen = a chain with the consensus
    answer, rejected = a chain with the least-voted answer (no answer: 0 votes), their full texts, and the pair's
    weight (:func:`attrpipe.objectives.scpo_pair`; ties drawn with ``seed``, the run seed, and the example id). Rows
    not kept, with no consensus, or whose chains all agree give nothing. n_chains is the row's number of chains."""
    chains = [c or {} for c in _as_list(row.get("chains"))]
    pair = scpo_pair([c.get("answer") for c in chains], row.get("consensus"), kept=bool(row.get("kept")),
                     seed=int(seed), ex_id=str(row["example_id"]))
    if pair is None:
        return []
    uris, data = (record_image_refs(row, max_images=max_images, allowed_schemes=allowed_schemes) if with_images
                  else ([], []))
    return [_record(row["example_id"], _consensus_prompt(row, taxonomy), uris, data,
                    chosen=str(chains[pair.chosen].get("text") or ""),
                    rejected=str(chains[pair.rejected].get("text") or ""), weight=pair.weight)]


def records_to_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Records as an Arrow table with :data:`RECORD_SCHEMA` (a fixed schema, so empty image lists and all-null target
    columns never make blocks disagree)."""
    records = list(records)
    return pa.Table.from_pylist([{k: r.get(k) for k in RECORD_COLUMNS} for r in records], schema=RECORD_SCHEMA)


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def sft_example(record: Mapping[str, Any], images: list) -> dict:
    """TRL prompt-completion example (conversational, with images): the loss covers the completion only."""
    if record.get("completion") is None:
        raise TrainingDataError(f"record {record.get('example_id')!r} has no completion (not an SFT record)")
    return {
        "images": list(images),
        "prompt": messages_for(record["prompt"], len(images)),
        "completion": assistant(record["completion"]),
    }


def scpo_example(record: Mapping[str, Any], images: list) -> dict:
    """:func:`dpo_example` plus the pair's ``weight`` (ScPO; attrpipe.train.scpo passes it through TRL's collator)."""
    if record.get("weight") is None:
        raise TrainingDataError(f"record {record.get('example_id')!r} has no weight (not a ScPO record)")
    return {**dpo_example(record, images), "weight": float(record["weight"])}


def dpo_example(record: Mapping[str, Any], images: list) -> dict:
    """TRL preference example (conversational, with images): shared prompt, chosen and rejected assistant turns."""
    if record.get("chosen") is None or record.get("rejected") is None:
        raise TrainingDataError(f"record {record.get('example_id')!r} has no chosen/rejected (not a DPO record)")
    return {
        "images": list(images),
        "prompt": messages_for(record["prompt"], len(images)),
        "chosen": assistant(record["chosen"]),
        "rejected": assistant(record["rejected"]),
    }
