"""ingestion: an image folder becomes a manifest (parquet) and a report."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import scan_images


def create_pipeline(**kwargs: object) -> Pipeline:
    """The ingestion pipeline."""
    return pipeline([
        node(scan_images, inputs=["params:ingestion", "params:seed"],
             outputs=["image_manifest", "ingestion_report"], name="scan_images"),
    ])
