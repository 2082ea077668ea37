"""attrpipe: teach compact vision-language models e-commerce product attributes from few labels and many
unlabeled listings (seed SFT, 7-chain consensus pseudo-labels, DPO), at catalog scale on Ray."""

__version__ = "0.1.0"
