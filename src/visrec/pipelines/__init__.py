"""visrec pipelines: one folder each, found by ``find_pipelines()``."""
