"""End-to-end training on a local Ray (2 CPU workers, gloo, DeepSpeed on the CPU) with the tiny Qwen2.5-VL:
SFT (with a worker process killed, which Ray Train recovers from, then an explicit resume), self-learning, DPO with both references under
ZeRO-2 (one of them learning a fixed preference set), DPO under ZeRO-3, and ScPO.

One Ray cluster, one tiny model and one data set for the module; the SFT adapter feeds the SL and DPO tests.
Each fit costs about half a minute of Ray Train start-up on 2 cores, so steps are few and the tests are `slow`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from attrpipe.config import load_config
from test_train_data import write_consensus, write_pairs, write_seed_catalog, write_taxonomy

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from attrpipe.models import build_tiny_model

    d = tmp_path_factory.mktemp("train-ray")
    tax = write_taxonomy(d / "tax")
    e = {
        "dir": d,
        "tiny": build_tiny_model(d / "tiny"),
        "tax": tax,
        "seed": write_seed_catalog(d / "cat", n_per_vertical=8),  # 8 x 2 + 8 x 1 = 24 SFT records
        "pairs": write_pairs(d / "pairs", tax, n=96),  # 24 steps of 2 pairs on each of 2 workers: one pass
        "consensus": write_consensus(d / "consensus", d / "img", n=8),  # 4 kept x 4 preferred chains = 16 records
    }
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"TQDM_DISABLE": "1"}})
    yield e
    if started:
        ray.shutdown()


def _cfg(env, *overrides):
    return load_config("conf/tiny_cpu.yaml", [
        f"model.path={env['tiny']}", f"taxonomy.path={env['tax']}", f"data.root={env['seed'].parent}",
        f"run.output_dir={env['dir'] / 'runs'}", "run.name=t",
        "sft.save_steps=2", "dpo.save_steps=100", "ray.train.num_workers=2", *overrides,
    ])


def _metrics(out: dict) -> list[dict]:
    return [json.loads(line) for line in Path(out["metrics"]).read_text().splitlines()]


def _check_adapter(out: dict, env, start: Path | None) -> dict[str, torch.Tensor]:
    """The adapter is PEFT's format (only the language model's q/v LoRA weights, no frozen reference copy), comes with
    the processor files, differs from its start and loads back into peft with exactly the saved weights."""
    from peft import PeftModel

    from attrpipe.models import load_model, load_processor

    a = Path(out["adapter"])
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "processor_config.json", "chat_template.jinja"):
        assert (a / f).is_file(), f
    assert not (a / "ref").exists()
    conf = json.loads((a / "adapter_config.json").read_text())
    assert conf["peft_type"] == "LORA" and conf["r"] == 32 and conf["lora_alpha"] == 32
    weights = load_file(a / "adapter_model.safetensors")
    assert weights and all(".language_model.layers." in k and (".q_proj.lora_" in k or ".v_proj.lora_" in k)
                           for k in weights)
    if start is None:  # a fresh adapter starts with B = 0
        assert any(v.abs().max() > 0 for k, v in weights.items() if "lora_B" in k)
    else:
        before = load_file(start / "adapter_model.safetensors")
        assert before.keys() == weights.keys()
        assert max((weights[k] - before[k]).abs().max().item() for k in weights) > 0
    model = PeftModel.from_pretrained(load_model(env["tiny"]), a)
    state = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(state) == len(weights)
    for k, v in weights.items():
        loaded = state[k.replace(".weight", ".default.weight")]
        assert torch.equal(loaded, v)
    load_processor(a)  # the adapter directory is a usable processor directory too
    return weights


@pytest.fixture(scope="module")
def sft_run(env):
    """SFT of 6 steps, checkpoints every 2; the rank-1 worker process SIGKILLs itself after step 5 (as on a preempted
    node), and Ray Train restarts the group, which resumes from its last registered checkpoint (FailureConfig).

    The kill waits 5 s after step 5: Ray Train registers a checkpoint when its controller has collected every
    rank's report, and a process killed at once can take the latest one with it (seen in the full suite on a loaded
    machine: the run then restarted from scratch)."""
    from attrpipe.train import run_training

    cfg = _cfg(env, "sft.max_steps=6", "ray.train.max_failures=1")
    out = run_training("sft", cfg, _fault={"step": 5, "marker": str(env["dir"] / "fault" / "sft"), "kill": True,
                                           "ranks": [1], "delay_s": 5})
    return out


def test_sft_recovers_from_a_worker_failure_and_writes_an_adapter(sft_run, env):
    out = sft_run
    assert out["out_dir"] == str(env["dir"] / "runs" / "t" / "sft")
    assert out["records"] == 24 and out["plan"]["max_steps"] == 6
    assert out["global_step"] == 6 and out["resumed_from_step"] == 4
    assert out["hyper"]["learning_rate"] == pytest.approx(3e-5)
    killed = sorted((env["dir"] / "fault").glob("sft.*"))
    assert [m.name for m in killed] == ["sft.1"] and "SIGKILL" in killed[0].read_text(), "the worker was killed"
    steps = [m["step"] for m in _metrics(out)]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 1-4 from the first attempt (restored), 5-6 after the restart
    assert all(m["loss"] > 0 for m in _metrics(out))
    _check_adapter(out, env, None)


def test_explicit_resume_continues_the_step_count(sft_run, env):
    from attrpipe.train import run_training

    cfg = _cfg(env, "sft.max_steps=8")
    out = run_training("sft", cfg, out_dir=str(env["dir"] / "runs" / "t" / "sft-resumed"),
                       resume_from=sft_run["out_dir"])
    assert out["resumed_from_step"] == 6 and out["global_step"] == 8
    assert "checkpoint" in out["resume_from"]
    assert [m["step"] for m in _metrics(out)] == list(range(1, 9))
    _check_adapter(out, env, Path(sft_run["adapter"]))


def test_resuming_from_the_last_steps_checkpoint_trains_no_step_more(sft_run, env):
    """A checkpoint of the run's last step (a run killed after its last save, before it reported its result, is
    resumed from it): the result is that checkpoint's adapter, the step count stays at max_steps. The trainer itself
    would take one step more (transformers checks the step count only after a step)."""
    from attrpipe.train import run_training

    out = run_training("sft", _cfg(env, "sft.max_steps=6"), out_dir=str(env["dir"] / "runs" / "t" / "sft-again"),
                       resume_from=sft_run["out_dir"])
    assert out["resumed_from_step"] == 6 and out["global_step"] == 6
    assert [m["step"] for m in _metrics(out)] == [1, 2, 3, 4, 5, 6]
    weights = _check_adapter(out, env, None)
    before = load_file(Path(sft_run["adapter"]) / "adapter_model.safetensors")
    assert weights.keys() == before.keys() and all(torch.equal(weights[k], before[k]) for k in weights)
    assert sorted(p.name for p in Path(out["adapter"]).iterdir()) == \
        sorted(p.name for p in Path(sft_run["adapter"]).iterdir())  # the model and processor files, nothing more


def test_self_learning_continues_the_sft_adapter_on_preferred_chains(sft_run, env):
    from attrpipe.train import run_training

    from attrpipe.cli import main

    # Through the command line, as a user runs it (the module's Ray is already up: the command joins it).
    overrides = [f"model.path={env['tiny']}", f"taxonomy.path={env['tax']}", f"data.root={env['seed'].parent}",
                 f"run.output_dir={env['dir'] / 'runs'}", "run.name=t", "ray.train.num_workers=2", "sl.max_steps=4"]
    assert main(["train", "sl", "conf/tiny_cpu.yaml", *overrides, "--data", str(env["consensus"])]) == 0
    out = json.loads((env["dir"] / "runs" / "t" / "sl" / "train_result.json").read_text())
    assert out["records"] == 16 and out["global_step"] == 4
    assert out["start"]["init_adapter"] == sft_run["adapter"]  # the default: <run>/sft/adapter
    assert out["hyper"]["learning_rate"] == pytest.approx(3e-5)
    _check_adapter(out, env, Path(sft_run["adapter"]))


def test_dpo_from_the_base_learns_a_fixed_preference_set(env):
    """Reference: the base with the adapter disabled ("PT"). Chosen always answers Solid, rejected Checked: with a
    high learning rate the loss falls and the reward accuracy rises within 30 steps."""
    from attrpipe.train import run_training

    cfg = _cfg(env, "dpo.reference=base", "dpo.max_steps=24", "dpo.learning_rate=5e-4", "deepspeed.zero_stage=2")
    out = run_training("dpo", cfg, data=str(env["pairs"]), out_dir=str(env["dir"] / "runs" / "t" / "dpo-base"))
    assert out["start"] == {"init_adapter": None, "reference": "base", "reference_adapter": None}
    assert out["global_step"] == 24
    assert out["hyper"]["beta"] == pytest.approx(0.2)
    m = _metrics(out)
    assert [x["step"] for x in m] == list(range(1, 25))
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"):
        assert all(key in x for x in m), key
    # Step 1: the policy is its reference (B = 0), so every margin is 0 and no pair is ranked right yet.
    assert m[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert m[0]["rewards/accuracies"] == 0.0 and m[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    first, last = m[:4], m[-4:]
    assert mean(last, "loss") < mean(first, "loss") - 0.1 < m[0]["loss"]
    assert mean(last, "rewards/accuracies") >= 0.9 > mean(first, "rewards/accuracies") - 0.1
    assert mean(last, "rewards/margins") > mean(first, "rewards/margins") > 0
    assert mean(last, "rewards/chosen") > mean(last, "rewards/rejected")
    _check_adapter(out, env, None)


def test_scpo_trains_one_weighted_pair_per_kept_example(env):
    """ScPO on the consensus shard (4 kept examples, 4 of 7 chains agree, 3 unparsed): one pair each, weight 4/7,
    from the base (adapter disabled as the reference); the mean weight is logged at every step."""
    from attrpipe.train import run_training

    cfg = _cfg(env, "dpo.reference=base", "dpo.max_steps=3", "dpo.learning_rate=1e-3", "dpo.nll_weight=0.5")
    out = run_training("scpo", cfg, data=str(env["consensus"]), out_dir=str(env["dir"] / "runs" / "t" / "scpo"))
    assert out["kind"] == "scpo" and out["records"] == 4 and out["global_step"] == 3
    assert out["start"] == {"init_adapter": None, "reference": "base", "reference_adapter": None}
    assert out["hyper"]["sft_weight"] == pytest.approx(0.5) and out["hyper"]["beta"] == pytest.approx(0.2)
    m = _metrics(out)
    assert [x["step"] for x in m] == [1, 2, 3]
    for key in ("loss", "rewards/chosen", "rewards/margins", "rewards/accuracies", "scpo/nll"):
        assert all(key in x for x in m), key
    assert all(x["scpo/weight"] == pytest.approx(4 / 7) for x in m)
    # Step 1: the policy is its reference, so the loss is w x (ln 2 + alpha x the chosen chains' NLL per token).
    assert m[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert m[0]["loss"] == pytest.approx(4 / 7 * (math.log(2) + 0.5 * m[0]["scpo/nll"]), rel=1e-3)
    _check_adapter(out, env, None)


@pytest.mark.parametrize("stage", [2, 3])
def test_dpo_with_the_frozen_sft_adapter_as_reference(sft_run, env, stage):
    """Reference: a frozen copy of the SFT adapter ("Peft-10"), under ZeRO-2 and ZeRO-3."""
    from attrpipe.train import run_training

    cfg = _cfg(env, "dpo.reference=sft_adapter", "dpo.max_steps=3", "dpo.learning_rate=1e-3",
               f"deepspeed.zero_stage={stage}")
    out = run_training("dpo", cfg, data=str(env["pairs"]), init_adapter=sft_run["adapter"],
                       out_dir=str(env["dir"] / "runs" / "t" / f"dpo-sft-z{stage}"))
    assert out["start"] == {"init_adapter": sft_run["adapter"], "reference": "sft_adapter", "reference_adapter": None}
    assert out["deepspeed"]["zero_stage"] == stage and out["global_step"] == 3
    m = _metrics(out)
    assert m[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # the policy starts as its reference
    assert m[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4)
    _check_adapter(out, env, Path(sft_run["adapter"]))


def test_two_dpo_runs_of_one_configuration_train_the_same_adapter(env):
    """Pairs spread over six Parquet files reach the two workers as six blocks; with ``ray.train.preserve_order``
    (the default) each worker gets the same blocks in the same order in every run, so two runs end bit-identical.
    (With it off, two runs of this test's configuration ended with different adapters: docs/training.md.)"""
    import pyarrow.parquet as pq

    from attrpipe.train import run_training

    pairs = env["dir"] / "pairs-6"
    pairs.mkdir()
    table = pq.read_table(env["pairs"])
    for i in range(6):
        pq.write_table(table.slice(8 * i, 8), pairs / f"part-{i:05d}.parquet")
    cfg = _cfg(env, "dpo.reference=base", "dpo.max_steps=4", "dpo.learning_rate=1e-3")
    assert cfg.ray.train.preserve_order is True
    weights = []
    for run in ("a", "b"):
        out = run_training("dpo", cfg, data=str(pairs), out_dir=str(env["dir"] / "runs" / "t" / f"dpo-repro-{run}"))
        assert out["global_step"] == 4 and out["records"] == 48
        weights.append(load_file(Path(out["adapter"]) / "adapter_model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("stage,rank,at", [(2, 1, "save"), (3, 0, "save"), (2, 0, "report")])
def test_a_worker_killed_while_it_writes_a_checkpoint_resumes_from_the_last_complete_one(env, stage, rank, at):
    """DPO saving every 2 steps; at step 4 one rank SIGKILLs itself in the middle of writing its checkpoint (after the
    weights and the optimizer, before the RNG and trainer state: ``save``), or with the checkpoint written but not yet
    handed to Ray Train (``report``). The group restarts from step 2's checkpoint, the last complete one, and finishes;
    every checkpoint Ray Train kept is whole (its file manifest checks out: one node, both ranks' RNG states)."""
    from attrpipe.train import run_training
    from attrpipe.train.checkpoints import checkpoint_problems, manifest_name

    name = f"kill-z{stage}-r{rank}-{at}"
    cfg = _cfg(env, "dpo.reference=base", "dpo.max_steps=6", "dpo.save_steps=2", "dpo.learning_rate=1e-3",
               f"deepspeed.zero_stage={stage}", "ray.train.max_failures=1")
    fault = {"step": 4, "at": at, "marker": str(env["dir"] / "fault" / name), "kill": True, "ranks": [rank]}
    out = run_training("dpo", cfg, data=str(env["pairs"]), out_dir=str(env["dir"] / "runs" / "t" / name),
                       _fault=fault)
    marker = env["dir"] / "fault" / f"{name}.{rank}"
    assert marker.is_file() and "SIGKILL" in marker.read_text() and f"({at})" in marker.read_text()
    assert out["global_step"] == 6 and out["resumed_from_step"] == 2
    assert [m["step"] for m in _metrics(out)] == [1, 2, 3, 4, 5, 6]
    kept = [c for c in sorted(Path(out["ray_run"]).glob("checkpoint_*")) if (c / "checkpoint").is_dir()]
    assert kept, "Ray Train kept no training checkpoint"
    for c in kept:
        assert checkpoint_problems(str(c)) == [], c
        files = json.loads((c / "checkpoint" / manifest_name(0)).read_text())["files"]
        assert {"trainer_state.json", "rng_state_0.pth", "rng_state_1.pth"} <= set(files), sorted(files)
    _check_adapter(out, env, None)
