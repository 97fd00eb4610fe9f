"""End-to-end checks of ``kedro viz run``: the JSON API and the page a real browser renders.

One server is started for the whole module (a few seconds) and shared by its tests.
``kedro viz`` serves from a child process, so the server is started in its own session
and stopped by process group; the teardown then checks that the port and the processes
are really gone, because a leftover child keeps the port and the next run silently moves
to another one.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.browser import playwright_chromium, run_chromium

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = Path(sys.executable).with_name("kedro")
MAX_VIZ_PORT = 49151  # kedro-viz rejects higher ports
# The stage pipelines that `train` is composed of, plus `demo_data` (registered on its own).
STAGE_PIPELINES = ("ingestion", "class_balance", "augmentation", "training", "evaluation",
                   "export")
EXPECTED_PIPELINES = {"train", "demo_data", "predict", *STAGE_PIPELINES, "metric_learning",
                      "embedding", "retrieve"}
# The steps of training, each a node of its own, and what each hands the next.
TRAINING_NODES = ("apply_tuned_parameters", "resolve_model_inputs", "train_model",
                  "retrain_classifiers", "make_weight_sets", "plot_learning_curve")
TRAINING_HAND_OFFS = {("apply_tuned_parameters", "run_training", "train_model"),
                      ("apply_tuned_parameters", "run_balance_plan", "train_model"),
                      ("apply_tuned_parameters", "run_augmentation_spec", "train_model"),
                      ("resolve_model_inputs", "model_inputs", "train_model"),
                      ("train_model", "trained_weights", "retrain_classifiers"),
                      ("retrain_classifiers", "retrained_weights", "make_weight_sets"),
                      ("make_weight_sets", "training_history", "plot_learning_curve")}
# The stages `metric_learning` is composed of, and the hand-offs from the class split to the
# embedder's training and from it to the scores of the embedders.
METRIC_LEARNING_STAGES = ("ingestion", "embedding")
EMBEDDING_HAND_OFFS = {("make_class_split", "class_split", "train_embedder"),
                       ("make_class_split", "metric_learning_manifest", "train_embedder"),
                       ("train_embedder", "trained_embedder", "embed_evaluation_splits"),
                       ("embed_evaluation_splits", "evaluation_embeddings", "score_embedders")}

STARTUP_TIMEOUT_S = 120.0  # first start imports the project's pipelines: seconds, not minutes
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class VizServer:
    """A running ``kedro viz`` server."""

    url: str
    port: int
    log_path: Path

    def get_json(self, path: str) -> Any:
        """Fetch ``path`` (relative, e.g. ``api/main``) from the server, decoded as JSON."""
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.load(response)


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    kedro-viz refuses ports above 49151 ("Cannot allocate an open TCP port"), but Linux
    hands out ports up to 60999 for port 0: retry, then fall back to random ports below
    the kernel's ephemeral range.
    """
    candidates = itertools.chain(itertools.repeat(0, 50), random.sample(range(20000, 32768), 50))
    for candidate in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port = sock.getsockname()[1]
        if port <= MAX_VIZ_PORT:
            return port
    raise RuntimeError(f"no free TCP port at or below {MAX_VIZ_PORT} on 127.0.0.1")


def _port_is_free(port: int) -> bool:
    """Whether a new server could listen on ``port``.

    SO_REUSEADDR, as uvicorn sets it, ignores the TIME_WAIT entries our own requests
    leave behind; the bind still fails while any process listens on the port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _process_group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _log_tail(log_path: Path, chars: int = 4000) -> str:
    return log_path.read_text(errors="replace")[-chars:]


def _wait_until_serving(proc: subprocess.Popen[bytes], server: VizServer) -> None:
    """Poll ``/api/main`` until it answers, failing with the server's output otherwise.

    The server must also report our port: if it were busy, kedro-viz would silently
    move to the next port and we could be talking to someone else's server.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"kedro viz exited with code {proc.returncode} before serving:\n"
                f"{_log_tail(server.log_path)}"
            )
        try:
            server.get_json("api/main")
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as error:
            last_error = error
            time.sleep(0.5)
            continue
        log = server.log_path.read_text(errors="replace")
        if server.url in log:
            return
        if "already in use" in log:  # kedro-viz moved to the next port on its own
            pytest.fail(f"port {server.port} was taken before kedro viz bound it:\n{log}")
        time.sleep(0.5)
    pytest.fail(
        f"kedro viz did not serve {server.url}api/main within {STARTUP_TIMEOUT_S:.0f} s "
        f"(last error: {last_error!r}):\n{_log_tail(server.log_path)}"
    )


def _stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after a timeout."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _process_group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _process_group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)


def _serve(project: Path, log_dir: Path) -> Iterator[VizServer]:
    """Run ``kedro viz run`` in ``project`` on a free port; check its cleanup afterwards."""
    port = _free_port()
    server = VizServer(url=f"http://127.0.0.1:{port}/", port=port,
                       log_path=log_dir / "server.log")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1"}
    command = [str(KEDRO), "viz", "run", "--no-browser", "--host", "127.0.0.1", "--port", str(port)]
    with server.log_path.open("wb") as log:
        # A new session makes the server and its uvicorn child one process group.
        proc = subprocess.Popen(
            command,
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_serving(proc, server)
            yield server
        finally:
            _stop_process_group(proc)

    assert not _process_group_alive(proc.pid), (
        f"processes of kedro viz's group {proc.pid} survived SIGKILL"
    )
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while not _port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _port_is_free(port), f"port {port} is still taken after kedro viz was stopped"


@pytest.fixture(scope="module")
def viz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VizServer]:
    """``kedro viz run`` in the repository, for the module."""
    yield from _serve(PROJECT_ROOT, tmp_path_factory.mktemp("kedro_viz"))


@pytest.fixture(scope="module")
def trained_viz_server(trained_project: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[VizServer]:
    """``kedro viz run`` in a project after a whole run: every dataset has its file."""
    yield from _serve(trained_project, tmp_path_factory.mktemp("kedro_viz_trained"))


@pytest.fixture(scope="module")
def project_pipelines() -> dict[str, Any]:
    """The project's registered pipelines, loaded the way ``kedro`` loads them."""
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT_ROOT)
    return dict(pipelines)


def _task_name(node: dict[str, Any]) -> str:
    # Task nodes carry the short `name` and the namespaced `full_name` (= Kedro's node.name).
    return node.get("full_name") or node["name"]


@pytest.mark.slow
def test_viz_api_serves_registered_pipelines(
    viz_server: VizServer, project_pipelines: dict[str, Any]
) -> None:
    """/api/main lists every registered pipeline, and every node of `train` with its edges."""
    main = viz_server.get_json("api/main")

    pipeline_ids = {pipeline["id"] for pipeline in main["pipelines"]}
    assert pipeline_ids >= EXPECTED_PIPELINES
    assert pipeline_ids == set(project_pipelines)

    train_nodes = project_pipelines["train"].nodes
    expected_names = {node.name for node in train_nodes}
    assert {"list_images", "check_images", "curate_images", *TRAINING_NODES, "score_splits",
            "fit_temperatures", "choose_served_model", "export_model"} <= expected_names

    # /api/main shows `__default__`, but every node says which pipelines it belongs to.
    main_tasks = {_task_name(node): node for node in main["nodes"] if node["type"] == "task"}
    missing = expected_names - set(main_tasks)
    assert not missing, f"train nodes missing from /api/main: {sorted(missing)}"
    for name in expected_names:
        assert "train" in main_tasks[name]["pipelines"], (name, main_tasks[name]["pipelines"])

    # The `train` view holds exactly train's nodes, wired to their inputs and outputs.
    train = viz_server.get_json("api/pipelines/train")
    assert train["selected_pipeline"] == "train"
    tasks = {_task_name(node): node["id"] for node in train["nodes"] if node["type"] == "task"}
    assert set(tasks) == expected_names
    datasets = {node["name"]: node["id"] for node in train["nodes"] if node["type"] != "task"}
    edges = {(edge["source"], edge["target"]) for edge in train["edges"]}
    for node in train_nodes:
        for dataset in node.inputs:
            assert (datasets[dataset], tasks[node.name]) in edges, (dataset, node.name)
        for dataset in node.outputs:
            assert (tasks[node.name], datasets[dataset]) in edges, (node.name, dataset)

    # The tuning is a pipeline of its own: its nodes in one namespace, the study and the
    # chosen settings as datasets, the settings read by training.
    tree = train["modular_pipelines"]
    children = {child["id"] for child in tree["tuning"]["children"]}
    tuning_tasks = {name for name in tasks if name.startswith("tuning.")}
    assert tuning_tasks == {"tuning.plan_search", "tuning.run_search", "tuning.plot_search",
                            "tuning.preview_policies"}
    assert {tasks[name] for name in tuning_tasks} <= children
    assert (datasets["tuning_study"], tasks["tuning.run_search"]) in edges
    assert (tasks["tuning.run_search"], datasets["tuned_parameters"]) in edges
    assert (datasets["tuned_parameters"], tasks["apply_tuned_parameters"]) in edges
    _check_training_steps(viz_server, project_pipelines)


def _check_training_steps(viz_server: VizServer, project_pipelines: dict[str, Any]) -> None:
    """The `training` view draws each step of training as a node with its inputs and
    outputs, the hand-offs between the steps as datasets."""
    training = viz_server.get_json("api/pipelines/training")
    assert training["selected_pipeline"] == "training"
    tasks = {_task_name(node): node["id"] for node in training["nodes"]
             if node["type"] == "task"}
    assert len(tasks) >= 3, f"the training pipeline shows {len(tasks)} node(s): {tasks}"
    assert set(TRAINING_NODES) <= set(tasks), sorted(tasks)
    datasets = {node["name"]: node["id"] for node in training["nodes"]
                if node["type"] != "task"}
    edges = {(edge["source"], edge["target"]) for edge in training["edges"]}
    nodes = {node.name: node for node in project_pipelines["training"].nodes}
    for name in TRAINING_NODES:
        assert nodes[name].inputs, f"{name} has no inputs"
        for dataset in nodes[name].inputs:
            assert (datasets[dataset], tasks[name]) in edges, (dataset, name)
        for dataset in nodes[name].outputs:
            assert (tasks[name], datasets[dataset]) in edges, (name, dataset)
    for source, dataset, target in TRAINING_HAND_OFFS:
        assert (tasks[source], datasets[dataset]) in edges, (source, dataset)
        assert (datasets[dataset], tasks[target]) in edges, (dataset, target)
    # Every step after the run reads the images and the run's settings: the training block,
    # balance plan and policy with the tuning's choice applied.
    for name in ("train_model", "retrain_classifiers", "make_weight_sets"):
        assert {"image_manifest", "run_balance_plan", "run_augmentation_spec", "model_inputs",
                "run_training", "params:seed"} <= set(nodes[name].inputs), name


@dataclass(frozen=True)
class _PipelineView:
    """A pipeline as /api/pipelines/<id> draws it: task and dataset node ids by name, and
    the edges between node ids."""

    tasks: dict[str, str]
    datasets: dict[str, str]
    edges: set[tuple[str, str]]

    def assert_wired(self, nodes: Any) -> None:
        """Every node of ``nodes`` is drawn with an edge from each input, to each output."""
        for node in nodes:
            for dataset in node.inputs:
                assert (self.datasets[dataset], self.tasks[node.name]) in self.edges, (
                    dataset, node.name)
            for dataset in node.outputs:
                assert (self.tasks[node.name], self.datasets[dataset]) in self.edges, (
                    node.name, dataset)

    def reachable(self, source: str) -> set[str]:
        """The ids of the nodes downstream of node id ``source``."""
        seen, frontier = set(), [source]
        while frontier:
            current = frontier.pop()
            for start, end in self.edges:
                if start == current and end not in seen:
                    seen.add(end)
                    frontier.append(end)
        return seen


def _pipeline_view(viz_server: VizServer, pipeline_id: str) -> _PipelineView:
    view = viz_server.get_json(f"api/pipelines/{pipeline_id}")
    assert view["selected_pipeline"] == pipeline_id
    return _PipelineView(
        tasks={_task_name(node): node["id"] for node in view["nodes"] if node["type"] == "task"},
        datasets={node["name"]: node["id"] for node in view["nodes"] if node["type"] != "task"},
        edges={(edge["source"], edge["target"]) for edge in view["edges"]},
    )


@pytest.mark.slow
def test_viz_api_serves_metric_learning_pipeline(
    viz_server: VizServer, project_pipelines: dict[str, Any]
) -> None:
    """`metric_learning` draws ingestion's nodes and the embedding stage's, wired to their
    datasets; in `embedding` the class split feeds the embedder's training, and the trained
    embedder feeds the scores."""
    registered = project_pipelines["metric_learning"].nodes
    expected_names = {node.name for node in registered}
    stage_names = {node.name for stage in METRIC_LEARNING_STAGES
                   for node in project_pipelines[stage].nodes}
    assert expected_names == stage_names
    assert {"list_images", "curate_images", "make_class_split", "train_embedder",
            "train_cross_entropy_baseline", "score_embedders",
            "export_embedder"} <= expected_names

    metric_learning = _pipeline_view(viz_server, "metric_learning")
    assert set(metric_learning.tasks) == expected_names
    metric_learning.assert_wired(registered)

    embedding = _pipeline_view(viz_server, "embedding")
    nodes = project_pipelines["embedding"].nodes
    assert set(embedding.tasks) == {node.name for node in nodes}
    embedding.assert_wired(nodes)
    tasks, datasets, edges = embedding.tasks, embedding.datasets, embedding.edges
    for source, dataset, target in EMBEDDING_HAND_OFFS:
        assert (tasks[source], datasets[dataset]) in edges, (source, dataset)
        assert (datasets[dataset], tasks[target]) in edges, (dataset, target)
    # What score_embedders reads of the training run comes from train_embedder.
    downstream = embedding.reachable(tasks["train_embedder"])
    score_inputs = next(node for node in nodes if node.name == "score_embedders").inputs
    trained = [name for name in score_inputs if datasets[name] in downstream]
    assert trained == ["evaluation_embeddings"], (score_inputs, trained)
    assert tasks["score_embedders"] in downstream


class _GraphNodeCollector(HTMLParser):
    """Collects the full names of the nodes drawn in Kedro-Viz's SVG graph, by type
    (``task``, ``modularPipeline`` for a collapsed namespace, ``data``, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, set[str]] = {}

    @property
    def task_names(self) -> set[str]:
        return self.names.get("task", set())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        kind, name = attributes.get("data-node-type"), attributes.get("data-node-fullname")
        if kind and name:
            self.names.setdefault(kind, set()).add(name)


@pytest.mark.slow
def test_viz_page_draws_train_graph_in_chromium(
    chromium: Path,
    viz_server: VizServer,
    project_pipelines: dict[str, Any],
    tmp_path: Path,
) -> None:
    """Headless Chromium runs the app's JavaScript and draws every node of `train`."""
    from PIL import Image

    page = viz_server.url + "?pid=train"  # open the `train` pipeline, not `__default__`
    nodes = project_pipelines["train"].nodes
    # Kedro-Viz draws a namespace (the tuning) as one collapsed node.
    expected_names = {node.name for node in nodes if not node.namespace}
    expected_namespaces = {node.namespace.split(".")[0] for node in nodes if node.namespace}
    assert "tuning" in expected_namespaces

    dom = run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", page).stdout
    collector = _GraphNodeCollector()
    collector.feed(dom)
    missing = expected_names - collector.task_names
    assert not missing, (
        f"train nodes not drawn in the graph: {sorted(missing)}; "
        f"drawn: {sorted(collector.task_names)}"
    )
    drawn_namespaces = collector.names.get("modularPipeline", set())
    assert expected_namespaces <= drawn_namespaces, (
        f"namespaces not drawn: {sorted(expected_namespaces - drawn_namespaces)}; "
        f"drawn nodes by type: {collector.names}"
    )

    screenshot = tmp_path / "kedro-viz-train.png"
    run_chromium(chromium, tmp_path / "profile-png", f"--screenshot={screenshot}", page)
    assert screenshot.stat().st_size > 20_000  # a blank 1600x1000 PNG is a few kB
    with Image.open(screenshot) as image:
        assert image.size == (1600, 1000)
        pixels = image.width * image.height
        colours = image.convert("RGB").getcolors(maxcolors=pixels)
    # The drawn graph (anti-aliased text, edges, yellow highlights) has thousands of colours;
    # a blank or error page has a handful and one colour covering almost everything.
    assert len(colours) > 500, f"only {len(colours)} colours in {screenshot}"
    assert max(count for count, _ in colours) < 0.9 * pixels, f"{screenshot} is nearly flat"


@pytest.mark.slow
def test_viz_page_draws_metric_learning_graph_in_chromium(
    chromium: Path,
    viz_server: VizServer,
    project_pipelines: dict[str, Any],
    tmp_path: Path,
) -> None:
    """Headless Chromium draws every node of `metric_learning` (no namespaces there)."""
    nodes = project_pipelines["metric_learning"].nodes
    assert not [node.name for node in nodes if node.namespace]
    expected_names = {node.name for node in nodes}
    page = viz_server.url + "?pid=metric_learning"
    dom = run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", page).stdout
    collector = _GraphNodeCollector()
    collector.feed(dom)
    assert collector.task_names == expected_names, (
        f"missing: {sorted(expected_names - collector.task_names)}; "
        f"not of metric_learning: {sorted(collector.task_names - expected_names)}"
    )


# A table, a metric file and a figure of `train`, the preview kedro viz gives each, and the
# wrapped type it names.
PREVIEWED = {"training_history": ("TablePreview", "CSVDataset"),
             "metrics": ("JSONPreview", "JSONDataset"),
             "confusion_matrix": ("ImagePreview", "MatplotlibDataset")}


@pytest.mark.slow
def test_viz_api_previews_tables_metrics_and_figures(trained_viz_server: VizServer,
                                                     trained_project: Path) -> None:
    """/api/nodes/<id> of a CSV, a JSON metric file and a PNG carries a preview of the file
    on disk, names the wrapped dataset type, and every dataset of `train` has its layer."""
    import base64

    import pandas as pd
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT_ROOT)
    view = trained_viz_server.get_json("api/pipelines/train")
    datasets = {node["name"]: node for node in view["nodes"] if node["type"] == "data"}
    for name, (kind, wrapped) in PREVIEWED.items():
        metadata = trained_viz_server.get_json(f"api/nodes/{datasets[name]['id']}")
        assert metadata.get("preview_type") == kind, (name, metadata)
        assert metadata["type"] == f"datasets.atomic.AtomicDataset[{wrapped}]", metadata["type"]
        path = trained_project / metadata["filepath"]
        if kind == "TablePreview":
            table = pd.read_csv(path)
            assert metadata["preview"]["columns"] == list(table.columns)
            assert metadata["preview"]["data"][0] == pytest.approx(table.iloc[0].tolist())
        elif kind == "JSONPreview":
            assert json.loads(metadata["preview"]) == json.loads(path.read_text())
        else:
            assert base64.b64decode(metadata["preview"]) == path.read_bytes()
    # Layers: kedro viz orders them (and draws none when they form a cycle).
    train_datasets = pipelines["train"].datasets()
    used = {node["layer"] for name, node in datasets.items()
            if name in train_datasets and node.get("layer")}
    assert used <= set(view["layers"]) and len(view["layers"]) >= 5, (used, view["layers"])
    unlayered = sorted(name for name, node in datasets.items()
                       if name in train_datasets and not name.startswith("params:")
                       and not node.get("layer"))
    assert not unlayered, f"datasets of train without a layer: {unlayered}"
    assert datasets["confusion_matrix"]["layer"] == "reporting"
    assert datasets["image_manifest"]["layer"] == "intermediate"


@pytest.mark.slow
def test_viz_page_shows_a_figure_preview_in_chromium(chromium: Path,
                                                    trained_viz_server: VizServer,
                                                    trained_project: Path) -> None:
    """A click on the confusion matrix in the drawn `train` graph opens its metadata panel,
    which shows the figure: the PNG on disk, inlined in the page (Chromium, Playwright)."""
    import base64

    png = base64.b64encode(
        (trained_project / "data/08_reporting/confusion_matrix.png").read_bytes()).decode()
    with playwright_chromium(chromium) as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(trained_viz_server.url + "?pid=train", timeout=120_000)
        node = page.locator('[data-node-fullname="confusion_matrix"]').first
        node.wait_for(timeout=120_000)
        node.dispatch_event("click")  # as a click; the graph may lie outside the viewport
        preview = page.locator("img.pipeline-metadata__plot-image").first
        preview.wait_for(timeout=60_000)
        assert preview.get_attribute("src") == f"data:image/png;base64,{png}"
        page.close()
