"""Training on Ray Train: seed SFT, DPO, ScPO and self-learning (SL) on LoRA adapters, with TRL and DeepSpeed.

- :mod:`attrpipe.train.examples`: pure. Seed / pairs / consensus rows -> records -> TRL example dicts.
- :mod:`attrpipe.train.plan`: pure. Hyperparameters, step plan, start and DPO reference, DeepSpeed config, paths,
  which checkpoint to resume from.
- :mod:`attrpipe.train.worker`: TRL trainer construction and the Ray Train worker loop.
- :mod:`attrpipe.train.scpo`: ScPO's weighted loss on TRL's ``DPOTrainer`` (``ScPOTrainer``).
- :mod:`attrpipe.train.driver`: :func:`run_training`, the ``TorchTrainer`` run.

docs/training.md describes the whole.
"""

from attrpipe.train.plan import KINDS

__all__ = ["KINDS", "run_training"]


def run_training(kind, cfg, *, out_dir=None, data=None, init_adapter=None, resume_from=None, reference_adapter=None,
                 **kwargs):
    """See :func:`attrpipe.train.driver.run_training` (imported lazily: Ray and TRL load only when training)."""
    from attrpipe.train.driver import run_training as _run

    return _run(kind, cfg, out_dir=out_dir, data=data, init_adapter=init_adapter, resume_from=resume_from,
                reference_adapter=reference_adapter, **kwargs)
