"""predict: classify new images with the served model (calibrated top-k probabilities).

``kedro run --pipeline=predict --params "predict.input=FOLDER"``: any layout, nested or
flat; unreadable files are listed in ``prediction_failures`` with a reason. The node is a
generator: Kedro saves each chunk it yields as it comes, into the ``.partial`` files
beside the two tables, and a run stopped half-way resumes from them.
"""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import predict_images


def create_pipeline(**kwargs: object) -> Pipeline:
    """The predict pipeline."""
    return pipeline([
        node(predict_images,
             inputs=["served_model", "prediction_failures_partial", "predictions_partial",
                     "params:predict"],
             # Failures first: Kedro saves each yielded pair in this order (see the node).
             outputs=["prediction_failures", "predictions"], name="predict_images"),
    ])
