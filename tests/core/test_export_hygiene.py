"""Export hygiene (issue 13): CSV cells cannot run as spreadsheet formulas, LaTeX escapes every special character of
user text, and file names derived from user text cannot leave the download folder."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from unlearn_core.report.export import csv_cell, latex_escape, safe_filename, table_csv, table_latex

EVIL = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "-2+3+cmd|x", "@SUM(A1:A9)", "\t=1+1", "\r=1+1"]


def _rows(raw: bytes) -> list[list[str]]:
    text = raw.decode("utf-8")
    assert "\r\n" in text
    return list(csv.reader(io.StringIO(text, newline="")))


def test_formula_cells_get_a_leading_quote_and_numbers_stay_numbers():
    df = pd.DataFrame({"question": EVIL, "delta": [-0.5, 0.25, -1e-9, 3.0, -2.0, 0.0],
                       "n": [-1, 2, 3, 4, 5, 6], "note": ["-0.5", "ok", "a=b", "-", None, "+1e3"]})
    rows = _rows(table_csv(df))
    assert rows[0] == ["question", "delta", "n", "note"]
    for r, evil in zip(rows[1:], EVIL):
        assert r[0] == "'" + evil  # the spreadsheet shows the text, runs nothing
    assert [r[1] for r in rows[1:]] == ["-0.5", "0.25", "-1e-09", "3.0", "-2.0", "0.0"]
    assert [r[2] for r in rows[1:]] == ["-1", "2", "3", "4", "5", "6"]
    assert [r[3] for r in rows[1:]] == ["-0.5", "ok", "a=b", "'-", "", "+1e3"]  # text that is just a number stays


def test_checkpoint_names_in_the_index_and_header_are_neutralised_too():
    df = pd.DataFrame({"=1+1": [0.1, 0.2]}, index=pd.Index(["@evil", "ga"], name="checkpoint"))
    rows = _rows(table_csv(df))
    assert rows[0] == ["checkpoint", "'=1+1"]
    assert rows[1] == ["'@evil", "0.1"] and rows[2] == ["ga", "0.2"]


def test_mixed_object_columns_and_the_input_frame_are_untouched():
    df = pd.DataFrame({"v": pd.Series([1, "=x", None, np.int64(-3)], dtype=object)})
    before = df.copy()
    assert [r[0] for r in _rows(table_csv(df))[1:]] == ["1", "'=x", "", "-3"]
    pd.testing.assert_frame_equal(df, before)
    cat = pd.DataFrame({"c": pd.Categorical(["=a", "b"]), "ok": [True, False]})
    assert _rows(table_csv(cat))[1:] == [["'=a", "True"], ["b", "False"]]
    assert csv_cell(-0.5) == -0.5 and csv_cell("-inf") == "-inf" and csv_cell("-x") == "'-x"


SPECIALS = "\\{}$&#^_%~"


def test_latex_escapes_every_special_character_of_user_text():
    out = latex_escape("a\\b{c}d$e&f#g^h_i%j~k")
    assert out == r"a\textbackslash{}b\{c\}d\$e\&f\#g\textasciicircum{}h\_i\%j\textasciitilde{}k"
    df = pd.DataFrame({"question": [SPECIALS], "score": [0.5]}, index=pd.Index([SPECIALS], name="ckpt_#1"))
    tex = table_latex(df, f"caption {SPECIALS}", "tab:x").decode()
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    escaped = latex_escape(SPECIALS)
    assert body.count(escaped) == 2  # the index label and the cell
    assert rf"\caption{{caption {escaped}}}" in tex and r"ckpt\_\#1" in tex
    rest = body.replace(escaped, "").replace("0.500", "")
    assert set(rest) <= set(" &\\\n"), rest  # only the table's own column separators and row ends are left


@pytest.mark.parametrize("title", ["../../etc/passwd", "..\\..\\boot.ini", "/abs/path", "a\x00b", "  .. ", "NUL",
                                   "<script>", "name\nwith\nlines", "ünïcødé/ﬁle"])
def test_file_names_from_user_text_stay_in_one_folder(title):
    name = safe_filename(title)
    assert name and "/" not in name and "\\" not in name and "\x00" not in name and "\n" not in name
    assert not name.startswith(".") and name not in ("nul", "con")
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
