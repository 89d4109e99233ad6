"""Writing tables: a file appears whole or not at all."""

import pandas as pd
import pytest

from riskcast.data.io import ParquetParts, read_any


def test_parts_become_one_file_with_the_first_parts_types(tmp_path):
    path = tmp_path / "t.parquet"
    with ParquetParts(path) as out:
        out.append(pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}))
        assert not path.exists()  # nothing visible while it is being written
        out.append(pd.DataFrame({"a": [3], "b": [2]}))  # int column cast to the first part's float
    assert out.rows == 3
    got = read_any(path)
    pd.testing.assert_frame_equal(got, pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.0]}))


def test_a_failure_midway_leaves_no_file_and_no_leftovers(tmp_path):
    path = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError, match="disk gone"):
        with ParquetParts(path) as out:
            out.append(pd.DataFrame({"a": [1, 2]}))
            raise RuntimeError("disk gone")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_keeps_the_previous_file(tmp_path):
    path = tmp_path / "t.parquet"
    with ParquetParts(path) as out:
        out.append(pd.DataFrame({"a": [1]}))
    with pytest.raises(RuntimeError):
        with ParquetParts(path) as out:
            out.append(pd.DataFrame({"a": [7, 8]}))
            raise RuntimeError("stop")
    pd.testing.assert_frame_equal(read_any(path), pd.DataFrame({"a": [1]}))
