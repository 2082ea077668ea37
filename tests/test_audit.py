"""`attrpipe audit`: a whole run passes; each kind of damage is found and named; leftovers are never data."""

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attrpipe.audit import audit, audit_adapter, format_report
from attrpipe.cli import main
from attrpipe.pseudolabel.output import committed_files
from attrpipe.pseudolabel.pipeline import run_pseudolabel
from attrpipe.schemas import CONSENSUS_SCHEMA, PAIRS_SCHEMA, QUARANTINE_SCHEMA
from test_pseudolabel import cfg_for
from catalogs import write_catalog


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("audit-catalog")
    info = write_catalog(root)
    out = root.parent / "audit-out"
    run_pseudolabel(cfg_for(root, out), verbose=False)
    return out, info


@pytest.fixture
def run_copy(clean_run, tmp_path):
    out, _ = clean_run
    dest = tmp_path / "copy"
    shutil.copytree(out, dest)
    # _run.json names the catalog, not the output: a copy audits against the same input
    return dest


def _rewrite(path: Path, schema, edit) -> None:
    rows = pq.read_table(path).to_pylist()
    pq.write_table(pa.Table.from_pylist(edit(rows), schema=schema), path)


def _failed(rep) -> dict[str, list[str]]:
    return {name: problems for name, problems in rep.checks.items() if problems}


def _unit_with(out: Path, name: str) -> Path:
    return sorted((out / name).glob("*.parquet"))[0]


def test_a_whole_run_passes_and_counts_every_input_row(clean_run):
    out, info = clean_run
    rep = audit(str(out))
    assert rep.ok, format_report(rep)
    assert rep.kind == "pseudolabel"
    assert rep.facts["input_rows"] == info["rows"]
    assert rep.facts["pairs"] == pq.read_table(out / "pairs").num_rows > 0
    assert not rep.leftovers
    assert "audit passed" in format_report(rep)


def test_a_lost_quarantine_row_is_named(run_copy):
    shard = _unit_with(run_copy, "quarantine")
    lost = pq.read_table(shard).to_pylist()[0]["source"]
    _rewrite(shard, QUARANTINE_SCHEMA, lambda rows: rows[1:])
    rep = audit(str(run_copy))
    failed = _failed(rep)
    assert any(lost in p for p in failed["every input row labeled or quarantined, exactly once"]), failed
    assert "counts add up (markers, manifest)" in failed  # the marker counted the row that is gone


def test_a_changed_consensus_value_breaks_the_rules(run_copy):
    shard = _unit_with(run_copy, "consensus")

    def edit(rows):
        r = next(r for r in rows if r["kept"])
        r["confidence"] = 1.0 if r["confidence"] < 1.0 else 0.5
        return rows

    _rewrite(shard, CONSENSUS_SCHEMA, edit)
    failed = _failed(audit(str(run_copy)))
    assert list(failed) == ["consensus and pairs follow the rules"], failed


def test_a_swapped_pair_breaks_the_rules(run_copy):
    shard = _unit_with(run_copy, "pairs")

    def edit(rows):
        rows[0]["chosen"], rows[0]["rejected"] = rows[0]["rejected"], rows[0]["chosen"]
        return rows

    _rewrite(shard, PAIRS_SCHEMA, edit)
    failed = _failed(audit(str(run_copy)))
    assert any(pq.read_table(shard).to_pylist()[0]["example_id"] in p
               for p in failed["consensus and pairs follow the rules"]), failed


def test_a_truncated_shard_and_a_missing_marker_are_named(run_copy):
    shard = _unit_with(run_copy, "consensus")
    shard.write_bytes(shard.read_bytes()[:100])
    marker = sorted((run_copy / "_units").glob("*.json"))[-1]
    marker.unlink()
    failed = _failed(audit(str(run_copy)))
    assert any(shard.name in p and "not a readable Parquet" in p
               for p in failed["shards whole, with the documented schemas"]), failed
    assert any(marker.stem in p and "not committed" in p for p in failed["every planned unit committed"]), failed


def test_leftovers_of_a_kill_are_listed_and_never_read_as_data(run_copy):
    """A kill can leave a temp file, or a whole shard of a unit whose marker was never written: not data."""
    (run_copy / "pairs" / ".tmp-0123-part.parquet").write_bytes(b"half a shard")
    stray = run_copy / "pairs" / "part-99999-0000000000.parquet"
    shutil.copy(_unit_with(run_copy, "pairs"), stray)
    rep = audit(str(run_copy))
    assert rep.ok, format_report(rep)
    assert sorted(Path(p).name for p in rep.leftovers) == [".tmp-0123-part.parquet", stray.name]
    files = committed_files(str(run_copy / "pairs"))
    assert files and str(stray) not in files and all(Path(f).exists() for f in files)
    assert committed_files(str(run_copy)) is None  # not a shard folder


def test_cli_exit_codes(clean_run, run_copy, capsys):
    out, _ = clean_run
    assert main(["audit", str(out)]) == 0
    assert "audit passed" in capsys.readouterr().out
    (run_copy / "manifest.json").write_text((run_copy / "manifest.json").read_text().replace(
        '"pairs": ', '"pairs": 1'))
    assert main(["audit", str(run_copy)]) == 1
    text = capsys.readouterr().out
    assert "manifest.json's counts differ" in text and "audit FAILED" in text
    assert main(["audit", str(run_copy / "nowhere")]) == 1


def test_audit_adapter_finds_truncation_and_non_finite_values(tmp_path):
    import torch
    from safetensors.torch import save_file

    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text('{"r": 32}')
    save_file({"a.lora_A.weight": torch.ones(4, 4)}, str(d / "adapter_model.safetensors"))
    assert audit_adapter(str(d)) == []
    save_file({"a.lora_A.weight": torch.tensor([[float("nan")]])}, str(d / "adapter_model.safetensors"))
    assert "non-finite" in audit_adapter(str(d))[0]
    data = (d / "adapter_model.safetensors").read_bytes()
    (d / "adapter_model.safetensors").write_bytes(data[: len(data) - 3])
    assert "not a whole safetensors file" in audit_adapter(str(d))[0]
    (d / "adapter_config.json").unlink()
    assert "missing" in audit_adapter(str(d))[0]
