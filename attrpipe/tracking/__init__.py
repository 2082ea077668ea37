"""Experiment tracking in MLflow (docs/loop.md, "Tracking"): every loop run, stage, round and study arm, live, in a
local store by default or a tracking server (``tracking.*``), never in the way of the run.

- attrpipe.tracking.settings: pure: the URI by precedence, parameters, tags, which result numbers become metrics;
- attrpipe.tracking.client: :class:`Tracker`, the one place a driver talks to MLflow (runs kept in tracking.json);
- attrpipe.tracking.runs: what the loop, the studies and the report log;
- attrpipe.tracking.callback: the trainers' curves, logged live by rank 0 of the training workers.
"""
