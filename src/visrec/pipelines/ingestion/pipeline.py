"""ingestion: an image folder or labels file becomes a manifest, a quarantine table, a
report, and a packed cache that training reads without decoding."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import check_images, curate_images, list_images


def create_pipeline(**kwargs: object) -> Pipeline:
    """The ingestion pipeline."""
    return pipeline([
        node(list_images, inputs="params:ingestion",
             outputs=["image_listing", "image_class_names"], name="list_images"),
        node(check_images,
             inputs=["image_listing", "image_cache_state", "params:ingestion",
                     "params:training.image_size", "params:training.model"],
             outputs="image_cache", name="check_images"),
        node(curate_images,
             inputs=["image_listing", "image_class_names", "image_cache", "params:ingestion",
                     "params:seed"],
             outputs=["image_manifest", "quarantine", "ingestion_report"],
             name="curate_images"),
    ])
