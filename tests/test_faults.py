"""Faults lose nothing: an engine actor killed in the middle of pseudo-labeling is restarted by Ray Data, its unit is
redone, and the output equals a clean run's and passes the audit. (The driver killed and rerun: test_pseudolabel.py;
a training worker failing: test_train_ray.py; a shard left behind by a kill: test_audit.py.)"""

import pyarrow.parquet as pq

from attrpipe.audit import audit, format_report
import pytest

from attrpipe.pseudolabel.pipeline import cpu_stage_resources, run_pseudolabel
from catalogs import write_catalog
from test_pseudolabel import cfg_for


def _rows(out, name):
    return sorted(pq.read_table(out / name).to_pylist(),
                  key=lambda r: (r.get("example_id") or r["source"], r.get("rejected_index", 0)))


@pytest.mark.parametrize("cluster,engines,per_task,max_actors,pending,expected", [
    (2, 1, 1.0, None, 10, (0.5, 1, True)),      # this machine: the two CPU stages share the CPU the engine leaves
    (16, 4, 1.0, None, 100, (1.0, 6, True)),    # 12 free CPUs: 6 one-CPU actors per stage
    (16, 4, 1.0, None, 3, (1.0, 3, True)),      # never more actors than units
    (16, 16, 1.0, None, 10, (1.0, 10, False)),  # the cluster cannot hold the engines yet (autoscaling): no cap
    (0, 16, 1.0, None, 10, (1.0, 10, False)),   # autoscaling from zero workers
    (16, 4, 2.0, 3, 100, (2.0, 3, False)),      # set explicitly: used as given
])
def test_cpu_stages_fit_beside_the_engines(cluster, engines, per_task, max_actors, pending, expected):
    per_actor, size, reserved = cpu_stage_resources(cluster, engines, per_task, max_actors, pending)
    assert (per_actor, size, reserved) == expected
    if reserved:  # every actor of both stages and the engines fit at once
        assert 2 * size * per_actor + engines <= cluster


def test_engine_actor_killed_mid_run_is_restarted_and_loses_nothing(tmp_path, ray_local):
    root = tmp_path / "catalog"
    write_catalog(root, good=12)
    clean_dir, crash_dir = tmp_path / "no-crash", tmp_path / "crash"
    clean_dir.mkdir()
    crash_dir.mkdir()
    for d in (clean_dir, crash_dir):  # a model directory's identity is the fingerprint of its config files
        (d / "config.json").write_text("{}")
    (clean_dir / "crashed").write_text("already crashed: this engine runs through\n")
    outs = {}
    for name, model in (("clean", clean_dir), ("crash", crash_dir)):
        outs[name] = tmp_path / f"out-{name}"
        cfg = cfg_for(root, outs[name], "generation.engine=fakes:CrashOnceEngine", f"model.path={model}",
                      "pseudolabel.listings_per_unit=2")
        outs[name + "-manifest"] = run_pseudolabel(cfg, verbose=False)
    assert (crash_dir / "crashed").read_text().startswith("engine actor"), "the actor really died"
    assert outs["crash-manifest"]["counts"] == outs["clean-manifest"]["counts"]
    assert outs["crash-manifest"]["units"] >= 4
    for name in ("consensus", "pairs", "quarantine"):
        assert _rows(outs["crash"], name) == _rows(outs["clean"], name)
    rep = audit(str(outs["crash"]))
    assert rep.ok, format_report(rep)
