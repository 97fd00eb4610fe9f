"""Using a trained model: prediction on new image files, and export to ONNX and TorchScript
with a parity check against PyTorch."""

from visrec.core.serve.card import model_card
from visrec.core.serve.export import (
    INPUT_NAME,
    METADATA_KEYS,
    OUTPUT_NAMES,
    ServingModel,
    export_onnx,
    export_torchscript,
    max_difference,
    onnx_outputs,
    parity,
    serving_metadata,
    torchscript_outputs,
)
from visrec.core.serve.inputs import (
    FAILURE_COLUMNS,
    LIST_SUFFIXES,
    InputFiles,
    PredictInputError,
    list_inputs,
)
from visrec.core.serve.predict import (
    Batch,
    PredictionImages,
    Predictor,
    collate_checked,
    output_batches,
    outputs_of_files,
    predict_chunks,
    predict_files,
    prediction_columns,
    prediction_run,
    prediction_table,
)

__all__ = [
    "FAILURE_COLUMNS",
    "INPUT_NAME",
    "LIST_SUFFIXES",
    "METADATA_KEYS",
    "OUTPUT_NAMES",
    "Batch",
    "InputFiles",
    "PredictInputError",
    "PredictionImages",
    "Predictor",
    "ServingModel",
    "collate_checked",
    "export_onnx",
    "export_torchscript",
    "list_inputs",
    "max_difference",
    "model_card",
    "onnx_outputs",
    "output_batches",
    "outputs_of_files",
    "parity",
    "predict_chunks",
    "predict_files",
    "prediction_columns",
    "prediction_run",
    "prediction_table",
    "serving_metadata",
    "torchscript_outputs",
]
