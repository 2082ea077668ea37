"""Parse a generation into reasoning and one allowed value, or "no answer" with a reason.

Rules (docs/method.md repeats them):

- The answer is the text inside ``<answer> ... </answer>``; the reasoning the text inside
  ``<reasoning> ... </reasoning>`` (optional: a chain without reasoning still has an answer).
- Tags are matched case-insensitively and may carry spaces (``< Answer >``). Several answer blocks are accepted only
  when they all name the same value.
- The answer maps to an allowed value only when it *equals* that value after normalisation: Unicode NFKC, case
  folding, and dropping everything that is not a letter or digit (so spacing, punctuation and hyphens do not
  matter: ``"polka-dot."`` == ``"Polka Dot"``). Nothing else is guessed: ``"striped pattern"``, ``"not striped"``,
  ``"Striped or Solid"`` are all "no answer". The taxonomy loader rejects value sets where two values normalise
  to the same key, so a match is always unique.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

__all__ = [
    "ParsedChain",
    "NoAnswer",
    "normalize_value",
    "match_value",
    "parse_generation",
]


class NoAnswer:
    """Reasons a chain yields no answer (string constants, stored as-is in the output shards)."""

    EMPTY_OUTPUT = "empty_output"
    NO_ANSWER_TAG = "no_answer_tag"
    UNCLOSED_ANSWER_TAG = "unclosed_answer_tag"
    EMPTY_ANSWER = "empty_answer"
    CONFLICTING_ANSWERS = "conflicting_answers"
    SEVERAL_VALUES = "several_values"
    OUT_OF_SET = "out_of_set"

    ALL = (
        EMPTY_OUTPUT,
        NO_ANSWER_TAG,
        UNCLOSED_ANSWER_TAG,
        EMPTY_ANSWER,
        CONFLICTING_ANSWERS,
        SEVERAL_VALUES,
        OUT_OF_SET,
    )


@dataclass(frozen=True)
class ParsedChain:
    text: str
    reasoning: str | None
    answer_text: str | None
    value: str | None
    reason: str | None  # why there is no value; None when value is set

    @property
    def ok(self) -> bool:
        return self.value is not None


_ANSWER_BLOCK = re.compile(r"<\s*answer\s*>(.*?)<\s*/\s*answer\s*>", re.IGNORECASE | re.DOTALL)
_ANSWER_OPEN = re.compile(r"<\s*answer\s*>", re.IGNORECASE)
_REASONING_BLOCK = re.compile(r"<\s*reasoning\s*>(.*?)<\s*/\s*reasoning\s*>", re.IGNORECASE | re.DOTALL)
_SPLITTERS = re.compile(r"\s*(?:,|;|/|\||\bor\b|\band\b|&)\s*", re.IGNORECASE)


def normalize_value(text: str) -> str:
    """The comparison key of a value: NFKC, casefold, letters and digits only."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


@lru_cache(maxsize=4096)
def _value_index(allowed: tuple[str, ...]) -> dict[str, str]:
    index: dict[str, str] = {}
    for v in allowed:
        key = normalize_value(v)
        if not key:
            raise ValueError(f"allowed value {v!r} has no letters or digits")
        if key in index and index[key] != v:
            raise ValueError(f"allowed values {index[key]!r} and {v!r} are indistinguishable after normalisation")
        index[key] = v
    return index


def match_value(answer: str, allowed: Sequence[str]) -> tuple[str | None, str | None]:
    """Map an answer string to exactly one allowed value: ``(value, None)`` or ``(None, reason)``."""
    index = _value_index(tuple(allowed))
    key = normalize_value(answer)
    if not key:
        return None, NoAnswer.EMPTY_ANSWER
    if key in index:
        return index[key], None
    parts = [normalize_value(p) for p in _SPLITTERS.split(answer)]
    if sum(1 for p in parts if p in index) >= 2:
        return None, NoAnswer.SEVERAL_VALUES
    return None, NoAnswer.OUT_OF_SET


def parse_generation(text: str, allowed: Sequence[str]) -> ParsedChain:
    """Parse one generated chain against an attribute's allowed values."""
    if text is None or not text.strip():
        return ParsedChain(text or "", None, None, None, NoAnswer.EMPTY_OUTPUT)
    reasoning_blocks = _REASONING_BLOCK.findall(text)
    reasoning = " ".join(r.strip() for r in reasoning_blocks) if reasoning_blocks else None
    answers = _ANSWER_BLOCK.findall(text)
    if not answers:
        reason = NoAnswer.UNCLOSED_ANSWER_TAG if _ANSWER_OPEN.search(text) else NoAnswer.NO_ANSWER_TAG
        return ParsedChain(text, reasoning, None, None, reason)
    answer_text = answers[-1].strip()
    values = []
    for a in answers:
        value, reason = match_value(a, allowed)
        if value is None:
            return ParsedChain(text, reasoning, a.strip(), None, reason)
        values.append(value)
    if len(set(values)) > 1:
        return ParsedChain(text, reasoning, answer_text, None, NoAnswer.CONFLICTING_ANSWERS)
    return ParsedChain(text, reasoning, answer_text, values[0], None)
