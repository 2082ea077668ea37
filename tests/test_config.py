import pytest

from attrpipe.config import ConfigError, config_hash, load_config


def test_base_holds_the_papers_defaults():
    c = load_config()
    assert c.lora.r == 32 and c.lora.alpha == 32
    assert "q_proj|v_proj" in c.lora.target_modules
    assert c.images.max_images == 5 and c.images.size == 224
    assert c.generation.num_chains == 7 and c.generation.temperature == 1.0
    assert c.consensus.threshold == 0.5
    assert c.sft.learning_rate == pytest.approx(3e-5)
    assert c.dpo.beta == pytest.approx(0.2) and c.dpo.learning_rate == pytest.approx(1e-5)
    assert c.eval.max_new_tokens == 200
    assert c.model.trust_remote_code is False


@pytest.mark.parametrize("preset", ["conf/tiny_cpu.yaml", "conf/paper.yaml"])
def test_presets_load(preset):
    c = load_config(preset)
    assert c.generation.engine in ("hf", "vllm")


def test_presets_differ_only_where_they_should():
    demo, paper = load_config("conf/tiny_cpu.yaml"), load_config("conf/paper.yaml")
    assert demo.generation.engine == "hf" and paper.generation.engine == "vllm"
    assert paper.model.path == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert demo.ray.train.use_gpu is False and paper.ray.train.use_gpu is True
    # The method's knobs are the same in both.
    for key in ("num_chains", "temperature"):
        assert demo.generation[key] == paper.generation[key]
    assert demo.consensus.threshold == paper.consensus.threshold


def test_dotlist_overrides_and_interpolation():
    c = load_config("conf/paper.yaml", ["consensus.threshold=0.7", "data.root=s3://bucket/cat"])
    assert c.consensus.threshold == 0.7
    assert c.data.unlabeled == "s3://bucket/cat/unlabeled"


@pytest.mark.parametrize(
    "override, key",
    [
        ("consensus.threshold=1.5", "consensus.threshold"),
        ("consensus.threshold=-0.1", "consensus.threshold"),
        ("generation.num_chains=1", "generation.num_chains"),
        ("generation.num_chains=seven", "generation.num_chains"),
        ("generation.temperature=0", "generation.temperature"),
        ("generation.engine=tgi", "generation.engine"),
        ("generation.not_a_knob=3", "generation.not_a_knob"),
        ("nonsense.section=3", "nonsense"),
        ("model.dtype=int8", "model.dtype"),
        ("deepspeed.zero_stage=1", "deepspeed.zero_stage"),
        ("dpo.reference=nothing", "dpo.reference"),
        ("images.allowed_schemes=[ftp]", "images.allowed_schemes"),
        ("lora.target_modules=(", "lora.target_modules"),
        ("vllm.max_lora_rank=8", "vllm.max_lora_rank"),
        ("run.name=a/b", "run.name"),
        ("ray.engine.units_in_flight=0", "ray.engine.units_in_flight"),
        ("dpo.sft_weight=-0.5", "dpo.sft_weight"),
        ("ray.engine.units_in_flight=2", "ray.engine.units_in_flight"),  # tiny_cpu's engine is hf: one unit at a time
    ],
)
def test_invalid_values_are_one_line_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config("conf/tiny_cpu.yaml", [override])
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(key), msg


def test_unknown_key_in_a_preset_file(tmp_path):
    (tmp_path / "base.yaml").write_text(open("conf/base.yaml").read())
    (tmp_path / "mine.yaml").write_text("sft:\n  learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match=r"^sft\.learning_rat"):
        load_config(tmp_path / "mine.yaml")


def test_a_base_without_a_value_names_the_key(tmp_path):
    text = open("conf/base.yaml").read().replace("  threshold: 0.5", "  threshold: ???")
    (tmp_path / "base.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"^consensus\.threshold: no value set"):
        load_config(tmp_path / "base.yaml")


def test_missing_file_and_bad_override_form():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("conf/nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["consensus.threshold"])


def test_config_is_read_only_and_hash_is_stable():
    a = load_config("conf/tiny_cpu.yaml")
    assert config_hash(a) == config_hash(load_config("conf/tiny_cpu.yaml"))
    assert config_hash(a) != config_hash(load_config("conf/tiny_cpu.yaml", ["run.seed=1"]))
    with pytest.raises(Exception):
        a.run.seed = 3


def test_settings_added_later_keep_old_result_keys_at_their_defaults():
    """A loop run recorded before ``dpo.sft_weight`` existed resumes: at 0 the key leaves it out; any other value is
    another result."""
    from omegaconf import OmegaConf

    from attrpipe.loop import _result_key

    cfg = load_config("conf/tiny_cpu.yaml")
    before = OmegaConf.to_container(cfg, resolve=True)
    del before["dpo"]["sft_weight"]
    assert _result_key(OmegaConf.create(before)) == _result_key(cfg)
    assert _result_key(load_config("conf/tiny_cpu.yaml", ["dpo.sft_weight=0.5"])) != _result_key(cfg)
