"""The training methods a loop or a study arm can run, and what each one trains as (pure).

- ``dpo``, ``sl``: the method (DPO on consensus pairs) and its self-learning baseline;
- ``dpo-nll``: the same pairs and DPO loss plus ``dpo.nll_weight`` x the chosen chain's negative log-likelihood per
  token (IRPO, arXiv 2404.19733); it trains as ``dpo``, with :func:`training_overrides` setting ``dpo.sft_weight``;
- ``scpo``: Self-Consistency Preference Optimization (arXiv 2411.04109, attrpipe.objectives): one vote-weighted pair
  per kept example, from the ``consensus/`` shards; it trains as the kind ``scpo`` with the ``dpo.*`` knobs;
- ``dpo-oracle``, ``sl-oracle``: **diagnostic ceilings, never the method**. The same chains, re-scored with the true
  labels of the pool (``data.truth``) in place of the consensus (attrpipe.consensus.oracle_consensus: preferred =
  chains whose answer is the truth, C = their share, kept at the round's threshold, the same seeded pairing), then
  trained exactly as DPO / SL are. They say what DPO and SL could give the model if the consensus were right, so that a
  shortfall can be placed: in the premise (the consensus) or in the learner.
"""

from __future__ import annotations

__all__ = ["METHODS", "ORACLE_METHODS", "training_kind", "training_overrides", "is_oracle", "method_label"]

METHODS = ("dpo", "sl", "dpo-oracle", "sl-oracle", "dpo-nll", "scpo")
ORACLE_METHODS = ("dpo-oracle", "sl-oracle")
_KIND = {"dpo-nll": "dpo", "scpo": "scpo"}
_LABEL = {"dpo-nll": "DPO + NLL", "scpo": "ScPO"}


def is_oracle(method: str) -> bool:
    return method in ORACLE_METHODS


def training_kind(method: str) -> str:
    """What a method trains as: ``dpo``, ``sl`` or ``scpo`` (a kind of attrpipe.train.plan.KINDS)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    return _KIND.get(method, method.removesuffix("-oracle"))


def training_overrides(method: str, cfg) -> dict:
    """Configuration a method's training stages run with, over the loop's (to merge): ``dpo-nll`` trains as ``dpo``
    with ``dpo.sft_weight`` = ``dpo.nll_weight``; every other method, nothing."""
    training_kind(method)  # refuses an unknown method
    if method == "dpo-nll":
        return {"dpo": {"sft_weight": float(cfg.dpo.nll_weight)}}
    return {}


def method_label(method: str) -> str:
    """How tables and plots name a method; the oracle arms always say they are diagnostic ceilings."""
    if method in _LABEL:
        return _LABEL[method]
    kind = training_kind(method).upper()
    return f"{kind}-oracle (diagnostic ceiling)" if is_oracle(method) else kind
