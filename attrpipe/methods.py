"""The training methods a loop or a study arm can run, and what each one trains as (pure).

- ``dpo``, ``sl``: the method (DPO on consensus pairs) and its self-learning baseline;
- ``dpo-oracle``, ``sl-oracle``: **diagnostic ceilings, never the method**. The same chains, re-scored with the true
  labels of the pool (``data.truth``) in place of the consensus (attrpipe.consensus.oracle_consensus: preferred =
  chains whose answer is the truth, C = their share, kept at the round's threshold, the same seeded pairing), then
  trained exactly as DPO / SL are. They say what DPO and SL could give the model if the consensus were right, so that a
  shortfall can be placed: in the premise (the consensus) or in the learner.
"""

from __future__ import annotations

__all__ = ["METHODS", "ORACLE_METHODS", "training_kind", "is_oracle", "method_label"]

METHODS = ("dpo", "sl", "dpo-oracle", "sl-oracle")
ORACLE_METHODS = ("dpo-oracle", "sl-oracle")


def is_oracle(method: str) -> bool:
    return method in ORACLE_METHODS


def training_kind(method: str) -> str:
    """What a method trains as: ``dpo`` or ``sl``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    return method.removesuffix("-oracle")


def method_label(method: str) -> str:
    """How tables and plots name a method; the oracle arms always say they are diagnostic ceilings."""
    kind = training_kind(method).upper()
    return f"{kind}-oracle (diagnostic ceiling)" if is_oracle(method) else kind
