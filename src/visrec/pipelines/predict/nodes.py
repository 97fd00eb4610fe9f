"""Nodes of the predict pipeline."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from visrec.core.chunks import PartialTable, TableChunk
from visrec.core.models import WeightSet, model_from_weight_set, select_device
from visrec.core.serve import (
    Predictor,
    list_inputs,
    predict_chunks,
    prediction_columns,
    prediction_run,
)
from visrec.params import PredictParams

logger = logging.getLogger(__name__)


def predict_images(served_model: WeightSet, failures_partial: PartialTable,
                   predictions_partial: PartialTable, params: PredictParams
                   ) -> Iterator[tuple[TableChunk, TableChunk]]:
    """Classify the images ``predict.input`` names with the served weights, a chunk at a
    time; resume a run of the same model, input and settings that was stopped half-way.

    Args:
        served_model: The served weight set (``data/06_models/served``), with its classes,
            evaluation transform and calibration temperature.
        failures_partial: What an interrupted run left of ``prediction_failures``.
        predictions_partial: What an interrupted run left of ``predictions``.
        params: The ``predict`` block. Relative paths are resolved against the working
            directory (the project root under ``kedro run``).

    Yields:
        ``(failures, predictions)`` chunks: one row per file that could not be read, with
        the reason; one row per image with the top-k labels and calibrated probabilities.
        Kedro saves them in this order, so a crash between the two saves leaves the
        chunk's images to be done again rather than its failures lost. The final pair,
        marked ``last``, completes both tables.
    """
    listed = list_inputs(params.input, Path.cwd())  # raises when predict.input is unset
    run = prediction_run(served_model, params.input or [], Path.cwd(), params.top_k,
                         params.max_pixels, params.max_bytes)
    done = predictions_partial.done_by(run) | failures_partial.done_by(run)
    inputs = listed.without(done)
    total = len(listed.paths) + len(listed.failures)
    if done:
        logger.info("predict: resuming an interrupted run of the same model and input: "
                    "%d of %d files already done, %d to go",
                    total - len(inputs.paths) - len(inputs.failures), total,
                    len(inputs.paths))
    device = select_device(params.device, key="predict.device")
    predictor = Predictor(model_from_weight_set(served_model).to(device), served_model.config)
    no_predictions = pd.DataFrame(columns=prediction_columns(
        min(params.top_k, len(served_model.config.classes))))
    classified, failed, shown = 0, len(inputs.failures), inputs.failures.head(10)
    yield TableChunk(inputs.failures, run), TableChunk(no_predictions, run)
    for predictions, failures in predict_chunks(
            predictor, inputs.root, inputs.paths, params.top_k, params.batch_size, device,
            params.num_workers, params.max_pixels, params.max_bytes, params.chunk_size):
        classified, failed = classified + len(predictions), failed + len(failures)
        shown = pd.concat([shown, failures.head(10)], ignore_index=True).head(10)
        yield TableChunk(failures, run), TableChunk(predictions, run)
    logger.info("predict: %d images classified with the %s weights (T = %.3f) from %s",
                classified, served_model.config.served_from or "served",
                predictor.temperature, inputs.root)
    if failed:
        logger.warning("predict: %d files could not be read and are listed in "
                       "prediction_failures:\n%s", failed,
                       "\n".join(f"  {p}: {r} ({d})" for p, r, d in
                                 shown.itertuples(index=False)))
    yield (TableChunk(inputs.failures.head(0), run, last=True),
           TableChunk(no_predictions, run, last=True))
