"""visrec's ML library: plain functions and types over tables, arrays and torch objects.

No Kedro imports and no parameter models: the pipelines' nodes turn parameters into the
types here and call in. One package per concern, each ``__init__`` naming its public API:

- :mod:`visrec.core.data`: ingestion (listing, the packed cache, curation), torch datasets
  and loaders over the manifest, the samplers of training rows, the demo images;
- :mod:`visrec.core.balance`: the class distribution and the balance plan;
- :mod:`visrec.core.augment`: policy strings, the augmentation spec, transforms, the search;
- :mod:`visrec.core.models`: timm models, local weights, input configs, weight sets;
- :mod:`visrec.core.train`: the loop for every task, recipe, losses, checkpoints, launcher;
- :mod:`visrec.core.evaluate`: metrics, calibration, scoring of weight sets;
- :mod:`visrec.core.plots`: the figures;
- :mod:`visrec.core.serve`: prediction and export.

Shared by all: :mod:`visrec.core.images` (decoding, light enough for worker processes),
:mod:`visrec.core.records` (the typed hand-offs' base) and :mod:`visrec.core.seeding`.
"""
