"""Using a trained model: prediction on new image files, and export to ONNX and TorchScript
with a parity check against PyTorch."""

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
from visrec.core.serve.predict import (
    LIST_SUFFIXES,
    PredictInputError,
    PredictionImages,
    Predictor,
    collate_checked,
    list_inputs,
    outputs_of_files,
    predict_files,
)

__all__ = ["INPUT_NAME", "LIST_SUFFIXES", "METADATA_KEYS", "OUTPUT_NAMES", "PredictInputError",
           "PredictionImages", "Predictor", "ServingModel", "collate_checked", "export_onnx",
           "export_torchscript", "list_inputs", "max_difference", "onnx_outputs",
           "outputs_of_files", "parity", "predict_files", "serving_metadata", "torchscript_outputs"]
