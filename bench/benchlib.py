"""What every benchmark under bench/ shares: the machine's load, the markdown table, the tiny model, a local Ray,
and the start-up / steady-state split of a pseudo-labeling run read from its committed unit markers.

Plain functions of the standard library (no Ray, no torch at import; `phases` imports attrpipe's marker arithmetic): tests/test_bench_smoke.py imports this module in
the test process.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TINY_MODEL = REPO / ".cache" / "models" / "tiny-qwen2_5-vl"


# --- load average ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """``os.getloadavg()`` (1, 5 and 15 minutes) at one moment, with the wall-clock time it was read."""

    one: float
    five: float
    fifteen: float
    at: float

    @classmethod
    def now(cls) -> "Load":
        one, five, fifteen = os.getloadavg()
        return cls(one, five, fifteen, time.time())

    def __str__(self) -> str:
        return f"{self.one:.2f} {self.five:.2f} {self.fifteen:.2f}"


def start(name: str) -> Load:
    """Call first in a benchmark: prints and returns the load average before it (the table prints it again)."""
    load = Load.now()
    print(f"{name}: load average before (1, 5, 15 min) {load}, {os.cpu_count()} CPUs (os.cpu_count())", flush=True)
    return load


def load_line(before: Load, after: Load | None = None) -> str:
    after = after or Load.now()
    return (f"load average (1, 5, 15 min): before {before}, after {after}; {os.cpu_count()} CPUs (os.cpu_count()); "
            f"{after.at - before.at:.0f} s between")


# --- the table ------------------------------------------------------------------------------------------------------


def _cell(value, fmt: str | None) -> str:
    if isinstance(value, str) or fmt is None:
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return format(value, fmt)


def markdown(header: list[str], rows: list[list]) -> str:
    """The markdown table of bench/: a header, its separator, one line per row (cells already formatted)."""
    for row in rows:
        assert len(row) == len(header), (row, header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def print_table(title: str, columns: list[tuple[str, str | None]], rows: list[tuple], *, before: Load,
                notes: list[str] = ()) -> None:
    """A title line, the load average before and after, the markdown table, notes.

    ``columns`` are (header, format spec for numbers, e.g. ".2f"; None for text); a string value is printed as is and a
    NaN float as ``-`` (not measured)."""
    print(f"\n{title}")
    print(load_line(before))
    print(markdown([name for name, _ in columns],
                   [[_cell(v, fmt) for v, (_, fmt) in zip(row, columns)] for row in rows]))
    for note in notes:
        print(note)
    sys.stdout.flush()


# --- start-up vs steady state ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phases:
    """A pseudo-labeling run split at its first committed unit.

    ``startup_s``: from the run's start to the first unit's marker (Ray, actors, model load, and the first unit's own
    work). ``steady``: per-second rates of the work (marker counts) of the units after the first, over the time from
    the first commit to the last. ``total_s``: from the start to the last commit."""

    units: int
    startup_s: float
    steady_s: float
    total_s: float
    steady: dict[str, float]
    engine_busy_s: float  # the engine's busy seconds over the steady units (attrpipe's engine_busy_seconds)

    @property
    def startup_share(self) -> float:
        return self.startup_s / self.total_s if self.total_s > 0 else float("nan")


def commit_times(out: str | os.PathLike) -> list[tuple[float, dict]]:
    """(commit time, marker) of every committed unit of a local pseudo-labeling output, oldest first: the marker's
    ``committed_at`` (seconds since the epoch) where it has one, else the marker file's mtime (markers are written
    atomically, by rename, so the mtime is the commit)."""
    units = Path(out) / "_units"
    found = []
    for p in units.glob("*.json"):
        marker = json.loads(p.read_text())
        t = marker.get("committed_at")
        found.append((float(t) if t is not None else p.stat().st_mtime, marker))
    return sorted(found, key=lambda tm: tm[0])


def phases(out: str | os.PathLike, started_at: float,
           work: tuple[str, ...] = ("listing_attributes", "chains")) -> Phases:
    """Split a run that started at ``started_at`` (``time.time()``) into start-up and steady state by its markers.

    With one unit there is no steady state: its rates are NaN."""
    committed = commit_times(out)
    if not committed:
        raise ValueError(f"{out} has no committed unit markers (_units/*.json)")
    first, last = committed[0][0], committed[-1][0]
    span = last - first
    steady = {}
    for key in work:
        done = sum(m["counts"].get(key, 0) for _, m in committed[1:])
        steady[key] = done / span if len(committed) > 1 and span > 0 else float("nan")
    from attrpipe.pseudolabel.output import engine_busy_seconds  # units in flight together count once

    busy = engine_busy_seconds([m for _, m in committed[1:]])
    return Phases(units=len(committed), startup_s=first - started_at, steady_s=span, total_s=last - started_at,
                  steady=steady, engine_busy_s=busy)


# --- the model and Ray ----------------------------------------------------------------------------------------------


def tiny_model(path: str | None = None) -> str:
    """``path`` when given (``--model``), else the tiny model, built once into .cache/ by attrpipe (main venv); in a
    venv that cannot build it (the vLLM one) it must exist already."""
    if path:
        return path
    if (TINY_MODEL / "config.json").is_file():
        return str(TINY_MODEL)
    try:
        from attrpipe.models.tiny import build_tiny_model
    except ImportError as e:  # pragma: no cover - depends on the venv
        sys.exit(f"{TINY_MODEL} is missing and cannot be built here ({e}): build it with the main venv "
                 f"(`attrpipe model tiny --out {TINY_MODEL}`)")
    return str(build_tiny_model(TINY_MODEL))


def init_ray(num_cpus: int = 2, env: dict[str, str] | None = None) -> None:
    """A fresh local Ray of ``num_cpus`` CPUs whose workers import this checkout (and bench/, for the stand-in
    engine), single-threaded unless a stage's resources say otherwise."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    env_vars = {"PYTHONPATH": os.pathsep.join([str(REPO), str(BENCH)]), "OMP_NUM_THREADS": "1",
                "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env_vars})


def use_this_checkout() -> None:
    """Import attrpipe from the checkout this script lives in (not an installed copy elsewhere), find bench/'s modules,
    and run from the repository root (the configs' relative paths)."""
    for p in (str(BENCH), str(REPO)):
        if p not in sys.path:
            sys.path.insert(0, p)
    os.chdir(REPO)
