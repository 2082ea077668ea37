"""Consensus over sampled chains and DPO preference pairs (pure functions).

For the chains of one (listing, attribute):

- the **consensus** is the most frequent parsed value; chains with no answer vote for nothing and can never be the
  consensus;
- **ties** are broken deterministically by the chain that came first: among the values with the most votes, the
  one whose earliest chain has the smallest index wins (``Consensus.tied`` records that a tie happened);
- the **confidence** C = chains agreeing with the consensus / all chains (unparseable chains count as disagreeing);
- **preferred** chains agree with the consensus, every other chain (other value or no answer) is **dispreferred**;
- an example is **kept** when it has a consensus and C >= threshold.

**Pairs**: every dispreferred chain of a kept example is paired with one preferred chain drawn at random from the
same example. The draw is seeded by (run seed, example id) so every worker and every rerun makes the same pairs.
An example below the threshold, or where every chain agrees, gives no pairs.

**The oracle** (the diagnostic arms ``dpo-oracle`` and ``sl-oracle``, attrpipe.methods): :func:`oracle_consensus`
applies the same rules with the true label in place of the most frequent value: preferred = the chains whose parsed
value is the truth, C = their share of all chains, kept when C >= threshold, and :func:`make_pairs` pairs them with the
same seeded draw. An example without a true label, or whose chains never give it, has no consensus (nothing to prefer).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Sequence

__all__ = ["Consensus", "Pair", "example_id", "compute_consensus", "oracle_consensus", "is_kept", "make_pairs",
           "pair_rng"]


@dataclass(frozen=True)
class Consensus:
    value: str | None
    n_chains: int
    n_agree: int
    n_valid: int
    votes: dict[str, int]
    preferred: tuple[int, ...]
    dispreferred: tuple[int, ...]
    tied: bool

    @property
    def confidence(self) -> float:
        return self.n_agree / self.n_chains if self.n_chains else 0.0


@dataclass(frozen=True)
class Pair:
    chosen: int  # index of a preferred chain
    rejected: int  # index of a dispreferred chain


def example_id(listing_id: str, attribute: str) -> str:
    """The stable id of one (listing, attribute) example."""
    return f"{listing_id}::{attribute}"


def compute_consensus(values: Sequence[str | None]) -> Consensus:
    """Consensus of the parsed values of one example's chains (``None`` = chain with no answer)."""
    n = len(values)
    votes, first_seen = _votes(values)
    if not votes:
        return Consensus(None, n, 0, 0, {}, (), tuple(range(n)), False)
    top = max(votes.values())
    leaders = [v for v, c in votes.items() if c == top]
    value = min(leaders, key=first_seen.__getitem__)
    preferred = tuple(i for i, v in enumerate(values) if v == value)
    dispreferred = tuple(i for i, v in enumerate(values) if v != value)
    ordered_votes = {v: votes[v] for v in sorted(votes, key=first_seen.__getitem__)}
    return Consensus(value, n, top, sum(votes.values()), ordered_votes, preferred, dispreferred, len(leaders) > 1)


def _votes(values: Sequence[str | None]) -> tuple[Counter, dict[str, int]]:
    votes = Counter(v for v in values if v is not None)
    first_seen: dict[str, int] = {}
    for i, v in enumerate(values):
        if v is not None and v not in first_seen:
            first_seen[v] = i
    return votes, first_seen


def oracle_consensus(values: Sequence[str | None], truth: str | None) -> Consensus:
    """The consensus rules with the true label as the consensus (the diagnostic oracle arms, never the method):
    preferred = chains whose parsed value is ``truth``, C = their share. No true label, or no chain that gives it:
    no consensus (every chain dispreferred, nothing kept, no pairs)."""
    n = len(values)
    votes, first_seen = _votes(values)
    ordered_votes = {v: votes[v] for v in sorted(votes, key=first_seen.__getitem__)}
    n_valid = sum(votes.values())
    preferred = tuple(i for i, v in enumerate(values) if truth is not None and v == truth)
    if not preferred:
        return Consensus(None, n, 0, n_valid, ordered_votes, (), tuple(range(n)), False)
    dispreferred = tuple(i for i, v in enumerate(values) if v != truth)
    return Consensus(truth, n, len(preferred), n_valid, ordered_votes, preferred, dispreferred, False)


def is_kept(consensus: Consensus, threshold: float) -> bool:
    """Whether an example's consensus is confident enough to keep (C >= threshold, compared exactly)."""
    if consensus.value is None or consensus.n_chains == 0:
        return False
    return Fraction(consensus.n_agree, consensus.n_chains) >= _exact(threshold)


@lru_cache(maxsize=64)
def _exact(threshold: float) -> Fraction:
    """The threshold as written (0.5, 0.7), not its binary float approximation."""
    return Fraction(str(threshold))


def pair_rng(seed: int, ex_id: str) -> random.Random:
    """A random generator that depends only on (run seed, example id), never on worker or order."""
    digest = hashlib.sha256(f"{seed}\x00{ex_id}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def make_pairs(consensus: Consensus, threshold: float, *, seed: int, ex_id: str) -> list[Pair]:
    """One pair per dispreferred chain of a kept example, its chosen chain drawn from the preferred ones."""
    if not is_kept(consensus, threshold) or not consensus.dispreferred:
        return []
    rng = pair_rng(seed, ex_id)
    return [Pair(chosen=rng.choice(consensus.preferred), rejected=r) for r in consensus.dispreferred]
