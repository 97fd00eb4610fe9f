"""ChunkedCSV: chunks appended and committed, readable half-way, resumed by the same run,
started anew by another, completed by the last chunk in one rename."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from visrec.core.chunks import ChunkedCSV, PartialTable, TableChunk

RUN = {"weights_sha256": "abc", "input": "/images", "top_k": (1, 2)}  # a tuple reads back


def _rows(start: int, stop: int) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"x/{i:02d}.png" for i in range(start, stop)],
                         "label_1": ["01"] * (stop - start),
                         "probability_1": [i / 100 for i in range(start, stop)]})


def test_chunks_accumulate_in_the_partial_file_until_the_last_renames_it(tmp_path: Path):
    table = ChunkedCSV(tmp_path / "out" / "t.csv")
    (tmp_path / "out").mkdir()
    table.path.write_text("old,table\n")
    table.append(TableChunk(_rows(0, 3), RUN))
    table.append(TableChunk(_rows(3, 3), RUN))  # an empty chunk changes nothing
    table.append(TableChunk(_rows(3, 5), RUN))
    assert table.path.read_text() == "old,table\n"  # untouched until the end
    state = json.loads(table.state_path.read_text())
    assert (state["rows"], state["bytes"]) == (5, table.partial_path.stat().st_size)
    assert state["columns"] == ["path", "label_1", "probability_1"]
    half_way = pd.read_csv(table.partial_path, dtype={"label_1": str})
    pd.testing.assert_frame_equal(half_way, _rows(0, 5))
    assert table.partial("path") == PartialTable(
        {"weights_sha256": "abc", "input": "/images", "top_k": [1, 2]},
        tuple(f"x/{i:02d}.png" for i in range(5)))
    assert table.partial("path").done_by(RUN) == {f"x/{i:02d}.png" for i in range(5)}
    table.append(TableChunk(_rows(5, 7), RUN, last=True))
    pd.testing.assert_frame_equal(pd.read_csv(table.path, dtype={"label_1": str}),
                                  _rows(0, 7))
    assert sorted(p.name for p in table.path.parent.iterdir()) == ["t.csv"]
    assert table.partial("path") == PartialTable()


def test_a_write_cut_short_is_cut_off_and_the_run_goes_on(tmp_path: Path):
    table = ChunkedCSV(tmp_path / "t.csv")
    table.append(TableChunk(_rows(0, 2), RUN))
    with table.partial_path.open("a") as file:  # a crash in the middle of the next write
        file.write('"x/02, a name with a comma.png')
    assert table.partial("path").keys == ("x/00.png", "x/01.png")  # committed rows only
    table.append(TableChunk(_rows(2, 4), RUN, last=True))
    pd.testing.assert_frame_equal(pd.read_csv(table.path, dtype={"label_1": str}),
                                  _rows(0, 4))


def test_another_run_or_a_damaged_partial_file_starts_anew(tmp_path: Path):
    table = ChunkedCSV(tmp_path / "t.csv")
    table.append(TableChunk(_rows(0, 2), RUN))
    other = {**RUN, "weights_sha256": "def"}
    assert table.partial("path").done_by(other) == frozenset()
    table.append(TableChunk(_rows(5, 6), other))
    pd.testing.assert_frame_equal(pd.read_csv(table.partial_path, dtype={"label_1": str}),
                                  _rows(5, 6))
    table.partial_path.write_text("path\n")  # fewer bytes than committed: not trusted
    assert table.state() is None and table.partial("path") == PartialTable()
    table.state_path.write_text("not json")
    assert table.state() is None
    table.append(TableChunk(_rows(0, 1), other, last=True))
    assert pd.read_csv(table.path)["path"].tolist() == ["x/00.png"]


def test_the_same_run_cannot_change_its_columns(tmp_path: Path):
    table = ChunkedCSV(tmp_path / "t.csv")
    table.append(TableChunk(_rows(0, 1), RUN))
    with pytest.raises(ValueError, match=r"columns \['path'\] cannot follow"):
        table.append(TableChunk(_rows(1, 2)[["path"]], RUN))


def test_a_run_with_no_rows_writes_the_header(tmp_path: Path):
    table = ChunkedCSV(tmp_path / "t.csv")
    table.append(TableChunk(_rows(0, 0), RUN, last=True))
    assert table.path.read_text() == "path,label_1,probability_1\n"
