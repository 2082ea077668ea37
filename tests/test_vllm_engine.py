"""The vLLM engine's request building and output mapping, without vLLM (CI has no GPU; see docs/vllm-cpu.md)."""

from types import SimpleNamespace

import pytest
from PIL import Image

from attrpipe.config import load_config
from attrpipe.engines.base import GenerationRequest, SamplingSpec, request_seed
from attrpipe.engines.vllm import build_vllm_request, engine_kwargs, sampling_params_kwargs, texts_from_outputs
from attrpipe.prompts import build_messages
from attrpipe.taxonomy import Attribute

ATTR = Attribute("number_of_wheels", "Wheels.", ("2", "4", "8"))


def request(rid="L1::number_of_wheels", n_images=3):
    imgs = [Image.new("RGB", (224, 224), (i, 0, 0)) for i in range(n_images)]
    return GenerationRequest(rid, build_messages(ATTR, "suitcase", n_images), imgs)


def test_request_carries_prompt_and_all_images():
    r = request()
    out = build_vllm_request(r, "PROMPT")
    assert out["prompt"] == "PROMPT"
    assert out["multi_modal_data"]["image"] == r.images
    assert "multi_modal_data" not in build_vllm_request(request(n_images=0), "P")


def test_sampling_is_explicit_n7_seeded_per_request():
    spec = SamplingSpec.sampling(load_config("conf/paper.yaml").generation, seed=5)
    a = sampling_params_kwargs(spec, "L1::pattern")
    assert a["n"] == 7 and a["temperature"] == 1.0 and a["top_p"] == 1.0 and a["top_k"] == -1
    assert a["repetition_penalty"] == 1.0 and a["max_tokens"] == spec.max_new_tokens
    assert a["seed"] == request_seed(5, "L1::pattern") != sampling_params_kwargs(spec, "L2::pattern")["seed"]
    g = sampling_params_kwargs(SamplingSpec.greedy_decoding(200), "x")
    assert g["n"] == 1 and g["temperature"] == 0.0 and g["max_tokens"] == 200 and "seed" not in g


def _out(rid, texts, shuffle=False):
    comps = [SimpleNamespace(index=i, text=t) for i, t in enumerate(texts)]
    return SimpleNamespace(request_id=rid, outputs=list(reversed(comps)) if shuffle else comps)


def test_outputs_map_back_in_request_order_and_chain_order():
    outs = [_out("a", [f"a{i}" for i in range(7)], shuffle=True), _out("b", [f"b{i}" for i in range(7)])]
    assert texts_from_outputs(outs, 7) == [[f"a{i}" for i in range(7)], [f"b{i}" for i in range(7)]]
    with pytest.raises(RuntimeError, match="expected 7"):
        texts_from_outputs([_out("a", ["x"] * 6)], 7)


def test_engine_kwargs_from_the_paper_preset():
    k = engine_kwargs(load_config("conf/paper.yaml"))
    assert k["model"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert k["enable_prefix_caching"] is True and k["enable_lora"] is True
    assert k["max_lora_rank"] >= 32 and k["limit_mm_per_prompt"] == {"image": 5}
    assert k["trust_remote_code"] is False
