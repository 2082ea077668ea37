"""Synthetic catalogs with known ground truth: procedural product images (:mod:`attrpipe.synth.render`) and the
seed / unlabeled / test splits written in the catalog formats (:mod:`attrpipe.synth.catalog`)."""
