"""Render ``notebooks/exploration.ipynb`` for the docs: run it on the project's last run
and write it as Markdown with its figures, ``docs/exploration.md`` and
``docs/exploration_files/``:

    make run && python tools/render_notebook.py     # or: make notebook-docs

The notebook itself is committed without outputs (small diffs); this page shows what it
prints and draws on the demo. ``tests/test_notebook.py`` checks that the page has every
code cell of the notebook, in order, and every figure it links.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "exploration.ipynb"
OUTPUT = ROOT / "docs" / "exploration.md"
# Kedro's rich logging colours text and adds terminal hyperlinks, and in a notebook shows
# each log record as HTML (with this machine's paths): the page keeps the cells' own output.
ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;[^\x1b]*\x1b\\")
RICH_LOG = '<pre style="white-space:pre;overflow-x:auto;line-height:normal;'


def _is_log_record(output: nbformat.NotebookNode) -> bool:
    return output.get("output_type") == "display_data" and output.get(
        "data", {}).get("text/html", "").startswith(RICH_LOG)
HEADER = """\
<!-- Rendered from notebooks/exploration.ipynb by `make notebook-docs` (after `make run`);
     do not edit: change the notebook and render it again. -->

"""


def executed(notebook_path: Path) -> nbformat.NotebookNode:
    """The notebook run top to bottom from its folder (Kedro's extension finds the project
    upwards from there), without log records, its text outputs without terminal colours."""
    notebook = nbformat.read(notebook_path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
    for cell in notebook.cells:
        if "outputs" in cell:
            cell.outputs = [output for output in cell.outputs if not _is_log_record(output)]
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = ANSI.sub("", output["text"])
            data = output.get("data", {})
            for kind in ("text/plain", "text/markdown"):
                if kind in data:
                    data[kind] = ANSI.sub("", data[kind])
    return notebook


def render(notebook: nbformat.NotebookNode, output: Path) -> None:
    """Write ``notebook`` as Markdown to ``output``, its figures in ``<stem>_files/``
    beside it (replaced as a whole)."""
    files = f"{output.stem}_files"
    body, resources = MarkdownExporter().from_notebook_node(
        notebook, resources={"output_files_dir": files})
    folder = output.parent / files
    shutil.rmtree(folder, ignore_errors=True)
    for name, content in resources["outputs"].items():
        target = output.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    # The project's folder on this machine, as the notebook prints it: the page shows "."
    body = body.replace(f"`{ROOT}`", "`.`")
    output.write_text(HEADER + body.strip() + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run and render the notebook."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    render(executed(args.notebook), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
