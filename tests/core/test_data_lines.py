"""CSV rows after a quoted multi-line cell are reported at their real file lines (not their record numbers)."""

from __future__ import annotations

import pytest

from unlearn_core.data.sets import DataError, load_items


def test_quoted_multiline_cell_keeps_file_line_numbers(tmp_path):
    f = tmp_path / "forget.csv"
    f.write_text('question,answer\n'                         # line 1
                 '"Where was A born?\nPlease answer briefly.",Brinhollow\n'  # lines 2-3
                 'What does A do?,tailor\n'                   # line 4
                 '\n'                                         # line 5 (blank)
                 '"Who employs A?",""\n'                      # line 6: empty answer -> rejected
                 'Who is A\'s pet?,"a\nthree-line\nanswer"\n'  # lines 7-9
                 'Bad,row,extra\n')                           # line 10: too many cells
    with pytest.raises(DataError) as e:
        load_items(f)
    report = e.value.report if hasattr(e.value, "report") else None
    text = str(e.value)
    assert "line 6" in text and "line 10" in text and "line 5" not in text, text
    if report is not None:
        assert report.rejected_lines == (6, 10)
    items = load_items(f, accept_partial=True).items
    assert [it.line for it in items] == [2, 4, 7]
    assert items[0].question == "Where was A born?\nPlease answer briefly."
