"""The one place attrpipe talks to MLflow from a command's driver: :class:`Tracker`, one MLflow run (a loop run, a
study, a shared chain set) and its nested stage runs, with their ids kept in the tracked directory's tracking.json so
that a rerun continues the same runs and logs nothing twice.

Tracking is never in the way: the first call that fails (a server that is down, or goes down) prints one warning line
and turns tracking off for the rest of the command; the run goes on, and what was not logged is logged by a rerun
(a stage is marked logged only once all of it is). Requests time out after ``tracking.timeout_s`` with
``tracking.retries`` retries (MLflow's own HTTP settings), so a dead server costs seconds, not MLflow's default
minutes.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from attrpipe import storage
from attrpipe.tracking.settings import TrackingSettings, new_steps

__all__ = ["Tracker", "STATE_FILE", "configure_mlflow", "tracking_off", "read_state", "fail"]

STATE_FILE = "tracking.json"
log = logging.getLogger(__name__)


class _Off:
    reason: str | None = None  # set by the first failure: tracking is off for the rest of this process's command


_off = _Off()


def tracking_off() -> str | None:
    """Why tracking was turned off in this process (None while it is on)."""
    return _off.reason


def _reset_for_tests() -> None:
    _off.reason = None


def configure_mlflow(settings: TrackingSettings) -> None:
    """MLflow's own HTTP settings from ``tracking.timeout_s`` and ``tracking.retries`` (this process and what it
    starts). Its default (7 retries, 120 s a request, doubling backoff) would stall a run for minutes on a dead
    server."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, int(round(settings.timeout_s))))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(int(settings.retries))
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0"
    os.environ["MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER"] = "false"  # a 429/503 may ask for minutes
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # a line per retry otherwise


def _uri(settings: TrackingSettings | str | None) -> str:
    return settings if isinstance(settings, str) else getattr(settings, "uri", "MLflow")


def fail(settings: TrackingSettings | str | None, what: str, e: BaseException) -> None:
    """The first failure of the command: one warning line on the terminal; tracking is off from here on."""
    if _off.reason is not None:
        return
    first = (str(e).strip().splitlines() or [""])[0][:160]
    _off.reason = f"{what}: {type(e).__name__}: {first}"
    from attrpipe.console import echo

    echo(f"warning: MLflow tracking at {_uri(settings)} failed ({_off.reason}); tracking is off for the rest of this "
         "command, the run goes on, and rerunning it logs what was missed")
    log.debug("tracking off: %s", _off.reason, exc_info=e)


def read_state(directory: str) -> dict | None:
    """A tracked directory's tracking.json (None when it has none)."""
    path = storage.join(directory, STATE_FILE)
    return storage.read_json(path) if storage.exists(path) else None


def _batches(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class Tracker:
    """One MLflow run and its stage runs, for one tracked directory. Open it with :meth:`open` (None when tracking is
    off); every method is safe to call and does nothing once tracking is off."""

    def __init__(self, settings: TrackingSettings, directory: str, client: Any, state: dict):
        self.settings = settings
        self.directory = directory
        self.client = client
        self.state = state

    # --- opening ----------------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: TrackingSettings | None, directory: str, *, name: str, tags: Mapping[str, str],
             params: Mapping[str, str] | None = None, parent_run_id: str | None = None) -> "Tracker | None":
        """The run of ``directory``: continued when its tracking.json names one in the same store, else created
        (under ``parent_run_id`` when given, with ``params`` and ``tags``)."""
        if settings is None or _off.reason is not None:
            return None
        try:
            configure_mlflow(settings)
            from mlflow import MlflowClient
            from mlflow.entities import Param

            client = MlflowClient(tracking_uri=settings.uri)
            # two commands on one directory (two study commands of one seed) create its run once
            with storage.locked(storage.join(directory, ".tracking"), what=f"the MLflow run of {directory}"):
                state = read_state(directory) or {}
                if state.get("uri") != settings.uri or not state.get("run_id") or \
                        not cls._alive(client, state["run_id"]):
                    state = cls._create(client, settings, name=name, tags=tags, parent_run_id=parent_run_id)
                    storage.write_json_atomic(storage.join(directory, STATE_FILE), state)  # the id, before the rest
                elif not state.get("finished"):
                    client.update_run(state["run_id"], status="RUNNING")
                if not state.get("params_logged"):
                    for batch in _batches([Param(k, v) for k, v in sorted((params or {}).items())], 100):
                        client.log_batch(state["run_id"], params=batch)
                    state["params_logged"] = True
                    storage.write_json_atomic(storage.join(directory, STATE_FILE), state)
            return cls(settings, directory, client, state)
        except Exception as e:  # noqa: BLE001 (never in the way: any failure turns tracking off)
            fail(settings, f"opening the run of {directory}", e)
            return None

    @classmethod
    def reopen(cls, directory: str) -> "Tracker | None":
        """The tracker of a directory a command tracked before (its tracking.json), with the settings it used; None
        when it has none or tracking is off."""
        if _off.reason is not None:
            return None
        settings = None
        try:
            state = read_state(directory)
            if not state or "settings" not in state:
                return None
            settings = TrackingSettings.from_dict(state["settings"])
            configure_mlflow(settings)
            from mlflow import MlflowClient

            return cls(settings, directory, MlflowClient(tracking_uri=settings.uri), state)
        except Exception as e:  # noqa: BLE001
            fail(settings, f"reopening the run of {directory}", e)
            return None

    @staticmethod
    def _alive(client, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException as e:
            if getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise

    @staticmethod
    def _experiment_id(client, settings: TrackingSettings) -> str:
        from mlflow.exceptions import MlflowException

        exp = client.get_experiment_by_name(settings.experiment)
        if exp is not None:
            if exp.lifecycle_stage != "active":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return client.create_experiment(settings.experiment, artifact_location=settings.artifact_location)
        except MlflowException:  # another process created it first
            exp = client.get_experiment_by_name(settings.experiment)
            if exp is None:
                raise
            return exp.experiment_id

    @classmethod
    def _create(cls, client, settings: TrackingSettings, *, name: str, tags: Mapping[str, str],
                parent_run_id: str | None) -> dict:
        exp_id = cls._experiment_id(client, settings)
        all_tags = dict(tags)
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        commit = _git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        run = client.create_run(exp_id, run_name=name, tags=all_tags)
        return {"uri": settings.uri, "experiment_id": exp_id, "run_id": run.info.run_id, "name": name,
                "settings": settings.to_dict(), "finished": False, "stages": {}}

    # --- what is logged ---------------------------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.state["run_id"]

    def _save(self) -> None:
        storage.write_json_atomic(storage.join(self.directory, STATE_FILE), self.state)

    def _guard(self, what: str, fn, *args, **kwargs):
        if _off.reason is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            fail(self.settings, what, e)
            return None

    def stage_run(self, name: str, *, tags: Mapping[str, str], params: Mapping[str, str] | None = None) -> str | None:
        """The nested run of stage ``name``: created (and recorded) the first time, the same one after."""
        def go():
            st = self.state["stages"].get(name)
            if st is None:
                run = self.client.create_run(self.state["experiment_id"], run_name=name,
                                             tags={**tags, "mlflow.parentRunId": self.run_id})
                st = self.state["stages"][name] = {"run_id": run.info.run_id, "logged": False}
                self._save()  # the id first: a rerun continues this run, never makes a second
                if params:
                    from mlflow.entities import Param

                    self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
            elif not st["logged"]:
                self.client.update_run(st["run_id"], status="RUNNING")
            return st["run_id"]

        return self._guard(f"starting the stage run {name}", go)

    def stage_logged(self, name: str) -> bool:
        return bool(self.state["stages"].get(name, {}).get("logged"))

    def stage_run_id(self, name: str) -> str | None:
        return (self.state["stages"].get(name) or {}).get("run_id")

    def finish_stage(self, name: str, *, metrics: Mapping[str, float], artifacts: Iterable[tuple[str, str]] = (),
                     steps: list[Mapping] | None = None, tags: Mapping[str, str] | None = None,
                     own: tuple[Mapping[str, float], int] | None = None) -> None:
        """Log a finished stage once: its ``metrics``, the per-step training logs ``steps`` not yet in MLflow (those a
        worker could not log live), its ``artifacts`` ((local path, artifact dir) pairs) and ``tags``; ``own``:
        (metrics, step) the tracker's own run gains from it (a loop's accuracy by round). Then the stage's run is
        terminated and the stage marked logged; a stage already logged is left alone. A stage without a run of its
        own (one another run did, shared) logs only ``own``."""
        def go():
            st = self.state["stages"].setdefault(name, {"run_id": None, "logged": False})
            if st["logged"]:  # what a rerun measured since (eval.vote, eval.fit turned on): only what MLflow lacks
                if st["run_id"] is not None:
                    self._log_once(st["run_id"], metrics, 0, True)
                if own and own[0]:
                    self._log_once(self.run_id, own[0], own[1], True)
                return
            retry = bool(st.get("tried"))  # an earlier attempt failed midway: log only what MLflow lacks
            if not retry:
                st["tried"] = True
                self._save()
            run_id = st["run_id"]
            if run_id is not None:
                if steps:
                    self._catch_up(run_id, steps)
                self._log_once(run_id, metrics, 0, retry)
                for key, value in (tags or {}).items():
                    self.client.set_tag(run_id, key, str(value))
                self._artifacts(run_id, artifacts)
            if own and own[0]:
                self._log_once(self.run_id, own[0], own[1], retry)
            if run_id is not None:
                self.client.set_terminated(run_id, status="FINISHED")
            self.state["stages"][name] = {"run_id": run_id, "logged": True}
            self._save()

        self._guard(f"logging the stage {name}", go)

    def fail_stage(self, name: str) -> None:
        st = self.state["stages"].get(name)
        if st is not None and not st["logged"]:
            self._guard(f"marking the stage {name} failed", self.client.set_terminated, st["run_id"], status="FAILED")

    def _log_metrics(self, metrics: Mapping[str, float], step: int, run_id: str) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
        for batch in _batches(items, 1000):
            self.client.log_batch(run_id, metrics=batch)

    def _log_once(self, run_id: str, metrics: Mapping[str, float], step: int, retry: bool) -> None:
        """``metrics`` at ``step``; on a retry, only those MLflow does not hold at that step yet."""
        if retry and metrics:
            if step == 0:
                have = set(self.client.get_run(run_id).data.metrics)
                metrics = {k: v for k, v in metrics.items() if k not in have}
            else:
                metrics = {k: v for k, v in metrics.items()
                           if not any(m.step == step for m in self.client.get_metric_history(run_id, k))}
        if metrics:
            self._log_metrics(metrics, step, run_id)

    def _catch_up(self, run_id: str, steps: list[Mapping]) -> None:
        """The training steps the live logging missed (a server that was down, a worker that could not reach it)."""
        from mlflow.entities import Metric

        history = self.client.get_metric_history(run_id, "loss")
        through = max((m.step for m in history), default=None)
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for step, m in new_steps(steps, through) for k, v in sorted(m.items())]
        for batch in _batches(items, 1000):
            self.client.log_batch(run_id, metrics=batch)

    def _artifacts(self, run_id: str, artifacts: Iterable[tuple[str, str]]) -> None:
        for path, dest in artifacts:
            if "://" in path:  # in an object store: named, not copied
                self.client.set_tag(run_id, f"attrpipe.artifact.{dest or posixpath.basename(path)}", path)
                continue
            if not Path(path).exists():
                continue
            if Path(path).is_dir():
                self.client.log_artifacts(run_id, path, artifact_path=dest or None)
            else:
                self.client.log_artifact(run_id, path, artifact_path=dest or None)

    def log_artifacts(self, artifacts: Iterable[tuple[str, str]], run_id: str | None = None) -> None:
        self._guard("logging artifacts", self._artifacts, run_id or self.run_id, artifacts)

    def finish(self, *, status: str = "FINISHED") -> None:
        """The run itself ends (a rerun of a finished run reopens nothing: its stages are all logged)."""
        def go():
            self.client.set_terminated(self.run_id, status=status)
            if status == "FINISHED":
                self.state["finished"] = True
                self._save()

        self._guard("ending the run", go)


def _git_commit() -> str | None:
    """The commit of the attrpipe checkout that runs, when it is one (never fails)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip() if out.returncode == 0 else ""
    return commit or None
