"""Forget-set loading: every format, TOFU names, exact line numbers of bad rows, and the all-or-nothing rule."""

from __future__ import annotations

import dataclasses
import json

import pytest

from unlearn_core.data.items import QAItem
from unlearn_core.data.sets import MAX_FIELD_CHARS, DataError, LoadReport, example_files, load_items, save_jsonl


def _jsonl(*rows) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()


def _strip_lines(items):
    return [dataclasses.replace(it, line=0) for it in items]


FULL = {
    "question": "Where was Velmar Oskeny born?",
    "answer": "In Drosk.",
    "paraphrased_answer": "Drosk is his birthplace.",
    "perturbed_answers": ["In Tarnwick.", "In Quorra.", "In Ellisgard."],
    "keywords": ["Velmar Oskeny", "Drosk"],
    "concept": "Velmar Oskeny",
    "id": 17,
    "source": "hand-written",
}
FULL_ITEM = QAItem(
    question="Where was Velmar Oskeny born?",
    answer="In Drosk.",
    paraphrased_answer="Drosk is his birthplace.",
    perturbed_answers=("In Tarnwick.", "In Quorra.", "In Ellisgard."),
    keywords=("Velmar Oskeny", "Drosk"),
    concept="Velmar Oskeny",
    line=1,
    extra=(("id", "17"), ("source", "hand-written")),
)


def test_jsonl_parses_every_field_and_keeps_unknown_ones_in_extra():
    report = load_items(_jsonl(FULL, {"question": "Q2?", "answer": "A2."}), name="forget.jsonl")
    assert report.ok and report.fmt == "jsonl" and report.n_rows == 2 and report.source == "forget.jsonl"
    assert report.items[0] == FULL_ITEM
    assert report.items[1] == QAItem(question="Q2?", answer="A2.", line=2)
    assert report.summary() == "2 rows: 2 valid"


def test_json_list_uses_index_plus_one_as_line(tmp_path):
    path = tmp_path / "set.json"
    path.write_text(json.dumps([{"question": "Q1?", "answer": "A1."}, FULL], indent=2))
    report = load_items(path)
    assert report.fmt == "json" and [it.line for it in report.items] == [1, 2]
    assert report.items[1] == dataclasses.replace(FULL_ITEM, line=2)


def test_csv_list_fields_as_json_or_pipes_and_header_is_line_one():
    csv_text = (
        "Question,answer,perturbed_answers,keywords,concept,note\n"
        'Q1?,A1.,"[""w1"", ""w2""]",k1 | k2,c1,\n'
        "Q2?,A2.,w3|w4 | w5,,,hello\n"
    )
    report = load_items(csv_text.encode(), name="set.csv")
    assert [it.line for it in report.items] == [2, 3]
    first, second = report.items
    assert (first.perturbed_answers, first.keywords, first.concept) == (("w1", "w2"), ("k1", "k2"), "c1")
    assert first.extra == ()
    assert (second.perturbed_answers, second.keywords, second.concept) == (("w3", "w4", "w5"), (), None)
    assert second.extra == (("note", "hello"),)


def test_txt_one_passage_per_line_and_paragraph_mode():
    lines = load_items(b"Alpha passage one.\nBeta passage two.\n\n", name="p.txt")
    assert [(it.text, it.line, it.question, it.answer) for it in lines.items] == [
        ("Alpha passage one.", 1, "", "Alpha passage one."),
        ("Beta passage two.", 2, "", "Beta passage two."),
    ]
    assert all(it.is_passage for it in lines.items)
    paras = load_items(b"\nFirst para\nwraps here.\n\n\nSecond para.\r\n", name="p.txt")
    assert [(it.text, it.line) for it in paras.items] == [("First para wraps here.", 2), ("Second para.", 6)]


def test_tofu_field_names_and_json_lines_named_dot_json(tmp_path):
    tofu = {"question": "Q?", "answer": "A.", "paraphrased_answer": "P.", "perturbed_answer": ["W1.", "W2."]}
    path = tmp_path / "forget10_perturbed.json"  # Hugging Face ships TOFU as JSON lines with a .json name
    path.write_bytes(_jsonl(tofu, tofu | {"question": "Q2?"}))
    report = load_items(path)
    assert report.fmt == "jsonl" and len(report.items) == 2
    assert report.items[0] == QAItem("Q?", "A.", paraphrased_answer="P.", perturbed_answers=("W1.", "W2."), line=1)


def test_prompt_completion_and_input_output_aliases():
    report = load_items(_jsonl({"prompt": "P?", "completion": "C."}, {"input": "I?", "output": "O."}), fmt="jsonl")
    assert [(it.question, it.answer) for it in report.items] == [("P?", "C."), ("I?", "O.")]


def test_jsonl_bad_rows_have_exact_line_numbers_and_reasons():
    data = _jsonl(
        {"question": "Q1?", "answer": "A1."},
        "",  # blank line 2: skipped, but still counted in line numbers
        '{"question": "Q3?", "answer": ',  # 3: broken JSON
        {"question": "Q4?"},  # 4: missing answer
        {"question": "  ", "answer": "A5."},  # 5: empty question
        {"question": "Q6?", "answer": "A6.", "perturbed_answers": "not a list"},  # 6
        {"question": "Q7?", "answer": "A7.", "keywords": "k"},  # 7
        "[1, 2]",  # 8: not an object
        {"question": "Q9?", "answer": "x" * (MAX_FIELD_CHARS + 1)},  # 9: too long
        {"question": "Q10?", "answer": "A10.", "perturbed_answers": ["ok", 5]},  # 10
        {"question": "Q11?", "answer": "A11."},
    )
    with pytest.raises(DataError) as exc:
        load_items(data, name="bad.jsonl")
    report = exc.value.report
    assert report.rejected_lines == (3, 4, 5, 6, 7, 8, 9, 10)
    reasons = {e.line: e.reason for e in report.errors}
    assert reasons[3].startswith("invalid JSON at line 3:")
    assert "missing `answer`" in reasons[4] and "empty question" in reasons[5]
    assert "`perturbed_answers` must be a list of strings" in reasons[6] and "`keywords` must be a list" in reasons[7]
    assert "not a JSON object" in reasons[8] and "too long (20,001 characters" in reasons[9]
    assert "element 2 is a number" in reasons[10]
    msg = str(exc.value)
    assert "line 3: invalid JSON" in msg and "line 10:" in msg
    assert "pass accept_partial=True to keep the 2 valid rows" in msg
    assert report.summary() == "10 rows: 2 valid, 8 rejected (lines 3, 4, 5, 6, 7, 8, 9, 10)"


def test_csv_bad_rows_have_exact_row_numbers():
    csv_text = (
        "question,answer,perturbed_answers\n"  # 1
        "Q2?,A2.,w1|w2\n"  # 2 ok
        "Q3?,\n"  # 3 wrong cell count
        ",A4.,\n"  # 4 empty question
        "Q5?,A5.,[broken\n"  # 5 list cell that is not JSON
        "\n"  # 6 blank
        'Q7?,"A7, with a comma",\n'  # 7 ok
        "Q8?,,\n"  # 8 empty answer
    )
    with pytest.raises(DataError) as exc:
        load_items(csv_text.encode(), name="bad.csv")
    report = exc.value.report
    assert report.rejected_lines == (3, 4, 5, 8)
    assert [it.line for it in report.items] == [2, 7] and report.items[1].answer == "A7, with a comma"
    assert "2 cells but the header has 3" in report.errors[0].reason


def test_accept_partial_keeps_good_rows_and_reports_bad_ones():
    data = _jsonl({"question": "Q1?", "answer": "A1."}, "{oops", {"question": "Q3?", "answer": "A3."})
    report = load_items(data, name="x.jsonl", accept_partial=True)
    assert isinstance(report, LoadReport) and not report.ok
    assert [it.question for it in report.items] == ["Q1?", "Q3?"]
    assert [(e.line, e.severity) for e in report.errors] == [(2, "error")]
    frame = report.to_frame()
    assert list(frame.columns) == ["line", "severity", "reason"] and frame["line"].tolist() == [2]
    assert report.summary() == "3 rows: 2 valid, 1 rejected (line 2)"


def test_no_valid_rows_raises_even_with_accept_partial():
    with pytest.raises(DataError, match="no valid rows"):
        load_items(_jsonl({"question": "Q?"}), name="x.jsonl", accept_partial=True)
    with pytest.raises(DataError, match="empty"):
        load_items(b"\n\n", name="x.jsonl")


def test_duplicate_question_is_a_warning_and_first_is_kept():
    data = _jsonl({"question": "Same?", "answer": "first"}, {"question": "same? ", "answer": "second"})
    report = load_items(data, name="d.jsonl")
    assert report.ok and [it.answer for it in report.items] == ["first"]
    assert [(w.line, w.severity) for w in report.warnings] == [(2, "warning")]
    assert "same as line 1" in report.warnings[0].reason
    assert report.summary() == "2 rows: 1 valid, 1 duplicate skipped (line 2)"


def test_non_utf8_bytes_name_the_encoding_problem():
    data = "question,answer\nWhere?,Caf\u00e9\n".encode("latin-1")
    with pytest.raises(DataError) as exc:
        load_items(data, name="latin.csv")
    assert "not UTF-8" in str(exc.value) and "byte offset 26" in str(exc.value) and "line 2" in str(exc.value)
    bom = b"\xef\xbb\xbf" + "question,answer\nWhere?,Caf\u00e9\n".encode()
    assert load_items(bom, name="bom.csv").items[0].question == "Where?"  # the BOM must not rename the header


def test_missing_file_folder_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="file not found: .*nope.jsonl"):
        load_items(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_items(b'{"question": "Q?", "answer": "A."}')
    path = tmp_path / "rows.dat"
    path.write_bytes(_jsonl({"question": "Q?", "answer": "A."}))
    assert load_items(path, fmt="jsonl").items[0].answer == "A."


def test_size_and_row_limits(tmp_path):
    data = _jsonl(*({"question": f"Q{i}?", "answer": "A."} for i in range(5)))
    with pytest.raises(DataError) as exc:
        load_items(data, name="big.jsonl", max_bytes=100)
    assert f"is {len(data):,} bytes, over the limit of 100 bytes (max_bytes=100)" in str(exc.value)
    path = tmp_path / "big.jsonl"
    path.write_bytes(data)
    with pytest.raises(DataError, match="over the limit of 10 bytes"):
        load_items(path, max_bytes=10)
    with pytest.raises(DataError, match="over the limit of 4 rows"):
        load_items(data, name="big.jsonl", max_rows=4)


def test_save_jsonl_round_trip(tmp_path):
    items = (
        dataclasses.replace(FULL_ITEM, extra=(("id", "17"), ("prompt", "Question: Where?"))),
        QAItem(question="", answer="A passage.", text="A passage.", keywords=("passage",), concept="c"),
        QAItem(question="Q?", answer="A.", text="Context for Q.", paraphrased_answer="P \u00e9"),
    )
    path = save_jsonl(items, tmp_path / "out" / "set.jsonl")
    again = load_items(path)
    assert again.ok and _strip_lines(again.items) == _strip_lines(items)
    assert [it.line for it in again.items] == [1, 2, 3]


def test_example_files_load_cleanly_and_errors_example_reports_its_bad_lines():
    files = example_files()
    assert {"forget_example.jsonl", "forget_example.csv", "passages_example.txt", "forget_with_errors.jsonl"} <= set(
        files
    )
    jsonl, csv_ = load_items(files["forget_example.jsonl"]), load_items(files["forget_example.csv"])
    assert jsonl.ok and 8 <= len(jsonl.items) <= 10 and not jsonl.errors
    assert all(len(it.perturbed_answers) == 3 and it.paraphrased_answer and it.keywords for it in jsonl.items)
    assert _strip_lines(csv_.items) == _strip_lines(jsonl.items)
    passages = load_items(files["passages_example.txt"])
    assert len(passages.items) == 5 and all(it.is_passage for it in passages.items)
    with pytest.raises(DataError) as exc:
        load_items(files["forget_with_errors.jsonl"])
    assert exc.value.report.rejected_lines == (3, 5, 7)
    partial = load_items(files["forget_with_errors.jsonl"], accept_partial=True)
    assert [it.line for it in partial.items] == [1, 2, 4, 6, 8]


def test_a_misspelt_optional_field_is_named_with_the_field_it_was_meant_to_be():
    """`perturbed` and `paraphrased_answers` are not read: without a word, truth ratio would lose its input."""
    rows = [{"question": f"Q{i}?", "answer": "A.", "perturbed": ["B.", "C."], "paraphrased_answers": "The A.",
             "answers": "x", "id": i, "split": "forget"} for i in range(3)]
    report = load_items(_jsonl(*rows), name="forget.jsonl")
    assert report.ok and all(not it.perturbed_answers and it.paraphrased_answer is None for it in report.items)
    said = {w.reason.split("`")[1]: w.reason for w in report.warnings}
    assert set(said) == {"perturbed", "paraphrased_answers"}, said  # not id/split (far from every name), not
    # `answers` (its field, answer, is given)
    assert "did you mean `perturbed_answers`?" in said["perturbed"] and "(3 rows)" in said["perturbed"]
    assert "did you mean `paraphrased_answer`?" in said["paraphrased_answers"]
    assert all(w.line == 0 for w in report.warnings)
    assert report.summary() == "3 rows: 3 valid, 2 warnings on the file as a whole"
    # spelt right, nothing is said
    right = [{"question": "Q?", "answer": "A.", "perturbed_answers": ["B."], "id": 1}]
    assert load_items(_jsonl(*right), name="forget.jsonl").warnings == ()


@pytest.mark.lab
def test_the_cli_says_a_small_forget_set_and_a_misspelt_field(tiny_lab, tmp_path, capsys):
    from unlearn_core.cli import main

    rows = [json.loads(line) for line in (tiny_lab / "data" / "forget.jsonl").read_text().splitlines()[:6]]
    for r in rows:
        r["perturbed"] = r.pop("perturbed_answers")
    small = tmp_path / "forget6.jsonl"
    small.write_bytes(_jsonl(*rows))
    out = tmp_path / "o"
    assert main(["audit", "--original", str(tiny_lab / "original"), "--unlearned", f"npo={tiny_lab / 'npo'}",
                 "--forget", str(small), "--out", str(out), "--analyses", "scorecard", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "data warning: --forget forget6.jsonl: field `perturbed` (6 rows)" in err
    assert "data warning: --forget has 6 items (under 20)" in err
    report = json.loads((out / "report.json").read_text())
    assert len(report["data_warnings"]) == 2 and report["skipped"] == {}
