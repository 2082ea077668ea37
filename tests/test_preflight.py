"""Fail fast, in one line: every command checks what it was given before any model loads, any Ray starts or any
output is written (attrpipe/preflight.py), and takes key=value overrides before or after its options.

Every library entry point a command could reach is replaced by a recorder: a bad input must stop the command with
exit 2 and one line `attrpipe: error: ...` naming the path, column or key, and with nothing recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attrpipe.cli import main
from attrpipe.schemas import CATALOG_SCHEMA, LABELED_SCHEMA

CONF = "conf/tiny_cpu.yaml"
LOOSE = pa.schema([f.with_nullable(True) for f in LABELED_SCHEMA])


# --- fixtures ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def ran(monkeypatch):
    """What ran: every library entry point of the commands, and Ray's start, record their calls instead of running."""
    calls: list[tuple[str, tuple, dict]] = []

    def recorder(name, result=None):
        def f(*args, **kwargs):
            calls.append((name, args, kwargs))
            return result
        return f

    import attrpipe.demo
    import attrpipe.evaluation
    import attrpipe.loop
    import attrpipe.models.loader
    import attrpipe.predict
    import attrpipe.pseudolabel.pipeline
    import attrpipe.ray_utils
    import attrpipe.study
    import attrpipe.synth.pretrain
    import attrpipe.train

    monkeypatch.setattr(attrpipe.pseudolabel.pipeline, "run_pseudolabel", recorder("pseudolabel"))
    monkeypatch.setattr(attrpipe.evaluation, "run_evaluate", recorder("evaluate"))
    monkeypatch.setattr(attrpipe.predict, "run_predict", recorder("predict"))
    monkeypatch.setattr(attrpipe.train, "run_training", recorder(
        "train", {"global_step": 1, "records": 1, "wall_seconds": 0.0, "train_loss": 0.0, "adapter": "a",
                  "metrics": "m"}))
    monkeypatch.setattr(attrpipe.loop, "run_loop", recorder("loop"))
    monkeypatch.setattr(attrpipe.study, "run_study", recorder("study", {"failed": []}))
    monkeypatch.setattr(attrpipe.demo, "run_demo", recorder("demo", 0))
    monkeypatch.setattr(attrpipe.synth.pretrain, "run_pretrain", recorder("pretrain"))
    monkeypatch.setattr(attrpipe.ray_utils, "init_ray", recorder("init_ray"))
    monkeypatch.setattr(attrpipe.models.loader, "load_model", recorder("load_model"))
    monkeypatch.setattr(attrpipe.models.loader, "load_processor", recorder("load_processor"))
    return calls


def _write(path: Path, rows: list[dict], schema: pa.Schema = LOOSE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _listing(i: int, vertical: str = "suitcase", **labels) -> dict:
    row = {"listing_id": f"l{i}", "vertical": vertical, "image_uris": [f"images/l{i}.jpg"], "image_bytes": None,
           "seller_attributes": None}
    if labels:
        row["labels"] = list(labels.items())
    return row


@pytest.fixture
def env(tmp_path):
    """A catalog root (seed, unlabeled, test), a directory that passes for a model and one for an adapter, and the
    overrides that point a config at them; outputs under tmp/runs (which must never appear after an error)."""
    root = tmp_path / "cat"
    (root / "catalog.json").parent.mkdir(parents=True)
    (root / "catalog.json").write_text("{}")
    labeled = [_listing(i, color="Black", type="Hard Body") for i in range(3)] + [_listing(9, "watch")]  # no labels
    _write(root / "seed" / "part-0.parquet", labeled)
    _write(root / "test" / "part-0.parquet", labeled)
    _write(root / "unlabeled" / "part-0.parquet", [_listing(i) for i in range(8)], CATALOG_SCHEMA)
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "tokenizer_config.json"):
        (model / name).write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    runs = tmp_path / "runs"
    overrides = [f"data.root={root}", f"model.path={model}", "taxonomy.verticals=[suitcase,watch]",
                 f"run.output_dir={runs}", "model.build_tiny=false"]
    return {"root": root, "model": model, "adapter": adapter, "runs": runs, "tmp": tmp_path, "o": overrides}


def _fails(capsys, argv: list[str], *needles: str) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith("attrpipe: error: "), err
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


def _nothing_ran(ran, env) -> None:
    assert ran == [], ran
    assert not env["runs"].exists()


# --- paths and Parquet ------------------------------------------------------------------------------------------------


def test_a_catalog_path_that_does_not_exist(env, ran, capsys):
    missing = env["tmp"] / "nowhere"
    _fails(capsys, ["pseudolabel", CONF, *env["o"], "--catalog", str(missing)], "--catalog: ", str(missing),
           "does not exist")
    _fails(capsys, ["evaluate", CONF, *env["o"], f"data.test={missing}"], "data.test: ", str(missing))
    _nothing_ran(ran, env)


def test_a_path_that_holds_no_parquet(env, ran, capsys):
    empty = env["tmp"] / "empty"
    empty.mkdir()
    (empty / "rows.csv").write_text("listing_id,vertical\n")
    _fails(capsys, ["predict", CONF, *env["o"], "--catalog", str(empty)], "--catalog: ", str(empty),
           "no Parquet files")
    _fails(capsys, ["pseudolabel", CONF, *env["o"], "--catalog", str(empty / "rows.csv")], "rows.csv",
           "not a .parquet file")
    (empty / "part-0.parquet").write_bytes(b"PAR1 cut short by a failed upload")
    _fails(capsys, ["pseudolabel", CONF, *env["o"], "--catalog", str(empty)], "part-0.parquet",
           "none of its 1 file(s) can be read")
    _nothing_ran(ran, env)


def test_an_unreadable_file_beside_readable_ones_is_left_to_the_quarantine(env, ran, capsys):
    (env["root"] / "unlabeled" / "part-1.parquet").write_bytes(b"PAR1 cut short")
    assert main(["pseudolabel", CONF, *env["o"]]) == 0
    assert [c[0] for c in ran] == ["pseudolabel"]


# --- columns ----------------------------------------------------------------------------------------------------------


def test_a_catalog_without_a_required_column(env, ran, capsys):
    bad = _write(env["tmp"] / "c" / "part-0.parquet", [{"listing_id": "a", "image_uris": ["x.jpg"]}],
                 pa.schema([("listing_id", pa.string()), ("image_uris", pa.list_(pa.string()))]))
    _fails(capsys, ["pseudolabel", CONF, *env["o"], "--catalog", str(bad.parent)], str(bad), "no column 'vertical'")
    no_images = _write(env["tmp"] / "d" / "part-0.parquet", [{"listing_id": "a", "vertical": "watch"}],
                       pa.schema([("listing_id", pa.string()), ("vertical", pa.string())]))
    _fails(capsys, ["pseudolabel", CONF, *env["o"], "--catalog", str(no_images)], "'image_uris'", "'image_bytes'")
    _nothing_ran(ran, env)


def test_a_column_of_the_wrong_type(env, ran, capsys):
    ints = _write(env["tmp"] / "c" / "part-0.parquet", [{"listing_id": "a", "vertical": 3, "image_uris": ["x"]}],
                  pa.schema([("listing_id", pa.string()), ("vertical", pa.int64()),
                             ("image_uris", pa.list_(pa.string()))]))
    _fails(capsys, ["pseudolabel", CONF, *env["o"], "--catalog", str(ints)], "column 'vertical' is int64",
           "expected string")
    flat = _write(env["tmp"] / "d" / "part-0.parquet", [{"listing_id": "a", "vertical": "watch", "image_uris": "x"}],
                  pa.schema([("listing_id", pa.string()), ("vertical", pa.string()), ("image_uris", pa.string())]))
    _fails(capsys, ["predict", CONF, *env["o"], "--catalog", str(flat)], "column 'image_uris' is string")
    _nothing_ran(ran, env)


def test_large_and_dictionary_types_are_the_plain_types(env, ran):
    rows = [{"listing_id": "a", "vertical": "watch", "image_uris": ["x.jpg"]}]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("listing_id", pa.large_string()),
                                                         ("vertical", pa.dictionary(pa.int32(), pa.string())),
                                                         ("image_uris", pa.large_list(pa.large_string()))]))
    (env["tmp"] / "c").mkdir()
    pq.write_table(table, env["tmp"] / "c" / "part-0.parquet")
    assert main(["pseudolabel", CONF, *env["o"], "--catalog", str(env["tmp"] / "c")]) == 0


# --- labeled sets -----------------------------------------------------------------------------------------------------


def test_a_labeled_set_without_labels(env, ran, capsys):
    unlabeled = str(env["root"] / "unlabeled")
    _fails(capsys, ["evaluate", CONF, *env["o"], "--test", unlabeled], "--test: ", "no column 'labels'",
           "a labeled set needs it")
    _fails(capsys, ["train", "sft", CONF, *env["o"], f"data.seed={unlabeled}"], "data.seed: ", "no column 'labels'")
    _fails(capsys, ["loop", CONF, *env["o"], f"data.test={unlabeled}"], "data.test: ", "no column 'labels'")
    _nothing_ran(ran, env)


def test_a_label_outside_its_attributes_values(env, ran, capsys):
    _write(env["tmp"] / "t" / "part-0.parquet", [_listing(0, color="Black"), _listing(1, color="Turquoise-ish")])
    line = _fails(capsys, ["evaluate", CONF, *env["o"], "--test", str(env["tmp"] / "t")],
                  "part-0.parquet#1 (listing 'l1')", "label 'Turquoise-ish' of suitcase.color is not one of")
    assert "'Black'" in line
    _write(env["tmp"] / "s" / "part-0.parquet", [_listing(0, colour="Black")])
    _fails(capsys, ["train", "sft", CONF, *env["o"], "--data", str(env["tmp"] / "s")], "--data: ",
           "a label of 'colour'", "vertical 'suitcase' does not have")
    _nothing_ran(ran, env)


def test_labels_match_as_answers_do_and_unknown_verticals_are_the_quarantines_in_a_test_set(env, ran, capsys):
    rows = [_listing(0, color="  navy-blue ", type="hard body"), _listing(1, "spaceship", hull="Shiny")]
    _write(env["tmp"] / "t" / "part-0.parquet", rows)
    assert main(["evaluate", CONF, *env["o"], "--test", str(env["tmp"] / "t")]) == 0
    # the seed SFT has no quarantine: a seed listing of a vertical outside the taxonomy is refused up front
    _fails(capsys, ["train", "sft", CONF, *env["o"], "--data", str(env["tmp"] / "t")],
           "vertical 'spaceship' is not in the taxonomy")


# --- models and adapters ----------------------------------------------------------------------------------------------


def test_an_adapter_directory_without_config_or_safetensors(env, ran, capsys):
    empty = env["tmp"] / "empty-adapter"
    empty.mkdir()
    _fails(capsys, ["pseudolabel", CONF, *env["o"], "--adapter", str(empty)], "--adapter: ", str(empty),
           "adapter_config.json")
    pickled = env["tmp"] / "pickled-adapter"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text("{}")
    (pickled / "adapter_model.bin").write_bytes(b"")
    _fails(capsys, ["predict", CONF, *env["o"], f"predict.adapter={pickled}"], "predict.adapter: ",
           "adapter_model.safetensors")
    _fails(capsys, ["evaluate", CONF, *env["o"], "--adapter", str(pickled)], "--adapter: ")
    # DPO's start adapter by default: <run>/sft/adapter, not trained yet
    _write(env["tmp"] / "pairs" / "part-0.parquet", [], pa.schema([(c, pa.string()) for c in
                                                                   ("example_id", "prompt", "chosen", "rejected")]))
    _fails(capsys, ["train", "dpo", CONF, *env["o"], "--data", str(env["tmp"] / "pairs")],
           "the start adapter of dpo", "sft/adapter")
    _fails(capsys, ["train", "dpo", CONF, *env["o"], "--data", str(env["tmp"] / "pairs"), "--init-adapter",
                    str(env["adapter"]), "--reference-adapter", str(empty)], "--reference-adapter: ")
    _nothing_ran(ran, env)


def test_a_model_path_that_is_not_a_model(env, ran, capsys):
    nowhere = env["tmp"] / "no" / "model"
    _fails(capsys, ["pseudolabel", CONF, *env["o"], f"model.path={nowhere}"], "model.path: ", str(nowhere),
           "does not exist")
    _fails(capsys, ["loop", CONF, *env["o"], f"model.path={nowhere}", "model.build_tiny=true"], "attrpipe model tiny")
    not_a_model = env["tmp"] / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    _fails(capsys, ["evaluate", CONF, *env["o"], f"model.path={not_a_model}"], "model.path: ", "config.json")
    _fails(capsys, ["train", "sft", CONF, *env["o"], f"model.path={not_a_model / 'notes.txt'}"], "model.path: ",
           "is a file")
    (not_a_model / "config.json").write_text("{}")
    (not_a_model / "tokenizer_config.json").write_text("{}")
    (not_a_model / "pytorch_model.bin").write_bytes(b"")
    _fails(capsys, ["study", "threshold", CONF, *env["o"], f"model.path={not_a_model}"], "model.path: ",
           "*.safetensors")
    _nothing_ran(ran, env)


def test_a_plug_in_engine_loads_what_it_loads(env, ran):
    """pseudolabel/predict/evaluate with a plug-in engine (tests' fakes) never load model.path: not checked."""
    assert main(["pseudolabel", CONF, *env["o"], f"model.path={env['tmp'] / 'none'}",
                 "generation.engine=fakes:ScriptedEngine"]) == 0


def test_training_data_and_resume(env, ran, capsys):
    _fails(capsys, ["train", "sl", CONF, *env["o"], "--init-adapter", str(env["adapter"])], "sl data (no --data",
           "consensus", "does not exist")
    _fails(capsys, ["train", "sft", CONF, *env["o"], "--resume", str(env["tmp"] / "ckpt")], "--resume: ",
           "does not exist")
    pairs = _write(env["tmp"] / "pairs" / "part-0.parquet", [{"example_id": "a", "prompt": "p"}],
                   pa.schema([("example_id", pa.string()), ("prompt", pa.string())]))
    _fails(capsys, ["train", "dpo", CONF, *env["o"], "--data", str(pairs), "--init-adapter", str(env["adapter"])],
           "no column 'chosen'")
    _nothing_ran(ran, env)


# --- overrides: anywhere, and every key honored or refused ------------------------------------------------------------


def _options(command: str, env) -> list[str]:
    return {"pseudolabel": ["--catalog", str(env["root"] / "unlabeled")],
            "evaluate": ["--test", str(env["root"] / "test")],
            "predict": ["--mode", "greedy"],
            "train": ["--data", str(env["root"] / "seed")],
            "synth": ["--force"]}.get(command, [])


CONFIG_COMMANDS = [["config"], ["demo"], ["pseudolabel"], ["train", "sft"], ["loop"], ["study", "threshold"],
                   ["study", "pool-size"], ["predict"], ["evaluate"], ["synth", "pretrain"]]


@pytest.mark.parametrize("command", CONFIG_COMMANDS, ids=" ".join)
def test_overrides_before_or_after_the_options(command, env, ran, capsys):
    """key=value before the options, after them, or both (the last of a key wins), for every command with a config."""
    opts = _options(command[0], env)
    for argv, name in [([*command, CONF, *env["o"], "run.name=before", *opts], "before"),
                       ([*command, CONF, *env["o"], *opts, "run.name=after"], "after"),
                       ([*command, CONF, "run.name=first", *opts, *env["o"], "run.name=last"], "last")]:
        ran.clear()
        assert main(argv) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        if command == ["config"]:
            assert f"name: {name}" in out
            continue
        cfgs = [a for _, args, kw in ran for a in (*args, *kw.values()) if hasattr(a, "run")]
        assert cfgs and all(c.run.name == name for c in cfgs), (argv, ran)


def test_an_unknown_option_after_the_overrides_is_still_an_error(env, ran, capsys):
    with pytest.raises(SystemExit) as e:
        main(["pseudolabel", CONF, *env["o"], "--bogus", "x"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["audit", str(env["tmp"]), "run.name=x"])  # no config: an override is not an argument of it
    assert ran == []


@pytest.mark.parametrize("catalog", [False, True])
def test_pseudolabel_and_predict_honor_the_pool_limit(catalog, env, ran):
    opt = ["--catalog", str(env["root"] / "unlabeled")] if catalog else []
    assert main(["pseudolabel", CONF, *opt, *env["o"], "data.unlabeled_limit=3"]) == 0
    assert main(["predict", CONF, *env["o"], *opt, "data.unlabeled_limit=3"]) == 0
    assert [(name, kw["limit"]) for name, _, kw in ran] == [("pseudolabel", 3), ("predict", 3)]


@pytest.mark.parametrize("command, override, needle", [
    (["study", "pool-size"], "data.unlabeled_limit=120", "study.pool_sizes"),
    (["study", "threshold"], "consensus.threshold=0.7", "study.thresholds"),
    (["study", "threshold"], "loop.rounds=3", "study.rounds"),
    (["study", "threshold"], "run.seed=4", "study.seeds"),
    (["loop"], "pseudolabel.adapter=/x", "adapter it has just trained"),
    (["evaluate"], "data.unlabeled_limit=5", "data.test"),
    (["train", "sft"], "data.unlabeled_limit=5", "the pool's"),
])
def test_an_override_the_command_would_ignore_is_refused(command, override, needle, env, ran, capsys):
    key = override.split("=")[0]
    _fails(capsys, [*command, CONF, *env["o"], *_options(command[0], env), override],
           f"attrpipe: error: {key}: attrpipe {' '.join(command)} does not use it", needle)
    _nothing_ran(ran, env)


def test_a_preset_may_set_a_key_a_command_does_not_use(env, ran, tmp_path):
    """A preset serves every command: miniature.yaml's data.unlabeled_limit is the threshold study's pool, and the
    pool-size study takes its pools from study.pool_sizes without refusing the preset."""
    preset = tmp_path / "preset.yaml"
    preset.write_text(json.dumps({"data": {"unlabeled_limit": 5}, "generation": {"engine": "hf"}}))
    assert main(["study", "pool-size", str(preset), *env["o"]]) == 0
    assert [name for name, _, _ in ran] == ["study"]


def test_a_study_with_a_failed_arm_exits_1(env, ran, tmp_path, monkeypatch):
    """Every arm that finished is in the summary; the command still says, by its exit status, that one failed."""
    import attrpipe.study

    monkeypatch.setattr(attrpipe.study, "run_study", lambda *a, **k: {"failed": [{"arm": "sl-pool-8"}]})
    preset = tmp_path / "preset.yaml"
    preset.write_text(json.dumps({"generation": {"engine": "hf"}}))
    assert main(["study", "pool-size", str(preset), *env["o"]]) == 1
