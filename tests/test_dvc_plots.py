"""``dvc plots show`` renders offline with the template of ``tools/plots_template.py``.

In a throwaway git + DVC repository with three plots (a CSV line plot, a ``confusion``
matrix and a ``bar_horizontal_sorted`` bar chart), the page DVC writes with the
project's ``.dvc/config``, the generated template and the ``.dvc/config.local``
setting that ``make install`` adds is opened in headless Chromium with
every host name unresolvable: vega-embed must draw each plot. DVC's default page, whose
vega comes from a CDN, is the negative control: under the same flags it draws nothing.

The template is built by the script itself; its npm tarballs are cached (by default in
``~/.cache/visrec/npm``), so only the first run ever needs the npm registry.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from tests.browser import run_chromium
from tests.cli import ENV
from tests.conftest import PROJECT_ROOT
from tools.plots_template import DEFAULT_OUTPUT, PACKAGES

pytestmark = pytest.mark.slow

DVC = str(Path(sys.executable).with_name("dvc"))
TEMPLATE_SCRIPT = PROJECT_ROOT / "tools" / "plots_template.py"
# Every host name fails to resolve: a page that needs the network cannot load anything.
NO_NETWORK = "--host-resolver-rules=MAP * ~NOTFOUND"

# file name -> (CSV content, the plot's properties in dvc.yaml)
PLOTS: dict[str, tuple[str, dict[str, str]]] = {
    "history.csv": ("epoch,loss\n0,1.0\n1,0.6\n2,0.45\n3,0.4\n", {"x": "epoch", "y": "loss"}),
    "predictions.csv": (
        "actual,predicted\ncat,cat\ncat,dog\ndog,dog\nbird,bird\nbird,cat\n",
        {"template": "confusion", "x": "actual", "y": "predicted"},
    ),
    "class_counts.csv": (
        "label,count\ncat,5\ndog,9\nbird,2\n",
        {"template": "bar_horizontal_sorted", "x": "count", "y": "label"},
    ),
}


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``cwd``; fail the test with its output when it fails."""
    result = subprocess.run(command, cwd=cwd, env=os.environ | ENV, capture_output=True,
                            text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({result.returncode}):\n"
                    f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def offline_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template, built by the script into a temporary folder (npm tarballs cached)."""
    output = tmp_path_factory.mktemp("template") / "offline.html"
    _run([sys.executable, str(TEMPLATE_SCRIPT), "--output", str(output)], PROJECT_ROOT)
    return output


@pytest.fixture
def plots_repo(tmp_path: Path) -> Path:
    """A fresh git + DVC repository whose dvc.yaml declares the plots of ``PLOTS``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _run(["git", "init", "--quiet"], repo)
    _run([DVC, "init", "--quiet"], repo)
    for name, (content, _) in PLOTS.items():
        (repo / name).write_text(content)
    plots = [{name: properties} for name, (_, properties) in PLOTS.items()]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}, sort_keys=False))
    return repo


class _PageCollector(HTMLParser):
    """The ``src`` of every ``<script>``, the ids of DVC's plot divs, and the ``marks``
    elements (vega's ``<canvas>`` or ``<svg>``) drawn inside each plot div."""

    def __init__(self, plot_ids: set[str] | None = None) -> None:
        super().__init__()
        self.plot_ids = plot_ids
        self.script_sources: list[str] = []
        self.div_ids: list[str] = []
        self.marks: Counter[str] = Counter()
        self.mark_sizes: list[tuple[int, int]] = []
        self._current_plot: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.script_sources.append(attributes["src"] or "")
        element_id = attributes.get("id")
        if tag == "div" and element_id:
            self.div_ids.append(element_id)
            # DVC's plot divs are siblings: a mark belongs to the last plot div opened.
            if self.plot_ids is not None and element_id in self.plot_ids:
                self._current_plot = element_id
        if "marks" in (attributes.get("class") or "").split() and self._current_plot:
            self.marks[self._current_plot] += 1
            self.mark_sizes.append((int(float(attributes.get("width") or 0)),
                                    int(float(attributes.get("height") or 0))))


def _parse(html: str, plot_ids: set[str] | None = None) -> _PageCollector:
    collector = _PageCollector(plot_ids)
    collector.feed(html)
    return collector


def _show(repo: Path, *args: str) -> tuple[Path, _PageCollector]:
    """``dvc plots show ARGS`` in ``repo``: the page it wrote and what the page holds."""
    stdout = _run([DVC, "plots", "show", *args], repo).stdout
    page = Path(stdout.strip().splitlines()[-1].removeprefix("file://"))
    assert page.is_file(), f"dvc plots show printed {stdout!r}, not a page"
    collector = _parse(page.read_text(encoding="utf-8"))
    assert len(collector.div_ids) == len(PLOTS), (page, collector.div_ids)
    return page, collector


def _render_offline(chromium: Path, profile: Path, page: Path,
                    plot_ids: set[str]) -> _PageCollector:
    """The DOM of ``page`` after headless Chromium ran its scripts with no network."""
    dom = run_chromium(chromium, profile, NO_NETWORK, "--dump-dom", page.as_uri()).stdout
    return _parse(dom, plot_ids)


def test_pinned_versions_are_the_ones_dvc_render_loads() -> None:
    """The template inlines the vega, vega-lite and vega-embed versions that dvc-render
    takes from its CDN: upgrading dvc-render to other versions fails here first."""
    from dvc_render.vega import VegaRenderer

    cdn = set(re.findall(r"cdn\.jsdelivr\.net/npm/([\w-]+@[\w.-]+)", VegaRenderer.SCRIPTS))
    assert cdn == {package.spec for package in PACKAGES}


def test_template_script_is_idempotent(offline_template: Path) -> None:
    """A rerun (offline, from the cache) leaves an up-to-date template untouched."""
    before = offline_template.stat().st_mtime_ns
    result = _run([sys.executable, str(TEMPLATE_SCRIPT), "--output", str(offline_template)],
                  PROJECT_ROOT)
    assert "up to date" in result.stderr
    assert "fetching" not in result.stderr  # the tarballs came from the cache
    assert offline_template.stat().st_mtime_ns == before
    template = offline_template.read_text(encoding="utf-8")
    # DVC replaces {scripts} with its CDN tags: the template must not ask for them.
    assert "{plot_divs}" in template
    assert "{scripts}" not in template


def test_dvc_plots_show_renders_offline(
    chromium: Path, offline_template: Path, plots_repo: Path, tmp_path: Path
) -> None:
    """With the project's .dvc/config and the template where `make install` writes it,
    a plain `dvc plots show` page loads nothing from the network and draws every plot;
    DVC's default page draws none of them under the same flags."""
    from PIL import Image

    # Negative control first, while the repository has `dvc init`'s own config.
    cdn_page, cdn_html = _show(plots_repo, "--out", "cdn_plots")
    assert any(src.startswith("https://") for src in cdn_html.script_sources), (
        f"DVC's default page loads no remote script: {cdn_html.script_sources}"
    )

    # A clone of the project after `make install`: the project's config, the generated
    # template, and the local setting `make install` adds once the template exists.
    shutil.copy(PROJECT_ROOT / ".dvc" / "config", plots_repo / ".dvc" / "config")
    installed = plots_repo / DEFAULT_OUTPUT.relative_to(PROJECT_ROOT)
    installed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(offline_template, installed)
    rule = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "dvc config --local plots.html_template plots/offline.html" in rule
    _run([DVC, "config", "--local", "plots.html_template", "plots/offline.html"], plots_repo)
    page, html = _show(plots_repo)
    assert html.script_sources == [], f"the offline page loads scripts: {html.script_sources}"
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//",
                         page.read_text(encoding="utf-8"), re.IGNORECASE)
    plot_ids = set(html.div_ids)

    drawn = _render_offline(chromium, tmp_path / "profile", page, plot_ids)
    assert drawn.marks == dict.fromkeys(plot_ids, 1), (
        f"plots drawn offline: {dict(drawn.marks)}, expected one each of {sorted(plot_ids)}"
    )
    # vega sizes the canvas to the chart, axes and legend: a few hundred pixels a side.
    assert all(width >= 100 and height >= 100 for width, height in drawn.mark_sizes), (
        drawn.mark_sizes
    )

    control = _render_offline(chromium, tmp_path / "profile-cdn", cdn_page, plot_ids)
    assert sum(control.marks.values()) == 0, (
        f"DVC's CDN page drew plots with no network: {dict(control.marks)}"
    )

    # The pixels: drawn charts (anti-aliased text, coloured marks) have hundreds of colours.
    screenshot = tmp_path / "plots.png"
    run_chromium(chromium, tmp_path / "profile-png", NO_NETWORK,
                  f"--screenshot={screenshot}", page.as_uri())
    with Image.open(screenshot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=image.width * image.height)
    assert len(colours) > 100, f"only {len(colours)} colours in {screenshot}"
