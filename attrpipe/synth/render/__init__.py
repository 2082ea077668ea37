"""Procedural product images with known ground truth (PIL only, a few ms per view).

Every vertical of ``conf/taxonomy`` has a draw function that draws one product, in unit coordinates, on a
transparent layer: its recognisable silhouette (suitcase box with handle and wheels, watch with dial and strap,
garments as torso + sleeves, trouser legs, a draped sari with its border, footwear in side or top view, an ethnic set
as top + bottom) and every *visible* attribute as something really drawn: colours from one shared table
(:data:`~attrpipe.synth.render.colours.COLOURS`), patterns as textures filling the part's shape
(:data:`~attrpipe.synth.render.colours.PATTERNS`, shared across verticals), counts as countable objects (wheels,
straps, pockets) and shapes as shapes (dial, heel, toe, neckline).

:func:`~attrpipe.synth.render.listing.render_listing` draws the product once and then composes ``n_views`` views of
it, each with its own scale, position/crop, small rotation, mirror, background (plain, gradient, floor/wall, planks,
tiles), clutter, people-like silhouettes, lighting and sensor noise; ``difficulty`` in [0, 1] scales all nuisances (0:
a clean centred product on a near-white background). The first view is the "hero" shot and gets half the difficulty.

Only attributes that the vertical marks ``inferable: true`` are read from the labels; a drawn attribute that the
taxonomy lacks or marks non-inferable is drawn with a fixed default, so non-inferable values never change a pixel.
Everything random comes from the ``random.Random`` passed in, so output is a pure function of its state.

The modules, from the ground up:

- :mod:`~attrpipe.synth.render.colours`: the colour table, the pattern names, colour arithmetic;
- :mod:`~attrpipe.synth.render.geometry`: splines, blobs, stars;
- :mod:`~attrpipe.synth.render.textures`: one texture per pattern;
- :mod:`~attrpipe.synth.render.painter`: :class:`~attrpipe.synth.render.painter.Painter`, unit coordinates to
  pixels, masked pattern fills and outlines;
- :mod:`~attrpipe.synth.render.spec`: what a product drawing declares (its attributes and values, the combinations
  it cannot show) and :class:`~attrpipe.synth.render.spec.RenderError`;
- the product families, each a table ``PRODUCTS`` of its verticals' drawings: :mod:`~attrpipe.synth.render.apparel`
  (kurta, t-shirt, top, shirt, trouser, ethnic set, sari), :mod:`~attrpipe.synth.render.footwear` (sandal, shoe,
  slipper/flip-flop), :mod:`~attrpipe.synth.render.luggage` (suitcase), :mod:`~attrpipe.synth.render.accessories`
  (watch);
- :mod:`~attrpipe.synth.render.registry`: every vertical's drawing; what it draws, labels it can show
  (:func:`~attrpipe.synth.render.registry.sample_labels`, :func:`~attrpipe.synth.render.registry.check_renderable`);
- :mod:`~attrpipe.synth.render.listing`: backgrounds, distractors and the views of a listing
  (:func:`~attrpipe.synth.render.listing.render_listing`).
"""
