"""The one Markdown table helper of Lookbook's reports and benchmarks.

    markdown_table(["method", "MAP@12"], [["als", "0.0213"]])

gives a table whose columns are padded to a common width (it reads well in a terminal too);
``padded=False`` gives the compact ``| a | b |`` / ``|---|---|`` form of ``report.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown_table"]


def markdown_table(
    headers: Sequence[object], rows: Sequence[Sequence[object]], *, padded: bool = True
) -> str:
    """A Markdown table of ``rows`` under ``headers`` (cells are ``str()``-ed), one line per row."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    if any(len(row) != len(headers) for row in cells):
        raise ValueError(f"every row needs {len(headers)} cells, as the headers")
    if padded:
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    else:
        widths = [0] * len(headers)
        rule = "|" + "|".join("---" for _ in headers) + "|"
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return "\n".join([lines[0], rule, *lines[1:]])
