"""Pre-flight checks: what a command was given, checked before any model loads, any Ray starts or any output is
written. Each problem is an :class:`InputError` whose one-line message starts with where the value came from (a
config key such as ``data.test``, or an option such as ``--catalog``) and names the path, the column or the key;
``attrpipe`` prints it as ``attrpipe: error: ...`` and exits 2.

What is refused here is an input that cannot be used at all:

- a dataset path that does not exist, holds no Parquet or JSON lines file, or none that can be read;
- a catalog or labeled set without a required column (``listing_id``, ``vertical``, one of ``image_uris`` /
  ``image_bytes``; ``labels`` for a labeled set), or with a column of another type than attrpipe/schemas.py gives;
- a labeled set (seed, test) whose label names an attribute its vertical does not have, or a value outside the
  attribute's allowed values (matched as answers are: case, spacing and punctuation aside);
- a model path that is not a model (no ``config.json``, ``tokenizer_config.json`` or safetensors weights), an
  adapter directory without ``adapter_config.json`` and ``adapter_model.safetensors``;
- a command-line override of a key the command sets itself (:data:`SET_BY_COMMAND`), which it would ignore.

Bad rows inside a usable catalog are not refused: the pipeline quarantines each one with a reason, as before
(docs/reliability.md); so is a file of a catalog directory that cannot be read, when other files can. The checks
read Parquet footers (the schema; a JSON lines file's first row) and, for labeled sets only (small by nature), the
``labels`` column. Catalogs and labeled sets are looked at as the pipeline reads them (attrpipe.catalog_io: the
column names of ``data.columns``, hive partition keys as columns, integer listing ids as strings).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa

from attrpipe import storage
from attrpipe.catalog_io import CatalogReading, catalog_files, file_format, partition_of, read_jsonl
from attrpipe.pseudolabel.output import committed_files
from attrpipe.schemas import CATALOG_SCHEMA, CONSENSUS_SCHEMA, LABELED_SCHEMA, PAIRS_SCHEMA

__all__ = [
    "InputError",
    "SET_BY_COMMAND",
    "refuse_overrides",
    "check_dataset",
    "check_model",
    "check_adapter",
    "check_generation",
    "check_training",
    "check_loop",
    "check_study",
]


class InputError(ValueError):
    """An input a command cannot use; the message is one line and starts with the key or option it came from."""


# --- overrides a command would ignore ---------------------------------------------------------------------------------

_LOOP_SETS = {
    "pseudolabel.adapter": "the loop samples each round with the adapter it has just trained",
    "pseudolabel.output": "the loop writes each round under <run>/round-<r>/pseudolabels",
    "pseudolabel.round": "the loop numbers its rounds itself",
}
_STUDY_SETS = {
    **_LOOP_SETS,
    "loop.rounds": "each arm runs study.rounds rounds; set study.rounds",
    "loop.method": "the arms' methods are study.methods; set study.methods",
    "loop.seed_sft": "every arm starts from the seed SFT the arms of a seed share",
    "run.seed": "the study runs each seed of study.seeds; set study.seeds",
}
# command (with the study's kind) -> {key: why the command does not read it}
SET_BY_COMMAND: dict[str, dict[str, str]] = {
    "loop": _LOOP_SETS,
    "demo": _LOOP_SETS,
    "study threshold": {**_STUDY_SETS, "consensus.threshold": "the arms' thresholds are study.thresholds; set "
                                                              "study.thresholds"},
    "study pool-size": {**_STUDY_SETS, "data.unlabeled_limit": "the arms' pools are study.pool_sizes; set "
                                                               "study.pool_sizes"},
    "evaluate": {"data.unlabeled_limit": "evaluation scores the whole test set (data.test); the limit is the pool's",
                 "pseudolabel.output": "evaluation writes under --out (default <run>/eval)"},
    "predict": {"pseudolabel.output": "prediction writes to --out or predict.output"},
    "train": {"data.unlabeled_limit": "training reads all of its data (--data); the limit is the pool's"},
    "gpu-check": {**_LOOP_SETS,
                  "model.path": "set it with --model",
                  "ray.train.num_workers": "set it with --gpus (default: every GPU torch sees)",
                  "generation.engine": "gpu-check runs the vLLM engine",
                  "loop.rounds": "gpu-check runs one round",
                  "loop.method": "gpu-check runs DPO"},
}


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].strip()


def refuse_overrides(command: str, overrides: Iterable[str]) -> None:
    """Refuse a ``key=value`` override of a key ``command`` sets itself (or that does not apply to it), which would
    otherwise be silently ignored. Values a preset file sets are not refused: a preset serves every command."""
    refused = SET_BY_COMMAND.get(command) or SET_BY_COMMAND.get(command.split()[0], {})  # "train sft": "train"
    for o in overrides:
        key = _override_key(o)
        for k, why in refused.items():
            if key == k or key.startswith(k + ".") or k.startswith(key + "."):
                raise InputError(f"{key}: attrpipe {command} does not use it ({why})")


# --- datasets ---------------------------------------------------------------------------------------------------------

_IMAGES = ("image_uris", "image_bytes")
# kind -> (schema the columns' types come from, required columns, columns of which at least one is required)
_DATASETS: dict[str, tuple[pa.Schema, tuple[str, ...], tuple[str, ...]]] = {
    "catalog": (CATALOG_SCHEMA, ("listing_id", "vertical"), _IMAGES),
    "labeled": (LABELED_SCHEMA, ("listing_id", "vertical", "labels"), _IMAGES),
    "truth": (LABELED_SCHEMA, ("listing_id", "labels"), ()),
    "pairs": (PAIRS_SCHEMA, ("example_id", "prompt", "chosen", "rejected"), ()),
    "consensus": (CONSENSUS_SCHEMA, ("example_id", "vertical", "attribute", "consensus", "kept", "chains"), ()),
}
_WHAT = {"catalog": "a catalog", "labeled": "a labeled set", "truth": "a truth file",
         "pairs": "a pairs shard", "consensus": "a consensus shard"}


def _plain(t: pa.DataType) -> pa.DataType:
    """A type as attrpipe reads it: large and dictionary-encoded variants are the plain type."""
    if pa.types.is_dictionary(t):
        return _plain(t.value_type)
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_map(t):
        return pa.map_(_plain(t.key_type), _plain(t.item_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_plain(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain(f.type)) for f in t])
    return t


def _type_ok(actual: pa.DataType, expected: pa.DataType, required: bool, name: str = "") -> bool:
    if pa.types.is_null(actual):  # a column written with only nulls: no values, nothing to quarantine them by
        return not required
    a, e = _plain(actual), _plain(expected)
    if name == "listing_id" and pa.types.is_integer(a):  # integer ids are read as their decimal strings
        return True
    if pa.types.is_list(a) and pa.types.is_list(e):
        return _type_ok(a.value_type, e.value_type, required)
    if pa.types.is_struct(a) and pa.types.is_struct(e):  # chains: every field attrpipe reads, with its type
        names = {f.name: f.type for f in a}
        return all(f.name in names and _type_ok(names[f.name], f.type, True) for f in e)
    return a.equals(e)


def _open(path: str):
    import pyarrow.parquet as pq

    fs, p = storage.filesystem_for(path)
    return pq.ParquetFile(fs.open_input_file(p))


_FILES = "Parquet files (*.parquet) or JSON lines (*.jsonl, *.jsonl.gz)"


def _catalog_kind(kind: str) -> bool:
    return kind in ("catalog", "labeled", "truth")  # read with data.columns; not attrpipe's own shards


def dataset_files(path: str, source: str, kind: str) -> list[str]:
    """The files of a dataset path, as the pipeline takes them; a path that is not there or holds none is an
    :class:`InputError`. Catalogs and labeled sets: Parquet and JSON lines, hive partitions included
    (attrpipe.catalog_io); pairs and consensus shards: Parquet."""
    from pyarrow import fs as pafs

    if not path:
        raise InputError(f"{source}: no path given")
    fs, p = storage.filesystem_for(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{source}: {path} does not exist")
    if _catalog_kind(kind):
        if info.type == pafs.FileType.File and not file_format(path):
            raise InputError(f"{source}: {path} is a file but not a .parquet file nor JSON lines (.jsonl, .jsonl.gz; "
                             f"expected {_WHAT[kind]}: such a file or a directory of them)")
        try:
            return [f.path for f in catalog_files(path)]
        except FileNotFoundError:
            raise InputError(f"{source}: {path} holds no {_FILES} (expected {_WHAT[kind]})") from None
    if info.type == pafs.FileType.File:
        if not path.endswith(".parquet"):
            raise InputError(f"{source}: {path} is a file but not a .parquet file (expected {_WHAT[kind]}: a "
                             "Parquet file or a directory of them)")
        return [path]
    files = committed_files(path)
    if files is not None:  # inside a pseudo-labeling output: only the shards its unit markers name are data
        if not files:
            raise InputError(f"{source}: {path} has no committed shards (no finished unit of that "
                             "pseudo-labeling output wrote one)")
        return files
    files = storage.list_files(path, ".parquet")
    if not files:
        raise InputError(f"{source}: {path} holds no Parquet files (*.parquet; expected {_WHAT[kind]})")
    return files


def _columns(f: str) -> dict[str, pa.DataType | None]:
    """A file's columns: from a Parquet footer with their types; from a JSON lines file's first row, untyped (each
    row is checked when it is read, and quarantined if it cannot be used)."""
    if file_format(f) != "jsonl":
        schema = _open(f).schema_arrow
        return {name: schema.field(name).type for name in schema.names}
    for row in read_jsonl(f, 0, 1):
        if isinstance(row, Exception):
            raise ValueError(f"its first row: {row}")
        return {k: None for k in row}
    raise ValueError("no rows")


def _schemas(files: Sequence[str]) -> list[dict | Exception]:
    """Each file's columns (in parallel: object stores answer slowly), or why it cannot be read."""
    def one(f: str):
        try:
            return _columns(f)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError: not a Parquet file
            return e

    if len(files) == 1:
        return [one(files[0])]
    with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
        return list(pool.map(one, files))


def check_dataset(path: str, source: str, kind: str, *, taxonomy=None, strict_verticals: bool = False,
                  reading: CatalogReading | None = None) -> list[str]:
    """Check a dataset of ``kind`` (catalog, labeled, truth, pairs, consensus) from its footers (a JSON lines file: its
    first row); return its readable files. Catalogs and labeled sets are read with ``reading`` (``data.columns``: a
    column is looked for under the file's name for it; a hive partition key is a string column). A labeled set with
    a ``taxonomy`` also has each label checked (:func:`check_labels`).

    A file of a directory that cannot be read is left to the pipeline, which quarantines it with a reason; a dataset
    none of whose files can be read is refused."""
    schema, required, one_of = _DATASETS[kind]
    reading = (reading or CatalogReading()) if _catalog_kind(kind) else CatalogReading()
    files = dataset_files(path, source, kind)
    names_of = {f.path: f.name for f in catalog_files(path)} if _catalog_kind(kind) else {}
    readable = []
    first_error: tuple[str, Exception] | None = None

    def where(name: str) -> str:
        col = reading.file_column(name)
        return f"{col!r} (data.columns.{name})" if col != name else repr(col)

    for f, got in zip(files, _schemas(files)):
        if isinstance(got, Exception):
            first_error = first_error or (f, got)
            continue
        readable.append(f)
        partition = partition_of(names_of.get(f, ""))
        types = {**{k: pa.string() for k in partition}, **got}
        columns = {field.name: types[reading.file_column(field.name)] for field in schema
                   if reading.file_column(field.name) in types}
        for col in required:
            if col not in columns:
                raise InputError(f"{source}: {f}: no column {where(col)} ({_WHAT[kind]} needs it: "
                                 f"{schema.field(col).type})")
        if one_of and not set(columns).intersection(one_of):
            raise InputError(f"{source}: {f}: neither {where(one_of[0])} nor {where(one_of[1])} ({_WHAT[kind]} needs "
                             "one of them: the listing's images)")
        for field in schema:
            actual = columns.get(field.name)
            if actual is not None and not _type_ok(actual, field.type, field.name in required, field.name):
                raise InputError(f"{source}: {f}: column {where(field.name)} is {actual}, expected {field.type}")
    if not readable:
        f, e = first_error  # type: ignore[misc]
        raise InputError(f"{source}: {path}: none of its {len(files)} file(s) can be read ({f}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    if kind == "labeled" and taxonomy is not None:
        check_labels(path, source, taxonomy, strict_verticals=strict_verticals, reading=reading)
    return readable


def _show(values: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:n])
    return f"[{shown}{', ...' if len(values) > n else ''}]"


def check_labels(path: str, source: str, taxonomy, *, strict_verticals: bool = False,
                 reading: CatalogReading | None = None) -> None:
    """Every label of a labeled set names an attribute of its listing's vertical and one of its allowed values
    (matched as answers are: attrpipe.parsing.match_value, as the seed SFT maps them). A row whose vertical is not in
    the taxonomy (``data.match_vertical_names``: also not by case or spaces) is the pipeline's to quarantine
    (``unknown_vertical``), unless ``strict_verticals`` (the seed set: SFT has no quarantine and would stop at such a
    row). Streams three small columns; never the images. Rows that cannot be read are the pipeline's to quarantine."""
    from attrpipe.parsing import match_value
    from attrpipe.pseudolabel.units import iter_rows
    from attrpipe.train.examples import TrainingDataError, _as_dict

    reading = reading or CatalogReading()
    for r in iter_rows(path, ["listing_id", "vertical", "labels"], reading):
        if "_error" in r:
            continue
        where = f"{source}: {path}: {r['_source']} (listing {r.get('listing_id')!r})"
        vertical = taxonomy.match_vertical(r.get("vertical"), reading.match_vertical_names)
        if vertical is None:
            if strict_verticals:
                raise InputError(f"{where}: vertical {r.get('vertical')!r} is not in the taxonomy "
                                 f"{_show(sorted(taxonomy.verticals))} (taxonomy.path, taxonomy.verticals)")
            continue
        try:
            labels = _as_dict(r.get("labels"))
        except TrainingDataError as e:
            raise InputError(f"{where}: labels: {e}") from None
        for attr, value in sorted(labels.items()):
            try:
                allowed = taxonomy.attribute(vertical, attr).values
            except KeyError:
                raise InputError(f"{where}: a label of {attr!r}, an attribute vertical {vertical!r} does not have "
                                 f"(it has {_show(sorted(taxonomy.verticals[vertical].attributes))})") from None
            if match_value(str(value or ""), allowed)[0] is None:
                raise InputError(f"{where}: label {value!r} of {vertical}.{attr} is not one of its values "
                                 f"{_show(list(allowed))}")


# --- models and adapters ----------------------------------------------------------------------------------------------


def _exists(path: str) -> bool:
    return storage.exists(path)


def _check_checkpoint(path: str, source: str, what: str, required: Sequence[str], weights: str,
                      hint: str = "") -> None:
    """A checkpoint directory holding every ``required`` file and safetensors weights (``weights``: a file name, or
    ``"*.safetensors"``); a hub id passes (it is fetched when loaded). Nothing is loaded, nothing copied."""
    from attrpipe.models.loader import locate_checkpoint

    if not path:
        raise InputError(f"{source}: no {what} path given")
    if "://" in path:
        if not _exists(path):
            raise InputError(f"{source}: {what} {path} does not exist{hint}")
        directory = path
    else:
        try:
            directory = locate_checkpoint(path, what, required[0])
        except (FileNotFoundError, NotADirectoryError) as e:
            raise InputError(f"{source}: {e}{hint}") from None
        if not Path(directory).is_dir():
            return  # a hub id
    for name in required:
        if not _exists(storage.join(directory, name)):
            raise InputError(f"{source}: {what} directory {path} has no {name}; is it a saved {what} directory?")
    if weights.startswith("*"):
        found = bool(storage.list_files(directory, weights[1:]))
    else:
        found = _exists(storage.join(directory, weights))
    if not found:
        raise InputError(f"{source}: {what} directory {path} has no {weights} (attrpipe reads weights from "
                         "safetensors only, never a pickled .bin)")


def check_model(cfg, source: str = "model.path") -> None:
    """``model.path`` is a model: a directory with ``config.json``, ``tokenizer_config.json`` (the processor) and
    safetensors weights, or a hub id; a shipped model's files match its model card's sha256."""
    from attrpipe.models.loader import verify_model_files

    path = str(cfg.model.path)
    hint = ""
    if cfg.model.build_tiny:
        hint = " (model.build_tiny: `attrpipe demo` builds it there, or `attrpipe model tiny --out PATH`)"
    _check_checkpoint(path, source, "model", ("config.json", "tokenizer_config.json"), "*.safetensors", hint)
    if "://" not in path and Path(path).is_dir():
        verify_model_files(path)


def check_adapter(path: str, source: str) -> None:
    """A LoRA adapter: a directory with ``adapter_config.json`` and ``adapter_model.safetensors`` (or a hub id)."""
    _check_checkpoint(str(path), source, "adapter", ("adapter_config.json",), "adapter_model.safetensors")


# --- per command ------------------------------------------------------------------------------------------------------


def _taxonomy(cfg):
    from attrpipe.taxonomy import load_taxonomy

    return load_taxonomy(cfg.taxonomy.path, list(cfg.taxonomy.verticals) or None)


def _engine_loads_model(cfg) -> bool:
    """vLLM and transformers load ``model.path``; a plug-in engine (package.module:Class) loads what it loads."""
    return str(cfg.generation.engine) in ("vllm", "hf")


def check_generation(cfg, *, data: str, data_source: str, labeled: bool, adapter: str | None = None,
                     adapter_source: str = "") -> None:
    """``attrpipe pseudolabel``, ``predict`` (a catalog) and ``evaluate`` (a labeled test set)."""
    tax = _taxonomy(cfg)
    if _engine_loads_model(cfg):
        check_model(cfg)
    if adapter:
        check_adapter(adapter, adapter_source)
    check_dataset(data, data_source, "labeled" if labeled else "catalog", taxonomy=tax,
                  reading=CatalogReading.from_conf(cfg))


def check_training(kind: str, cfg, *, data: str, data_source: str, init_adapter: str | None,
                   reference_adapter: str | None, resume: str | None) -> None:
    """``attrpipe train sft|dpo|scpo|sl``: the model, the start and reference adapters the run would take, the
    checkpoint to resume from, and the data (the seed set's labels included)."""
    from attrpipe.train.plan import default_paths, find_resume_checkpoint, resolve_start

    check_model(cfg)
    paths = default_paths(kind, cfg)
    try:
        start = resolve_start(kind, cfg, init_adapter, paths["sft_adapter"], reference_adapter)
    except ValueError as e:  # its messages start with the kind or the key (dpo.reference=base ..., sl.init=base ...)
        raise InputError(str(e)) from None
    if start.init_adapter is not None:
        source = "--init-adapter" if init_adapter else f"the start adapter of {kind} (<run>/sft/adapter: train sft " \
            f"first, or pass --init-adapter)"
        check_adapter(start.init_adapter, source)
    if start.reference_adapter is not None:
        check_adapter(start.reference_adapter, "--reference-adapter")
    if resume:
        try:
            find_resume_checkpoint(resume)
        except (FileNotFoundError, ValueError) as e:
            raise InputError(f"--resume: {e}") from None
    if kind == "sft":
        check_dataset(data, data_source, "labeled", taxonomy=_taxonomy(cfg), strict_verticals=True,
                      reading=CatalogReading.from_conf(cfg))
    else:
        check_dataset(data, data_source, "pairs" if kind == "dpo" else "consensus")


def check_loop(cfg, *, seed_sft: bool | None = None, rounds: int | None = None, oracle: bool | None = None) -> None:
    """``attrpipe loop`` and ``demo`` (and each seed of a study): the model, the seed set (with a seed SFT), the pool
    (with rounds), the test set, and the true labels of the pool for an oracle arm."""
    from attrpipe.methods import is_oracle

    seed_sft = bool(cfg.loop.seed_sft) if seed_sft is None else seed_sft
    rounds = int(cfg.loop.rounds) if rounds is None else rounds
    oracle = is_oracle(cfg.loop.method) if oracle is None else oracle
    tax = _taxonomy(cfg)
    reading = CatalogReading.from_conf(cfg)
    check_model(cfg)
    if seed_sft:
        check_dataset(str(cfg.data.seed), "data.seed", "labeled", taxonomy=tax, strict_verticals=True, reading=reading)
    if rounds > 0:
        check_dataset(str(cfg.data.unlabeled), "data.unlabeled", "catalog", reading=reading)
        if oracle:
            check_dataset(str(cfg.data.truth or ""), "data.truth", "truth", reading=reading)
    check_dataset(str(cfg.data.test), "data.test", "labeled", taxonomy=tax, reading=reading)


def check_study(cfg) -> None:
    """``attrpipe study``: every arm starts from the seed SFT and runs at least a round."""
    from attrpipe.methods import is_oracle

    check_loop(cfg, seed_sft=True, rounds=max(1, int(cfg.study.rounds)),
               oracle=any(is_oracle(m) for m in cfg.study.methods))
