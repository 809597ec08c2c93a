"""The one Markdown table helper: the padded form of the benchmarks, the compact one of report.md."""

from __future__ import annotations

import pytest

from training.report import markdown_table


def test_padded_table_aligns_columns() -> None:
    text = markdown_table(["model", "MAP"], [["als", 0.25], ["popularity", "–"]])
    assert text == (
        "| model      | MAP  |\n|------------|------|\n| als        | 0.25 |\n| popularity | –    |"
    )


def test_compact_table() -> None:
    text = markdown_table(["method", "MAP@12"], [["blend", "0.0300"], ["", "x"]], padded=False)
    assert text == "| method | MAP@12 |\n|---|---|\n| blend | 0.0300 |\n|  | x |"


def test_rows_must_match_the_headers() -> None:
    with pytest.raises(ValueError, match="2 cells"):
        markdown_table(["a", "b"], [["only one"]])
