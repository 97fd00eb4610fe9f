"""demo_data: scikit-learn's digits written as a PNG image folder (``data/01_raw/demo``)."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import make_demo_images


def create_pipeline(**kwargs: object) -> Pipeline:
    """The demo_data pipeline."""
    return pipeline([
        node(make_demo_images, inputs="params:demo_data", outputs="demo_images",
             name="make_demo_images"),
    ])
