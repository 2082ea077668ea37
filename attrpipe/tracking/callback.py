"""The trainers' live curves in MLflow: transformers' own MLflow callback on rank 0 of the Ray Train worker group,
attached to the stage's run (the driver created it and hands its id in the training job).

What attrpipe sets around transformers' callback, through its own environment variables: the run to attach to
(``MLFLOW_RUN_ID``), no copy of the trainer's arguments as parameters (``MLFLOW_MAX_LOG_PARAMS=0``: the stage and its
loop run carry attrpipe's configuration already, and a resumed run would log them again). And two things the
callback lacks:

- a resumed run (a checkpoint, a restarted worker group) logs only the steps after the last one in MLflow, and a key
  once per step (the trainer's closing summary repeats ``epoch``), so nothing is logged twice;
- a failure never stops training: the first one is a warning in the worker's log and the callback goes quiet; the
  driver logs the steps it missed from the stage's metrics.jsonl when the stage ends (attrpipe.tracking.client).
"""

from __future__ import annotations

import logging
import os

from attrpipe.tracking.client import configure_mlflow
from attrpipe.tracking.settings import TrackingSettings

__all__ = ["trainer_callback", "worker_tracking"]

log = logging.getLogger(__name__)


def worker_tracking(settings: TrackingSettings | None, run_id: str | None) -> dict | None:
    """What a training job carries for its rank 0 to log to the stage run ``run_id`` (None: no tracking)."""
    if settings is None or run_id is None:
        return None
    return {"settings": settings.to_dict(), "run_id": run_id}


def trainer_callback(tracking: dict | None):
    """transformers' ``MLflowCallback``, attached to the stage's run, for the worker of world rank 0; None without
    tracking."""
    if not tracking:
        return None
    from transformers.integrations import MLflowCallback

    settings = TrackingSettings.from_dict(tracking["settings"])
    configure_mlflow(settings)
    os.environ.update({"MLFLOW_TRACKING_URI": settings.uri, "MLFLOW_RUN_ID": tracking["run_id"],
                       "MLFLOW_MAX_LOG_PARAMS": "0", "MLFLOW_FLATTEN_PARAMS": "1"})
    os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)
    os.environ.pop("MLFLOW_NESTED_RUN", None)

    class _StageCallback(MLflowCallback):
        off = False
        logged_through: int | None = None  # the last step the run holds: a resumed run logs after it only

        def __init__(self):
            super().__init__()
            self.seen: set[tuple[str, int]] = set()

        def _quietly(self, what: str, fn, *args, **kwargs):
            if self.off:
                return
            try:
                fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 (tracking never stops training)
                self.off = True
                log.warning("MLflow logging off in this worker (%s: %s: %s); the driver logs the missed steps when "
                            "the stage ends", what, type(e).__name__, e)

        def setup(self, args, state, model):
            def go():
                super(_StageCallback, self).setup(args, state, model)
                self._async_log = False  # synchronous: a failure is seen here, not lost in a background thread
                history = self._ml_flow.MlflowClient().get_metric_history(tracking["run_id"], "loss")
                self.logged_through = max((m.step for m in history), default=None)

            self._initialized = True  # never retried: one failure turns it off
            self._quietly("attaching to the stage's run", go)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if not self._initialized:
                self.setup(args, state, model)

        def on_log(self, args, state, control, logs, model=None, **kwargs):
            if not self._initialized:
                self.setup(args, state, model)
            if self.logged_through is not None and state.global_step <= self.logged_through:
                return
            # the trainer's closing summary repeats ``epoch`` at the last step: each key once per step
            fresh = {k: v for k, v in (logs or {}).items() if (k, state.global_step) not in self.seen}
            self.seen.update((k, state.global_step) for k in fresh)
            if fresh:
                self._quietly("logging a step", super().on_log, args, state, control, fresh, model=model, **kwargs)

        def on_train_end(self, args, state, control, **kwargs):
            # the driver ends the stage's run once it has logged the stage's results
            return

        def on_save(self, args, state, control, **kwargs):
            return

        def __del__(self):
            return

    return _StageCallback()
