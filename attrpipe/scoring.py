"""From the sampled texts of one (listing, attribute) to parsed chains, consensus, keep decision and pairs.

The one function every caller uses (the Ray pseudo-labeling pipeline, the demo, evaluation with self-consistency),
so the consensus rules live in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from attrpipe.consensus import Consensus, Pair, compute_consensus, is_kept, make_pairs, oracle_consensus
from attrpipe.parsing import ParsedChain, parse_generation
from attrpipe.taxonomy import Attribute

__all__ = ["ScoredExample", "score_chains"]


@dataclass(frozen=True)
class ScoredExample:
    ex_id: str
    chains: tuple[ParsedChain, ...]
    consensus: Consensus
    kept: bool
    pairs: tuple[Pair, ...]


def score_chains(
    texts: Sequence[str], attribute: Attribute, *, threshold: float, seed: int, ex_id: str, oracle: bool = False,
    truth: str | None = None,
) -> ScoredExample:
    """``oracle=True`` (the diagnostic oracle arms): the true label ``truth`` stands in for the consensus
    (attrpipe.consensus.oracle_consensus); every other rule is the same."""
    chains = tuple(parse_generation(t, attribute.values) for t in texts)
    values = [c.value for c in chains]
    consensus = oracle_consensus(values, truth) if oracle else compute_consensus(values)
    pairs = tuple(make_pairs(consensus, threshold, seed=seed, ex_id=ex_id))
    return ScoredExample(ex_id, chains, consensus, is_kept(consensus, threshold), pairs)
