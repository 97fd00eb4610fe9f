"""notebooks/exploration.ipynb: committed clean, and executed on a trained project it shows
that project's numbers (served weights, imbalance ratio, mistakes) and draws its figures;
`kedro jupyter lab` serves it and runs it with the project's kernel."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from tornado.websocket import websocket_connect  # Jupyter's server has it

from tests.cli import ENV, KEDRO
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


def test_the_docs_render_every_cell_of_the_notebook() -> None:
    """docs/exploration.md (tools/render_notebook.py) has each code cell of the committed
    notebook, in order, each figure it links, and no figure it does not."""
    docs = PROJECT_ROOT / "docs"
    page = (docs / "exploration.md").read_text(encoding="utf-8")
    cells = code_cells(nbformat.read(NOTEBOOK, as_version=4))
    position = 0
    for cell in cells:
        found = page.find(f"```python\n{cell.source}\n```", position)
        assert found >= position, f"not rendered (make notebook-docs): {cell.source[:80]!r}"
        position = found
    figures = re.findall(r"!\[[^\]]*\]\((exploration_files/[^)]+)\)", page)
    assert len(figures) >= sum("plt.show()" in cell.source for cell in cells)
    assert sorted(figures) == sorted(
        path.relative_to(docs).as_posix() for path in (docs / "exploration_files").iterdir())
    assert "](exploration.md)" in (docs / "evaluation.md").read_text(encoding="utf-8")


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


class JupyterLab:
    """A running `kedro jupyter lab`: its address and token."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def request(self, path: str, body: dict | None = None) -> tuple[int, bytes]:
        """GET ``path`` (POST ``body`` as JSON when given): the status and the body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method="GET" if body is None else "POST",
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, path: str, body: dict | None = None) -> dict:
        status, content = self.request(path, body)
        assert status in (200, 201), (path, status, content[:500])
        return json.loads(content)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter_lab(trained_project: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """`kedro jupyter lab` in the trained project, its kernel spec, settings and runtime
    files in a temporary folder (not the user's), on a free port of 127.0.0.1."""
    folder = trained_project / "notebooks"
    folder.mkdir(exist_ok=True)
    shutil.copy(NOTEBOOK, folder)
    home = tmp_path_factory.mktemp("jupyter")
    environment = os.environ | ENV | {f"JUPYTER_{name}_DIR": str(home / name.lower())
                                      for name in ("DATA", "CONFIG", "RUNTIME")}
    token, port = secrets.token_hex(16), _free_port()
    command = [KEDRO, "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--port-retries=0", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:  # containers and CI run as root, which Jupyter refuses by default
        command.append("--allow-root")
    log = home / "lab.log"
    with log.open("w") as stream:
        process = subprocess.Popen(command, cwd=trained_project, env=environment,
                                   stdout=stream, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    lab = JupyterLab(f"http://127.0.0.1:{port}/", token)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"kedro jupyter lab did not serve:\n{log.read_text()[-4000:]}")
            try:
                if lab.request("api/status")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        yield lab
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - Jupyter stops on SIGTERM
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def _execute(lab: JupyterLab, kernel: str, sources: list[str]) -> list[str]:
    """Run ``sources`` one after another in ``kernel`` through the server's websocket, as
    JupyterLab does; the text each printed or returned. Fails on a cell's error."""
    address = f"{lab.url.replace('http', 'ws', 1)}api/kernels/{kernel}/channels"
    channel = await websocket_connect(f"{address}?token={lab.token}")
    session, texts = uuid.uuid4().hex, []
    for source in sources:
        message_id = uuid.uuid4().hex
        await channel.write_message(json.dumps({
            "header": {"msg_id": message_id, "msg_type": "execute_request", "session": session,
                       "username": "test", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": source, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        text, replied, idle = [], False, False
        while not (replied and idle):
            raw = await asyncio.wait_for(channel.read_message(), timeout=300)
            assert isinstance(raw, str), "the kernel's channel closed"
            message = json.loads(raw)
            if message["parent_header"].get("msg_id") != message_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                text.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                text.append(content["data"].get("text/markdown")
                            or content["data"].get("text/plain", ""))
            elif kind == "error":
                pytest.fail(f"cell {source[:60]!r} raised {content['ename']}: "
                            f"{content['evalue']}")
            replied |= kind == "execute_reply"
            idle |= kind == "status" and content["execution_state"] == "idle"
        texts.append(ANSI.sub("", "".join(text)))
    channel.close()
    return texts


@pytest.mark.slow
def test_kedro_jupyter_lab_runs_the_notebook(jupyter_lab: JupyterLab) -> None:
    """JupyterLab answers with the project's kernel as the default; the notebook, opened
    as JupyterLab opens it (a session in notebooks/ with the kernel its metadata names),
    runs top to bottom and shows the run's served weights."""
    status, page = jupyter_lab.request("lab")
    assert status == 200 and b"<title>JupyterLab</title>" in page
    specs = jupyter_lab.json("api/kernelspecs")
    assert specs["default"] == "kedro_visrec"
    assert specs["kernelspecs"]["kedro_visrec"]["spec"]["argv"][0] == sys.executable
    path = f"notebooks/{NOTEBOOK.name}"
    notebook = nbformat.from_dict(jupyter_lab.json(f"api/contents/{path}")["content"])
    kernel = notebook.metadata.kernelspec.name
    started = jupyter_lab.json("api/sessions", {
        "path": path, "name": NOTEBOOK.name, "type": "notebook", "kernel": {"name": kernel}})
    texts = asyncio.run(_execute(jupyter_lab, started["kernel"]["id"],
                                 [cell.source for cell in code_cells(notebook)]))
    assert len(texts) == len(code_cells(notebook))
    assert re.search(r"Served weights: \*\*(final|swa|ema)\*\*", "\n".join(texts))
