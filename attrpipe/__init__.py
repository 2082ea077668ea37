"""attrpipe: teach compact vision-language models e-commerce product attributes from few labels and many
unlabeled listings (seed SFT, 7-chain consensus pseudo-labels, DPO), at catalog scale on Ray."""

__version__ = "0.1.0"

from attrpipe import ray_utils as _ray_utils  # noqa: E402,F401  (sets Ray Data's backpressure default before ray.data loads)
