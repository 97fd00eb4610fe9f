"""`visrec serve` in a real browser: Chromium, driven by Playwright, uploads an image to the
page and reads the top class; non-images and oversized files are refused with a message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.browser import playwright_chromium
from tests.cli import ENV

pytestmark = pytest.mark.slow

VISREC = str(Path(sys.executable).with_name("visrec"))
MAX_UPLOAD_MB = 0.05  # 52,428 bytes: the demo PNGs are far below it
STARTUP_TIMEOUT_S = 120.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def server(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``visrec serve`` of the trained project, started from another folder."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with log.open("w") as stream:
        process = subprocess.Popen(
            [VISREC, "serve", "--project", str(trained_project), "--port", str(port),
             "--max-upload-mb", str(MAX_UPLOAD_MB)],
            cwd=elsewhere, env=os.environ | ENV, stdout=stream, stderr=subprocess.STDOUT,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert process.poll() is None, f"visrec serve exited:\n{log.read_text()}"
            try:
                _get(url + "api/model")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"no answer on {url}:\n{log.read_text()}"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator:
    with playwright_chromium(chromium) as launched:
        yield launched


def _served_test_predictions(project: Path) -> pd.DataFrame:
    served = json.loads((project / "data/06_models/served/config.json").read_text())
    table = pd.read_csv(project / "data/08_reporting/test_predictions.csv", dtype=str)
    name = served["served_from"]
    return table.rename(columns={f"predicted_{name}": "predicted",
                                 f"confidence_{name}": "confidence"})


def test_the_page_shows_the_top_class_of_an_uploaded_image(server, browser, trained_project):
    tested = _served_test_predictions(trained_project).iloc[0]
    image = trained_project / "data/01_raw/demo" / tested["path"]
    page = browser.new_page()
    page.goto(server)
    assert "Try the model" in page.title() + page.text_content("h1")
    page.set_input_files("#files", str(image))
    top = page.locator(f'.result[data-file="{image.name}"] tr.top')
    top.wait_for(timeout=60_000)
    assert top.locator(".label").text_content() == tested["predicted"]
    shown = float(top.locator(".probability").text_content().removesuffix(" %"))
    assert shown == pytest.approx(100 * float(tested["confidence"]), abs=0.051)
    page.close()


def test_the_page_refuses_a_file_that_is_not_an_image(server, browser, tmp_path):
    notes = tmp_path / "notes.png"  # an image's name, a text's bytes
    notes.write_text("these are not pixels\n")
    page = browser.new_page()
    page.goto(server)
    page.set_input_files("#files", str(notes))
    error = page.locator('.result[data-file="notes.png"] .error')
    error.wait_for(timeout=60_000)
    assert error.text_content().startswith("not an image visrec can read (not_an_image")
    page.close()


def test_the_page_refuses_an_oversized_file(server, browser, tmp_path):
    large = tmp_path / "large.png"
    large.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(int(MAX_UPLOAD_MB * 2**20)))
    page = browser.new_page()
    page.goto(server)
    page.set_input_files("#files", str(large))
    error = page.locator('.result[data-file="large.png"] .error')
    error.wait_for(timeout=60_000)
    assert "the file is too large" in error.text_content()
    assert "visrec serve --max-upload-mb" in error.text_content()
    page.close()
    # The API refuses it too, from its Content-Length, before reading the body.
    request = urllib.request.Request(server + "api/predict", data=large.read_bytes(),
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert "too large" in json.load(refused.value)["error"]


def test_the_server_listens_on_the_loopback_only(server):
    model = _get(server + "api/model")
    assert model["architecture"] and len(model["classes"]) == 10
    port = int(server.rsplit(":", 1)[1].strip("/"))
    import socket

    addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)
                 if info[0] == socket.AF_INET} - {"127.0.0.1", "127.0.1.1"}
    for address in addresses:  # the machine's other addresses reach nothing
        with socket.socket() as sock:
            sock.settimeout(2)
            assert sock.connect_ex((address, port)) != 0, address
