"""Nodes of the predict pipeline."""

import logging
from pathlib import Path

import pandas as pd

from visrec.core.models import WeightSet, model_from_weight_set, select_device
from visrec.core.serve import Predictor, list_inputs, predict_files
from visrec.params import PredictParams

logger = logging.getLogger(__name__)


def predict_images(served_model: WeightSet, params: PredictParams
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Classify the images ``predict.input`` names with the served weights.

    Args:
        served_model: The served weight set (``data/06_models/served``), with its classes,
            evaluation transform and calibration temperature.
        params: The ``predict`` block. Relative paths are resolved against the working
            directory (the project root under ``kedro run``).

    Returns:
        ``(predictions, failures)``: one row per image with the top-k labels and calibrated
        probabilities; one row per file that could not be read, with the reason.
    """
    root, paths, unlisted = list_inputs(params.input, Path.cwd())
    device = select_device(params.device, key="predict.device")
    predictor = Predictor(model_from_weight_set(served_model).to(device), served_model.config)
    predictions, failures = predict_files(predictor, root, paths, params.top_k,
                                          params.batch_size, device, params.num_workers,
                                          params.max_pixels, params.max_bytes)
    failures = pd.concat([unlisted, failures], ignore_index=True)
    logger.info("predict: %d images classified with the %s weights (T = %.3f) from %s",
                len(predictions), served_model.config.served_from or "served",
                predictor.temperature, root)
    if len(failures):
        logger.warning("predict: %d files could not be read and are listed in "
                       "prediction_failures:\n%s", len(failures),
                       "\n".join(f"  {p}: {r} ({d})" for p, r, d in
                                 failures.head(10).itertuples(index=False)))
    return predictions, failures
