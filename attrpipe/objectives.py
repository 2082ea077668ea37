"""Self-Consistency Preference Optimization (ScPO, Prasad et al., arXiv 2411.04109): its pair and weight (pure).

For the chains of one kept example (its consensus kept at C >= ``consensus.threshold``), ScPO makes **one** pair:

- **chosen**: a chain whose answer is the consensus (the most-voted answer);
- **rejected**: a chain whose answer is the least voted among the other answers; a chain with no parsed answer counts
  as 0 votes, so when there is one it is the least voted;
- ties among the candidate chains of either side are broken by a draw seeded by (run seed, example id)
  (:func:`attrpipe.consensus.pair_rng`: the same pair on every worker and in every rerun), chosen drawn first;
- **weight** w = (votes(chosen answer) - votes(rejected answer)) / n_chains, in (0, 1]; it is 0 only when the
  rejected answer ties the consensus (a tie at the top, possible at C <= 0.5): such a pair adds nothing to the loss
  and is kept, so that the number of pairs stays "kept examples where not every chain agrees";
- no pair when the example is not kept, has no consensus, or every chain has the consensus answer.

The loss (attrpipe.train.scpo): w * (-log sigmoid(beta * margin) + alpha * NLL(chosen) / |chosen|), mean over a batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from attrpipe.consensus import pair_rng

__all__ = ["ScpoPair", "scpo_pair", "scpo_weight"]


@dataclass(frozen=True)
class ScpoPair:
    chosen: int  # index of a chain whose answer is the consensus
    rejected: int  # index of a chain with the least-voted other answer (or no answer)
    chosen_votes: int
    rejected_votes: int  # 0 for a chain with no answer
    weight: float


def scpo_weight(chosen_votes: int, rejected_votes: int, n_chains: int) -> float:
    """(votes(chosen answer) - votes(rejected answer)) / n_chains."""
    if n_chains < 1:
        raise ValueError(f"n_chains must be >= 1, got {n_chains}")
    if not 0 <= rejected_votes <= chosen_votes <= n_chains:
        raise ValueError(f"votes must satisfy 0 <= rejected ({rejected_votes}) <= chosen ({chosen_votes}) <= "
                         f"n_chains ({n_chains})")
    return (chosen_votes - rejected_votes) / n_chains


def scpo_pair(values: Sequence[str | None], consensus: str | None, *, kept: bool, seed: int,
              ex_id: str) -> ScpoPair | None:
    """The ScPO pair of one example from its chains' parsed answers (``None`` = no answer), its consensus value and
    whether it was kept; ``None`` when it gives no pair."""
    if not kept or consensus is None:
        return None
    votes = Counter(v for v in values if v is not None)
    preferred = [i for i, v in enumerate(values) if v == consensus]
    others = [i for i, v in enumerate(values) if v != consensus]
    if not preferred or not others:
        return None
    least = min(votes[v] if v is not None else 0 for v in (values[i] for i in others))
    candidates = [i for i in others if (votes[values[i]] if values[i] is not None else 0) == least]
    rng = pair_rng(seed, ex_id)
    chosen = rng.choice(preferred)
    rejected = rng.choice(candidates)
    top = votes[consensus]
    return ScpoPair(chosen, rejected, top, least, scpo_weight(top, least, len(values)))
