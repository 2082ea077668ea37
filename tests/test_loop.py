"""The loop's plan of stages. The loop runs end to end in tests/test_tracking.py (2 rounds on a tracking server,
killed in round 2 and resumed) and in tests/test_chaos.py (killed at random, every row checked against a clean
run)."""

from attrpipe.loop import STAGE_RUNNERS, plan_stages
from attrpipe.methods import METHODS


def test_plan_stages_layout():
    names = [s.name for s in plan_stages(rounds=2, method="dpo", seed_sft=True)]
    assert names == ["sft", "sft/eval", "round-1/pseudolabel", "round-1/train", "round-1/eval",
                     "round-2/pseudolabel", "round-2/train", "round-2/eval"]
    st = {s.name: s for s in plan_stages(rounds=2, method="sl", seed_sft=False)}
    assert st["round-1/pseudolabel"].adapter_in is None and st["round-1/train"].kind == "sl"
    assert st["round-2/train"].adapter_in == "round-1/adapter" and st["round-2/train"].out == "round-2"
    shared = plan_stages(rounds=1, method="dpo", seed_sft=True, shared_sft=True)  # a study arm's copied seed SFT
    assert [(s.name, s.kind) for s in shared[:2]] == [("sft", "shared-sft"), ("sft/eval", "shared-eval")]
    kinds = {s.kind for m in METHODS for seed in (True, False)
             for sh in (True, False) for s in plan_stages(rounds=2, method=m, seed_sft=seed, shared_sft=sh)}
    assert kinds == set(STAGE_RUNNERS)  # every kind planned has the function that runs it, and no function is idle
