"""``visrec serve``: a web page to try the served model by hand.

A FastAPI app: ``GET /`` is a page where images are dropped (or chosen) and the top
classes show with their calibrated probabilities; ``POST /api/predict`` takes one image
file as the request body and answers JSON; ``GET /api/model`` describes the model.
Uploads are checked as prediction checks files: a body over the size cap is refused
(413) before it is read whole, a file that is not an image (or too many pixels) is
refused (415) with the reason. Nothing is written to disk. Only ``visrec serve`` imports
this module (and FastAPI with it).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from visrec.core.files import Rejected
from visrec.core.images import decode_checked
from visrec.core.serve.predict import prediction_table

if TYPE_CHECKING:
    from visrec.core.data import Transform
    from visrec.core.serve.predict import Predictor


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be.

    Attributes:
        max_bytes: The largest file taken.
        max_pixels: The largest image (width x height) decoded.
    """

    max_bytes: int
    max_pixels: int


class UploadError(ValueError):
    """An upload refused, with the HTTP status and the message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def classify_upload(predictor: Predictor, transform: Transform, data: bytes,
                    limits: UploadLimits, top_k: int) -> list[dict[str, Any]]:
    """The ``top_k`` classes of one uploaded image file, with calibrated probabilities, as
    prediction writes them (:func:`~visrec.core.serve.predict.prediction_table`).

    Raises:
        UploadError: 413 when ``data`` is over the size cap, 415 when it is not an image
            visrec reads (the reason says why).
    """
    if len(data) > limits.max_bytes:
        raise UploadError(413, _too_large(len(data), limits))
    try:
        image = decode_checked(data, predictor.config.in_chans, limits.max_pixels, "serve")
    except Rejected as rejected:
        raise UploadError(415, f"not an image visrec can read ({rejected.reason}: "
                               f"{rejected.detail})") from None
    batch = transform(image)[None]
    parameter = next(predictor.model.parameters())
    with torch.inference_mode():
        logits = predictor.model(batch.to(parameter.device, parameter.dtype)).float().cpu()
    row = prediction_table(np.array(["upload"]), logits.numpy(), predictor.config.classes,
                           top_k, predictor.temperature).iloc[0]
    return [{"label": row[f"label_{rank}"], "probability": float(row[f"probability_{rank}"])}
            for rank in range(1, min(top_k, len(predictor.config.classes)) + 1)]


def model_summary(predictor: Predictor) -> dict[str, Any]:
    """What the page says of the model: architecture, classes, input, temperature, scores."""
    config = predictor.config
    scores = config.scores or {}
    return {"architecture": config.architecture, "classes": list(config.classes),
            "image_size": config.image_size, "temperature": predictor.temperature,
            "weights": config.served_from or config.weights,
            "test_balanced_accuracy": scores.get("balanced_accuracy"),
            "test_ece_calibrated": scores.get("ece_calibrated")}


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>visrec: try the model</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto;
         padding: 0 1rem; color: #1d2329; }}
  #drop {{ display: block; margin: 1rem 0; border: 2px dashed #7a8691; border-radius: 8px;
          padding: 2rem; text-align: center; cursor: pointer; }}
  #drop.over {{ background: #eef4fb; border-color: #2b6cb0; }}
  .result {{ display: flex; gap: 1rem; margin: 1rem 0; align-items: flex-start; }}
  .result img {{ width: 96px; height: 96px; object-fit: contain; background: #f4f4f4; }}
  table {{ border-collapse: collapse; }}
  td {{ padding: 0.15rem 0.6rem; }}
  .bar {{ background: #2b6cb0; height: 0.6rem; }}
  .error {{ color: #b00020; }}
  .meta {{ color: #56606a; font-size: 0.9rem; }}
</style>
</head>
<body>
<h1>Try the model</h1>
<p class="meta">{summary}</p>
<label id="drop" for="files">Drop images here, or click to choose them
  <input id="files" type="file" accept="image/*" multiple hidden></label>
<div id="results"></div>
<script>
const results = document.getElementById("results");
const drop = document.getElementById("drop");
const input = document.getElementById("files");
const TOP_K = {top_k};

function row(file) {{
  const div = document.createElement("div");
  div.className = "result";
  div.dataset.file = file.name;
  const img = document.createElement("img");
  img.alt = file.name;
  img.src = URL.createObjectURL(file);
  const body = document.createElement("div");
  body.innerHTML = "<strong></strong><div class='status'>classifying...</div>";
  body.querySelector("strong").textContent = file.name;
  div.append(img, body);
  results.prepend(div);
  return body.querySelector(".status");
}}

async function classify(file) {{
  const status = row(file);
  try {{
    const response = await fetch("api/predict", {{method: "POST", body: file,
      headers: {{"Content-Type": "application/octet-stream"}}}});
    const answer = await response.json();
    if (!response.ok) {{
      status.className = "status error";
      status.textContent = answer.error;
      return;
    }}
    const table = document.createElement("table");
    table.className = "predictions";
    for (const [rank, p] of answer.predictions.entries()) {{
      const tr = table.insertRow();
      tr.className = rank === 0 ? "top" : "";
      tr.insertCell().textContent = p.label;
      tr.cells[0].className = "label";
      tr.insertCell().textContent = (100 * p.probability).toFixed(1) + " %";
      tr.cells[1].className = "probability";
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = Math.max(1, Math.round(200 * p.probability)) + "px";
      tr.insertCell().append(bar);
    }}
    status.replaceWith(table);
  }} catch (error) {{
    status.className = "status error";
    status.textContent = "the server did not answer: " + error;
  }}
}}

function classifyAll(files) {{ for (const file of files) classify(file); }}
input.addEventListener("change", () => classifyAll(input.files));
drop.addEventListener("dragover", (event) => {{ event.preventDefault();
  drop.classList.add("over"); }});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {{ event.preventDefault();
  drop.classList.remove("over"); classifyAll(event.dataTransfer.files); }});
</script>
</body>
</html>
"""


def page(predictor: Predictor, top_k: int) -> str:
    """The page, with a line on the model."""
    summary = model_summary(predictor)
    accuracy = summary["test_balanced_accuracy"]
    text = (f"{summary['architecture']} ({summary['weights']} weights), "
            f"{len(summary['classes'])} classes, {summary['image_size']} px input"
            + ("" if accuracy is None else f", test balanced accuracy {accuracy:.3f}")
            + f"; probabilities calibrated with temperature {summary['temperature']:.3f}.")
    return PAGE.format(summary=html.escape(text), top_k=top_k)


def make_app(predictor: Predictor, limits: UploadLimits, top_k: int = 5) -> FastAPI:
    """The app around ``predictor``."""
    app = FastAPI(title="visrec", docs_url=None, redoc_url=None, openapi_url=None)
    shown = min(top_k, len(predictor.config.classes))
    transform = predictor.transform()  # made once, used by every request

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page(predictor, shown)

    @app.get("/api/model")
    def describe() -> dict[str, Any]:
        return model_summary(predictor)

    @app.post("/api/predict")
    async def predict(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
            return JSONResponse({"error": _too_large(int(declared), limits)},
                                status_code=413)
        body = bytearray()
        async for chunk in request.stream():  # stop reading one chunk past the cap
            body.extend(chunk)
            if len(body) > limits.max_bytes:
                return JSONResponse({"error": _too_large(len(body), limits)}, status_code=413)
        try:
            predictions = classify_upload(predictor, transform, bytes(body), limits, shown)
        except UploadError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        return JSONResponse({"predictions": predictions})

    return app


def _too_large(size: int, limits: UploadLimits) -> str:
    return (f"the file is too large: {size:,} bytes or more; the limit is "
            f"{limits.max_bytes:,} bytes (visrec serve --max-upload-mb)")
