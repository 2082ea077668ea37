"""Which training checkpoints are complete: the file manifests a checkpoint carries, and the check that reads them.

A training checkpoint is written by several processes (the trainer's rank 0 writes the weights, the optimizer and
``trainer_state.json``; every rank writes its RNG state; under DeepSpeed every rank writes its optimizer partition)
and then uploaded to Ray Train's storage by one process per node. A process killed in the middle of any of that
leaves files that exist but are short, or missing. So each uploading process writes, into the checkpoint, a manifest
of the files it copies with their sizes, and how many manifests the checkpoint must hold (one per node). A checkpoint
is *complete* when every manifest is there and every file it lists has its listed size. A restart and an explicit
resume only ever start from a complete checkpoint.

Plain functions over :mod:`attrpipe.storage` (local paths or URIs); no Ray, no torch.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import pyarrow.fs as pafs

__all__ = ["MANIFEST_PREFIX", "manifest_name", "write_manifest", "checkpoint_problems", "hf_dir",
           "finished_in_checkpoint"]

MANIFEST_PREFIX = "attrpipe-files-"
_TRAINER_STATE = "trainer_state.json"


def manifest_name(world_rank: int) -> str:
    """The manifest file of the process with this world rank (one uploading process per node)."""
    return f"{MANIFEST_PREFIX}{int(world_rank)}.json"


def write_manifest(directory: str | Path, *, world_rank: int, nodes: int, step: int) -> dict:
    """Write ``directory``'s manifest (every file below it, manifests excluded, with its size in bytes) for the
    uploading process ``world_rank``; ``nodes``: how many uploading processes (so manifests) the checkpoint has."""
    root = Path(directory)
    files = {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*"))
             if p.is_file() and not p.name.startswith(MANIFEST_PREFIX)}
    manifest = {"world_rank": int(world_rank), "nodes": int(nodes), "step": int(step), "files": files}
    (root / manifest_name(world_rank)).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n",
                                                  encoding="utf-8")
    return manifest


def hf_dir(path: str) -> str:
    """The trainer's checkpoint inside ``path``: a Ray Train checkpoint wraps it as ``checkpoint/``."""
    from attrpipe import storage

    inner = storage.join(path, "checkpoint")
    return inner if storage.exists(inner) else path


def checkpoint_problems(path: str) -> list[str]:
    """Why the checkpoint at ``path`` (a Ray Train checkpoint or the trainer's own directory, local or URI) is not
    complete; ``[]`` when it is. A Ray Train checkpoint must carry its manifests; the trainer's own directory (one
    written outside attrpipe's Ray Train loop has none) is complete when its ``trainer_state.json`` parses."""
    from attrpipe import storage

    d = hf_dir(path)
    fs, root = storage.filesystem_for(d)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return [f"{d}: not a directory"]
    sizes = {posixpath.relpath(i.path, root.rstrip("/") or "/"): i.size
             for i in fs.get_file_info(pafs.FileSelector(root, recursive=True)) if i.type == pafs.FileType.File}
    problems: list[str] = []
    manifests = sorted(n for n in sizes if "/" not in n and n.startswith(MANIFEST_PREFIX) and n.endswith(".json"))
    if _TRAINER_STATE not in sizes:
        problems.append(f"{_TRAINER_STATE} is missing")
    else:
        try:
            int(storage.read_json(storage.join(d, _TRAINER_STATE))["global_step"])
        except (ValueError, KeyError, TypeError, OSError) as e:
            problems.append(f"{_TRAINER_STATE} does not parse ({type(e).__name__})")
    expected = None
    for name in manifests:
        try:
            m = storage.read_json(storage.join(d, name))
            files, nodes = dict(m["files"]), int(m["nodes"])
        except (ValueError, KeyError, TypeError, OSError) as e:
            problems.append(f"{name} does not parse ({type(e).__name__})")
            continue
        if expected is not None and nodes != expected:
            problems.append(f"{name} says {nodes} node(s), another manifest {expected}")
        expected = nodes if expected is None else expected
        for rel, size in sorted(files.items()):
            if rel not in sizes:
                problems.append(f"{rel} is missing (listed in {name})")
            elif sizes[rel] != int(size):
                problems.append(f"{rel} has {sizes[rel]} bytes, {int(size)} when it was written ({name})")
    if not manifests and d != path:
        problems.append("no file manifest: the upload did not finish")
    if expected is not None and len(manifests) != expected:
        problems.append(f"{len(manifests)} of {expected} node manifest(s)")
    return problems


def finished_in_checkpoint(hf_checkpoint: str, max_steps: int) -> dict | None:
    """A checkpoint that already holds every step of the run (the run was killed after its last save, before it
    reported its result): the run's summary and step logs, from its ``trainer_state.json``; None when steps remain.
    Resuming from it with the trainer would take one step more than ``max_steps`` (transformers checks the step count
    only after a step), so the worker exports it as it is. ``train_loss`` is the mean of the logged step losses."""
    state = json.loads((Path(hf_checkpoint) / _TRAINER_STATE).read_text(encoding="utf-8"))
    step = int(state["global_step"])
    if step < int(max_steps):
        return None
    losses = [float(e["loss"]) for e in state.get("log_history", []) if "loss" in e]
    return {"global_step": step, "train_loss": sum(losses) / len(losses) if losses else float("nan"),
            "log_history": state.get("log_history", [])}
