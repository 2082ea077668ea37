"""The loop's run manifest (``loop.json`` in a loop's run directory): its name and its reader.

The loop (attrpipe.loop) writes it; the audit, studies and reports read it. It holds the config hash, the planned
stages (``stages``) and each finished stage's result (``finished``); docs/loop.md describes it. A plain module (no
Ray, no model), so that what reads a loop run need not import the loop that runs one.
"""

from __future__ import annotations

from attrpipe import storage

__all__ = ["LOOP_FILE", "loop_manifest_path", "read_loop_manifest"]

LOOP_FILE = "loop.json"


def loop_manifest_path(run_dir: str) -> str:
    return storage.join(run_dir, LOOP_FILE)


def read_loop_manifest(run_dir: str) -> dict:
    return storage.read_json(loop_manifest_path(run_dir))
