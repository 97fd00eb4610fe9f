"""export: the served model as ONNX (dynamic batch) and TorchScript, parity-checked."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import export_model


def create_pipeline(**kwargs: object) -> Pipeline:
    """The export pipeline."""
    return pipeline([
        node(export_model,
             inputs=["served_model", "image_manifest", "ingestion_report", "params:export"],
             outputs=["onnx_model", "torchscript_model", "export_report"],
             name="export_model"),
    ])
