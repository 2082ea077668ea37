"""`attrpipe gpu-check` on the CPU: its arguments, its refusals (no GPU, no vLLM, a model that cannot load) before
anything is rendered or started, the figures' arithmetic, and the token counts they rest on. The run itself needs
GPUs (docs/cluster.md)."""

from __future__ import annotations

import json
import shlex

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attrpipe import gpu_check
from attrpipe.cli import build_parser, main
from attrpipe.plan import image_tokens, plan_round
from attrpipe.preflight import InputError
from attrpipe.schemas import CONSENSUS_SCHEMA, PAIRS_SCHEMA


@pytest.fixture
def no_run(monkeypatch):
    """The run itself must not start in these tests: reaching it is a failure."""
    def refuse(*a, **k):
        raise AssertionError("gpu-check went on to run")

    monkeypatch.setattr(gpu_check, "run_gpu_check", refuse)


def fake_cuda(monkeypatch, visible: int, vllm: bool = True):
    monkeypatch.setattr(gpu_check, "_cuda", lambda: (visible, "Fake GPU" if visible else "", "2.14.0",
                                                     "13.0" if visible else None))
    monkeypatch.setattr(gpu_check, "_have_vllm", lambda: vllm)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("attrpipe: error: "), err
    return err


# --- arguments and refusals -------------------------------------------------------------------------------------------


def test_help_names_the_options():
    text = build_parser()._subparsers._group_actions[0].choices["gpu-check"].format_help()
    for opt in ("--model", "--gpus", "--config", "overrides"):
        assert opt in text


def test_no_gpu_is_refused_in_one_line(monkeypatch, capsys, no_run):
    fake_cuda(monkeypatch, 0)
    assert main(["gpu-check"]) == 2
    err = one_error_line(capsys)
    assert "needs CUDA GPUs" in err and "sees none" in err and "CPU-only build" in err


def test_no_gpu_on_this_machine_is_what_torch_says(monkeypatch):
    import torch

    visible, _, version, cuda = gpu_check._cuda()
    assert visible == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert version == torch.__version__ and cuda == torch.version.cuda


def test_more_gpus_than_visible_and_zero_gpus_are_refused(monkeypatch, capsys, no_run):
    fake_cuda(monkeypatch, 2)
    assert main(["gpu-check", "--gpus", "3"]) == 2
    assert "--gpus: 3 asked, torch sees 2 CUDA GPU(s)" in one_error_line(capsys)
    with pytest.raises(SystemExit) as e:
        main(["gpu-check", "--gpus", "0"])
    assert e.value.code == 2
    assert "--gpus: must be >= 1, got 0" in capsys.readouterr().err


def test_require_gpus():
    kw = dict(torch_version="2.14.0", cuda_version="13.0")
    assert gpu_check.require_gpus(4, None, **kw) == 4
    assert gpu_check.require_gpus(4, 1, **kw) == 1
    with pytest.raises(InputError, match="CUDA 13.0 build"):
        gpu_check.require_gpus(0, None, **kw)
    with pytest.raises(InputError, match="--gpus: 5 asked"):
        gpu_check.require_gpus(4, 5, **kw)


def test_overrides_it_sets_itself_are_refused_before_the_gpus(monkeypatch, capsys, no_run):
    fake_cuda(monkeypatch, 0)  # a config problem is reported first, even on a machine without GPUs
    for override, why in (("generation.engine=hf", "runs the vLLM engine"), ("model.path=x/y", "--model"),
                          ("ray.train.num_workers=2", "--gpus"), ("loop.rounds=2", "one round")):
        assert main(["gpu-check", override]) == 2
        err = one_error_line(capsys)
        assert err.startswith(f"attrpipe: error: {override.split('=')[0]}: attrpipe gpu-check does not use it")
        assert why in err
    assert main(["gpu-check", "consensus.threshold=1.5"]) == 2
    assert "consensus.threshold: must be in [0, 1]" in one_error_line(capsys)


def test_missing_vllm_is_refused(monkeypatch, capsys, no_run):
    fake_cuda(monkeypatch, 1, vllm=False)
    assert main(["gpu-check"]) == 2
    assert "vllm is not installed" in one_error_line(capsys)


def test_a_model_that_cannot_load_is_refused_in_one_line(monkeypatch, capsys, tmp_path, no_run):
    fake_cuda(monkeypatch, 1)
    assert main(["gpu-check", "--model", str(tmp_path / "nowhere")]) == 2
    assert one_error_line(capsys).startswith("attrpipe: error: --model: model ")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert main(["gpu-check", "--model", str(bad)]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"attrpipe: error: --model: {bad} cannot be loaded: ")
    assert not (tmp_path / "runs").exists()


def test_the_tiny_model_loads(tiny_model_dir):
    assert gpu_check.resolve_model(tiny_model_dir, "--model", trust_remote_code=False, image_size=224) == \
        tiny_model_dir


def test_the_config_is_one_round_of_vllm_and_deepspeed_dpo_on_48_listings():
    from attrpipe.config import load_config

    cfg = load_config(gpu_check.DEFAULT_CONFIG)
    assert cfg.synthetic.listings == 48 and cfg.loop.rounds == 1 and cfg.loop.method == "dpo"
    assert cfg.generation.engine == "vllm" and cfg.deepspeed.enabled and cfg.ray.train.use_gpu
    assert cfg.ray.train.backend == "nccl" and cfg.model.path == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert cfg.pseudolabel.listings_per_unit >= cfg.synthetic.listings  # one unit: one vLLM batch


# --- the figures -------------------------------------------------------------------------------------------------------


def test_rates_by_hand():
    assert gpu_check.generation_rate(12_000, 4.0, 1) == 3000
    assert gpu_check.generation_rate(12_000, 4.0, 2) == 1500
    with pytest.raises(ValueError):
        gpu_check.generation_rate(10, 0.0, 1)
    plan = {"workers": 2, "per_worker": 10, "steps_per_epoch": 5}
    assert gpu_check.trained_pairs(plan, 5) == 20  # one pass
    assert gpu_check.trained_pairs(plan, 10) == 40  # two
    assert gpu_check.trained_pairs(plan, 2) == 8
    assert gpu_check.pair_tokens(100, 30, 50) == 280


def _fig(**kw):
    args = dict(generated_tokens=7000, chains=70, engine_seconds=3.5, gpus_per_actor=1.0, pseudolabel_seconds=60.0,
                pair_token_counts=[280, 320], plan={"workers": 2, "per_worker": 2, "steps_per_epoch": 1},
                global_step=1, train_seconds=2.0, workers=2, dpo_seconds=30.0)
    args.update(kw)
    return gpu_check.measured_figures(**args)


def test_measured_figures_by_hand():
    f = _fig()
    assert f["tokens_per_s"] == 2000 and f["tokens_per_chain"] == 100
    assert f["pseudolabel_startup_s"] == 56.5
    assert f["pairs_trained"] == 4 and f["train_tokens"] == 1200  # 4 pairs x 300 tokens on average
    assert f["train_tokens_per_s"] == 300  # 1200 tokens / (2 s x 2 GPUs)
    assert f["dpo_startup_s"] == 28 and f["startup_s"] == 56.5
    none = _fig(pair_token_counts=[], plan=None, global_step=None, train_seconds=None)
    assert none["train_tokens_per_s"] is None and none["startup_s"] == 56.5
    with pytest.raises(ValueError):
        _fig(chains=0)


def test_plan_given_the_figure_gives_back_the_measured_time():
    """The generation figure is what `attrpipe plan` divides by: planning the measured round with it gives the
    engine's measured GPU-seconds."""
    listings, attrs, chains, generated, seconds = 48, 5, 7, 48 * 5 * 7 * 93, 12.5
    f = _fig(generated_tokens=generated, chains=listings * attrs * chains, engine_seconds=seconds)
    p = plan_round(listings=listings, attributes_per_listing=attrs, chains=chains,
                   tokens_per_chain=f["tokens_per_chain"], prompt_tokens=300, gpus=1, tokens_per_s=f["tokens_per_s"])
    assert p["stages"]["pseudolabel"]["gpu_hours"] * 3600 == pytest.approx(seconds)


def test_the_paste_line_is_an_attrpipe_plan_command():
    f = _fig()
    text = gpu_check.format_figures(f, gpus=2, gpu_name="Fake GPU")
    line = text.strip().splitlines()[-1].strip()
    argv = shlex.split(line)
    assert argv[0] == "attrpipe"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "plan" and args.tokens_per_s == 2000 and args.train_tokens_per_s == 300
    assert args.tokens_per_chain == 100 and args.startup_s == round(56.5)
    no_dpo = gpu_check.format_figures(_fig(pair_token_counts=[]), gpus=1, gpu_name="x")
    assert "--train-tokens-per-s" not in no_dpo and "no training figure" in no_dpo


# --- token counts of what a run wrote ----------------------------------------------------------------------------------


def _output(tmp_path, pairs: list[dict], consensus: list[dict]):
    out = tmp_path / "pl"
    for d in ("_units", "pairs", "consensus"):
        (out / d).mkdir(parents=True)
    (out / "_run.json").write_text("{}")
    pq.write_table(pa.Table.from_pylist(pairs, schema=PAIRS_SCHEMA), out / "pairs" / "u0.parquet")
    pq.write_table(pa.Table.from_pylist(consensus, schema=CONSENSUS_SCHEMA), out / "consensus" / "u0.parquet")
    (out / "_units" / "u0.json").write_text(json.dumps({"files": {"pairs": "pairs/u0.parquet",
                                                                  "consensus": "consensus/u0.parquet"}}))
    # a shard no marker names (a unit cut short): not data, not counted
    pq.write_table(pa.Table.from_pylist(pairs, schema=PAIRS_SCHEMA), out / "pairs" / "stray.parquet")
    pq.write_table(pa.Table.from_pylist(consensus, schema=CONSENSUS_SCHEMA), out / "consensus" / "stray.parquet")
    return str(out)


def _pair(i, n_images):
    return {"example_id": f"l{i}::colour", "listing_id": f"l{i}", "vertical": "watch", "attribute": "colour",
            "prompt": "what is the most suitable value for colour for this Watch. Options: Black, Blue",
            "image_uris": [f"/x/{j}.png" for j in range(n_images)], "image_bytes": None,
            "chosen": "<reasoning> it is black </reasoning><answer> Black </answer>",
            "rejected": "<reasoning> it is blue </reasoning><answer> Blue </answer>",
            "chosen_index": 0, "rejected_index": 1, "consensus": "Black", "confidence": 0.6, "round": 1}


def _consensus(texts):
    chain = lambda t: {"text": t, "reasoning": None, "answer": None, "reason": "no_answer"}  # noqa: E731
    return {"example_id": "l0::colour", "listing_id": "l0", "vertical": "watch", "attribute": "colour",
            "consensus": None, "confidence": 0.0, "n_chains": len(texts), "n_valid": 0, "tied": False, "kept": False,
            "chains": [chain(t) for t in texts], "image_uris": [], "image_bytes": None, "images_dropped": 0,
            "round": 1, "model": "m", "adapter": None, "adapter_fingerprint": None}


def test_token_counts_of_chains_and_pairs(tmp_path, tiny_model_dir):
    from attrpipe.models.loader import load_processor

    processor = load_processor(tiny_model_dir, image_size=224)
    tok = processor.tokenizer
    texts = ["<reasoning> black strap </reasoning><answer> Black </answer>", "Blue", ""]
    out = _output(tmp_path, [_pair(0, 0), _pair(1, 2), _pair(2, 7)], [_consensus(texts)])

    tokens, chains = gpu_check.chain_token_counts(out, tok)
    assert chains == 3  # the stray shard is not counted
    assert tokens == sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts) > 0

    counts = gpu_check.pair_token_counts(out, processor, image_size=224, max_images=5)
    assert len(counts) == 3
    # each image adds its merged patch tokens plus the vision start/end markers, to both sides of a pair
    per_image = image_tokens(224) + 2
    assert counts[1] - counts[0] == 2 * 2 * per_image
    assert counts[2] - counts[0] == 2 * 5 * per_image  # 7 images, at most images.max_images (5) are used
    chosen = len(tok(_pair(0, 0)["chosen"], add_special_tokens=False)["input_ids"])
    rejected = len(tok(_pair(0, 0)["rejected"], add_special_tokens=False)["input_ids"])
    assert (counts[0] - chosen - rejected) % 2 == 0 and (counts[0] - chosen - rejected) // 2 > 20  # the prompt
