"""notebooks/exploration.ipynb: committed clean, and executed on a trained project it shows
that project's numbers (served weights, imbalance ratio, mistakes) and draws its figures."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.conftest import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "exploration.ipynb"
# Kedro's rich logging and pretty printing colour plain text and add terminal hyperlinks.
ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;[^\x1b]*\x1b\\")
# Appended to the executed copy only: which interpreter and environment the kernel has.
PROBE = "import os, sys\nprint(sys.executable)\nprint(os.environ.get('KEDRO_DISABLE_TELEMETRY'))"


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The code cells of ``notebook``, in order."""
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def cell_text(cell: nbformat.NotebookNode) -> str:
    """Everything a cell's outputs say in text (streams, plain text, Markdown), uncoloured."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/markdown", "")]
        parts += [output.get("ename", ""), output.get("evalue", "")]
    return ANSI.sub("", "\n".join(parts))


def test_committed_notebook_is_clean() -> None:
    """No outputs or execution counts in git (small diffs); the native kernel; Kedro first."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    assert [cell.outputs for cell in cells] == [[]] * len(cells)
    assert [cell.execution_count for cell in cells] == [None] * len(cells)
    assert notebook.metadata.kernelspec.name == "python3"
    assert cells[0].source.startswith("%load_ext kedro.ipython")


@pytest.fixture(scope="module")
def executed(trained_project: Path) -> nbformat.NotebookNode:
    """The notebook run top to bottom from the trained project's ``notebooks/`` folder
    (Kedro's extension finds the project upwards from there), with :data:`PROBE` last."""
    folder = trained_project / "notebooks"
    folder.mkdir(exist_ok=True)
    shutil.copy(NOTEBOOK, folder)
    notebook = nbformat.read(folder / NOTEBOOK.name, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    try:
        client.execute()
    except CellExecutionError as error:
        # Kedro's rich traceback handler shows the traceback as display data, not in the
        # error: put the failing cell's outputs in the message.
        shown = [cell_text(cell) for cell in code_cells(notebook) if "Traceback" in cell_text(cell)]
        pytest.fail(f"a notebook cell raised {error.ename}: {error.evalue}\n" + "\n".join(shown))
    return notebook


@pytest.mark.slow
def test_notebook_runs_in_the_projects_interpreter(executed: nbformat.NotebookNode,
                                                   trained_project: Path) -> None:
    """The ``python3`` kernel is this venv's Python and inherits the telemetry opt-out, so
    loading the project wrote no telemetry id into its pyproject.toml."""
    assert cell_text(code_cells(executed)[-1]).split() == [sys.executable, "1"]
    assert "kedro_telemetry" not in (trained_project / "pyproject.toml").read_text()


@pytest.mark.slow
def test_notebook_draws_every_figure(executed: nbformat.NotebookNode,
                                     trained_project: Path) -> None:
    """Each cell that calls plt.show() drew a figure, and every augmentation preview PNG of
    the run is displayed."""
    images = [sum("image/png" in output.get("data", {}) for output in cell.outputs)
              for cell in code_cells(executed)]
    plotting = [images[i] for i, cell in enumerate(code_cells(executed))
                if "plt.show()" in cell.source]
    previews = list((trained_project / "data/08_reporting/tuning_policy_previews").glob("*.png"))
    assert len(plotting) == 5
    assert min(plotting) == 1
    assert previews
    assert sum(images) == len(plotting) + len(previews)


@pytest.mark.slow
def test_notebook_shows_the_runs_numbers(executed: nbformat.NotebookNode,
                                         trained_project: Path) -> None:
    """The figures the notebook prints are the run's: read here from the files directly."""
    reporting = trained_project / "data" / "08_reporting"
    weight_sets = pd.read_csv(reporting / "weight_sets.csv")
    served = weight_sets.loc[weight_sets["served"], "weights"].item()
    balance = json.loads((reporting / "class_balance.json").read_text())
    predictions = pd.read_csv(reporting / "test_predictions.csv", dtype=str)
    wrong = int((predictions["actual"] != predictions[f"predicted_{served}"]).sum())
    tuned = yaml.safe_load(
        (trained_project / "data/05_model_input/tuned_parameters.yml").read_text())
    policy = tuned.get("augmentation", {}).get("policy") or json.loads(
        (trained_project / "data/05_model_input/augmentation_spec.json").read_text())["policy"]
    text = "\n".join(cell_text(cell) for cell in code_cells(executed))

    shown_ratio = re.search(r"imbalance ratio \(head / tail\)\s+(\S+)", text)
    assert shown_ratio is not None
    assert shown_ratio.group(1) == f"{balance['imbalance_ratio']:.1f}"
    assert f"Training uses `{policy}`" in text
    assert f"Served weights: **{served}**" in text
    assert f"{wrong} of {len(predictions)} test images wrong" in text
