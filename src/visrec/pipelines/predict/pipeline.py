"""predict: classify new images with the served model (calibrated top-k probabilities).

``kedro run --pipeline=predict --params "predict.input=FOLDER"``: any layout, nested or
flat; unreadable files are listed in ``prediction_failures`` with a reason.
"""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import predict_images


def create_pipeline(**kwargs: object) -> Pipeline:
    """The predict pipeline."""
    return pipeline([
        node(predict_images, inputs=["served_model", "params:predict"],
             outputs=["predictions", "prediction_failures"], name="predict_images"),
    ])
