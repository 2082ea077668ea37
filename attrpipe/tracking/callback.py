"""The trainers' live curves in MLflow: a trainer callback on rank 0 of the Ray Train worker group that logs each of
the trainer's log entries (loss, learning rate, grad norm; DPO's rewards, margins and accuracies) at its step, to the
stage's run, which the driver created and hands over in the training job.

Why not transformers' own ``MLflowCallback``: it drives MLflow's fluent API, whose active run is process-global state
that the callback starts itself (settings only through environment variables) and that an exit hook ends from the
worker, contacting the server as the worker exits: a stall when the server is down, and a status set over the
driver's. The stage runs here are the driver's to create and end, so rank 0 logs through ``MlflowClient`` to the run
it is given, with transformers' own rule for what is a metric and how its name is cleaned. Beside that:

- a resumed run (a checkpoint, a restarted worker group) logs only the steps after the last one the run holds, and
  each key once per step (the trainer's closing summary repeats ``epoch``), so nothing is logged twice;
- a failure never stops training: the first one is a warning in the worker's log and the callback goes quiet; the
  driver logs the steps it missed from the stage's metrics.jsonl when the stage ends (attrpipe.tracking.client).
"""

from __future__ import annotations

import logging
import re
import time

from attrpipe.tracking.client import configure_mlflow
from attrpipe.tracking.settings import TrackingSettings

__all__ = ["trainer_callback", "worker_tracking"]

log = logging.getLogger(__name__)


def worker_tracking(settings: TrackingSettings | None, run_id: str | None) -> dict | None:
    """What a training job carries for its rank 0 to log to the stage run ``run_id`` (None: no tracking)."""
    if settings is None or run_id is None:
        return None
    return {"settings": settings.to_dict(), "run_id": run_id}


def _metrics(logs: dict) -> dict[str, float]:
    """transformers' rule (MLflowCallback.on_log): numbers and one-element tensors are metrics, names cleaned."""
    out = {}
    for k, v in (logs or {}).items():
        if hasattr(v, "numel") and v.numel() == 1:
            v = v.item()
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[re.sub(r"[^0-9A-Za-z_\-\.\ :/]", "_", k)] = float(v)
    return out


def trainer_callback(tracking: dict | None):
    """The callback for the worker of world rank 0 (None without tracking, or when it cannot be set up)."""
    if not tracking:
        return None
    try:
        from transformers import TrainerCallback

        settings = TrackingSettings.from_dict(tracking["settings"])
        configure_mlflow(settings)
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        client = MlflowClient(tracking_uri=settings.uri)
    except Exception as e:  # noqa: BLE001 (tracking never stops training)
        log.warning("MLflow logging off in this worker: %s: %s", type(e).__name__, e)
        return None
    run_id = tracking["run_id"]

    class _StageRun(TrainerCallback):
        def __init__(self):
            self.off = False
            self.logged_through: int | None = None  # the last step the run holds: a resumed run logs after it only
            self.seen: set[tuple[str, int]] = set()
            self.ready = False

        def _quietly(self, what: str, fn, *args, **kwargs):
            if self.off:
                return None
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001
                self.off = True
                log.warning("MLflow logging off in this worker (%s: %s: %s); the driver logs the missed steps when "
                            "the stage ends", what, type(e).__name__, e)
                return None

        def _setup(self):
            history = client.get_metric_history(run_id, "loss")
            self.logged_through = max((m.step for m in history), default=None)
            self.ready = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or self.off:
                return
            if not self.ready:
                self._quietly("attaching to the stage's run", self._setup)
            step = int(state.global_step)
            if self.off or (self.logged_through is not None and step <= self.logged_through):
                return
            fresh = {k: v for k, v in _metrics(logs).items() if (k, step) not in self.seen}
            if fresh:
                now = int(time.time() * 1000)
                batch = [Metric(k, v, now, step) for k, v in sorted(fresh.items())]
                self._quietly("logging a step", client.log_batch, run_id, metrics=batch)
                self.seen.update((k, step) for k in fresh)

    return _StageRun()
