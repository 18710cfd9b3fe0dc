"""Property-based fuzzing (hypothesis) of every parser a user's bytes reach: forget/retain/holdout files in every
format (JSONL, JSON, CSV, TSV, TXT) as random bytes and as mutated near-valid files (invalid UTF-8, BOMs, NUL, huge
lines, deep nesting, duplicate keys, wrong types, many rows), CSV list cells, safetensors headers of a typed checkpoint
folder, imported Open-Unlearning result files, and the settings typed in the UI (prompt template, analysis configs).

Property: load_items either returns a valid dataset or raises DataError whose message names the line (or the file
as a whole) of every issue it lists; never another exception, never a hang (hypothesis' deadline bounds each input).

CI runs a few hundred inputs (seconds). A longer run, e.g. 20,000 inputs per test:
    UNLEARN_AUDIT_FUZZ_EXAMPLES=20000 python -m pytest tests/core/test_fuzz_data.py -q -p no:cacheprovider
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unlearn_core.analyses import registry
from unlearn_core.checkpoints.source import (  # imports torch once, outside the deadline
    CheckpointError,
    safetensors_shapes,
)
from unlearn_core.data.items import PromptFormat, QAItem
from unlearn_core.data.ou_format import OUFormatError, load_ou
from unlearn_core.data.sets import FORMATS, MAX_FIELD_CHARS, DataError, LoadReport, load_items
from unlearn_core.store.hashing import hash_config

N_EXAMPLES = int(os.environ.get("UNLEARN_AUDIT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=N_EXAMPLES, deadline=3000, derandomize=N_EXAMPLES <= 200,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TRIED = {"inputs": 0}  # printed at the end of the session with -s: the closing note's count
FIELDS = ["question", "answer", "text", "prompt", "completion", "input", "output", "paraphrased_answer",
          "perturbed_answers", "perturbed_answer", "keywords", "concept", "id", "Question"]


@pytest.fixture(scope="module", autouse=True)
def _report_count(request):
    """Prints how many inputs this module tried (run with -s to see it): the closing note's count."""
    yield
    print(f"\nfuzz inputs tried: {TRIED['inputs']}")


def check(raw: bytes, fmt: str, accept_partial: bool = False) -> LoadReport | None:
    """The property: a valid dataset, or a DataError naming where; anything else fails the test."""
    TRIED["inputs"] += 1
    try:
        report = load_items(raw, name=f"upload.{fmt}", accept_partial=accept_partial)
    except DataError as e:
        msg = str(e)
        assert msg.strip(), "empty DataError message"
        assert e.report is not None, f"DataError without a report: {msg}"
        assert e.report.errors or "empty" in msg or "no valid rows" in msg, msg
        shown = [i for i in e.report.errors if i.severity == "error"][:20]
        for issue in shown:
            assert issue.reason.strip()
            if issue.line > 0 and len(shown) > 1:
                assert f"line {issue.line}" in msg, (issue, msg)
        return None
    assert report.items, "a dataset without items was returned"
    for it in report.items:
        assert isinstance(it, QAItem) and it.line >= 1
        assert isinstance(it.question, str) and isinstance(it.answer, str) and it.answer.strip()
        assert all(isinstance(s, str) and s.strip() for s in (*it.perturbed_answers, *it.keywords))
        for s in (it.question, it.answer, it.paraphrased_answer, it.concept, it.text, *it.perturbed_answers):
            assert s is None or len(s) <= MAX_FIELD_CHARS
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in it.extra)
    return report


# ------------------------------------------------------------------------------------------- strategies

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30))
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                          st.dictionaries(st.text(max_size=8), c, max_size=4)),
                          max_leaves=12)
good_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
row = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10),
                      st.one_of(good_text, json_value, st.lists(good_text, max_size=3)), max_size=6)


@st.composite
def mutated(draw, body: bytes) -> bytes:
    """`body` with a few byte-level mutations: BOMs, NUL, invalid UTF-8, CR, truncation, a huge line."""
    data = bytearray(body)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["bom8", "bom16", "nul", "bad_utf8", "cr", "cut", "huge", "dup", "none"]))
        at = draw(st.integers(0, len(data)))
        if kind == "bom8":
            data[0:0] = b"\xef\xbb\xbf"
        elif kind == "bom16":
            data[0:0] = b"\xff\xfe"
        elif kind == "nul":
            data[at:at] = b"\x00"
        elif kind == "bad_utf8":
            data[at:at] = draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\x80"]))
        elif kind == "cr":
            data[at:at] = b"\r"
        elif kind == "cut":
            del data[at:]
        elif kind == "huge":
            data[at:at] = b"x" * draw(st.sampled_from([1000, MAX_FIELD_CHARS + 1, 200_000]))
        elif kind == "dup" and data:
            data += b"\n" + bytes(data.split(b"\n")[0])
    return bytes(data)


@st.composite
def jsonl_file(draw) -> bytes:
    rows = draw(st.lists(row, max_size=8))
    lines = [json.dumps(r, ensure_ascii=draw(st.booleans())) for r in rows]
    if lines and draw(st.booleans()):  # a duplicate key inside one object
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = '{"question": "a?", "answer": "b", "question": "c?"' + ("}" if draw(st.booleans()) else "")
    return draw(mutated("\n".join(lines).encode("utf-8", "surrogatepass")))


@st.composite
def json_file(draw) -> bytes:
    top = draw(st.one_of(st.lists(row, max_size=8), row, json_value))
    return draw(mutated(json.dumps(top).encode("utf-8", "surrogatepass")))


cell = st.one_of(good_text, st.sampled_from(["", " ", '"', '""', "a,b", "a;b", "a\tb", "line\nbreak", "[1, 2]",
                                              '["x", "y"]', "[", "a | b", "|", "[[[[[", "1" * 5000]))


@st.composite
def csv_file(draw, delim: str) -> bytes:
    header = draw(st.lists(st.sampled_from(FIELDS) | st.text(max_size=6), min_size=1, max_size=6))
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=len(header) + 1), max_size=8))

    def quote(c: str) -> str:
        return '"' + c.replace('"', '""') + '"' if draw(st.booleans()) else c

    text = "\n".join(delim.join(quote(c) for c in r) for r in [header, *rows])
    return draw(mutated(text.encode("utf-8", "surrogatepass")))


txt_file = st.text(st.characters(), max_size=400).map(lambda s: s.encode("utf-8", "surrogatepass"))


# ------------------------------------------------------------------------------------------- properties


@FUZZ
@given(raw=st.binary(max_size=3000), fmt=st.sampled_from(FORMATS), partial=st.booleans())
def test_random_bytes_in_every_format(raw, fmt, partial):
    check(raw, fmt, partial)


@FUZZ
@given(raw=jsonl_file(), partial=st.booleans())
def test_mutated_jsonl(raw, partial):
    check(raw, "jsonl", partial)


@FUZZ
@given(raw=json_file(), partial=st.booleans())
def test_mutated_json(raw, partial):
    check(raw, "json", partial)


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["csv", "tsv"]), partial=st.booleans())
def test_mutated_csv_and_tsv(data, fmt, partial):
    delim = "\t" if fmt == "tsv" else data.draw(st.sampled_from([",", ";", "\t"]))
    check(data.draw(csv_file(delim)), fmt, partial)


@FUZZ
@given(raw=txt_file, partial=st.booleans())
def test_text_files(raw, partial):
    check(raw, "txt", partial)


@FUZZ
@given(template=st.text(max_size=40), question=st.text(max_size=20))
def test_prompt_templates_typed_in_the_ui(template, question):
    """A template is either refused at construction (ValueError) or formats every question without error."""
    TRIED["inputs"] += 1
    try:
        fmt = PromptFormat(template)
    except ValueError as e:
        assert str(e)
        return
    out = fmt.prompt(question)
    assert question in out


# ------------------------------------------------------------------------------------------- the cases fuzzing found


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_deep_nesting_is_a_clear_error_not_a_recursion_crash(fmt):
    for depth in (200, 5_000, 200_000):
        deep = "[" * depth + "]" * depth
        raw = (f'{{"question": "q?", "answer": "a", "x": {deep}}}' if fmt == "jsonl" else deep).encode()
        with pytest.raises(DataError, match=r"nested (more than|deeper)"):
            load_items(raw, name=f"f.{fmt}")


def test_deep_nesting_in_a_csv_list_cell_is_a_row_error():
    raw = ('question,answer,keywords\nq?,a,"' + "[" * 100_000 + '"\nr?,b,x\n').encode()
    with pytest.raises(DataError, match=r"line 2: .*keywords.*nested"):
        load_items(raw, name="f.csv")
    assert len(load_items(raw, name="f.csv", accept_partial=True).items) == 1


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_huge_integers_are_a_clear_error(fmt):
    obj = '{"question": "q?", "answer": "a", "id": ' + "9" * 10_000 + "}"
    raw = (obj if fmt == "jsonl" else f"[{obj}]").encode()
    with pytest.raises(DataError, match=r"line 1: .*number"):
        load_items(raw, name=f"f.{fmt}")


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_duplicate_keys_are_reported_with_the_field(fmt):
    objs = ['{"question": "q1?", "answer": "a", "answer": "b"}', '{"question": "q2?", "answer": "c"}']
    raw = ("\n".join(objs) if fmt == "jsonl" else "[" + ",\n".join(objs) + "]").encode()
    with pytest.raises(DataError, match=r"line 1: duplicate key `answer`"):
        load_items(raw, name=f"f.{fmt}")
    assert [it.question for it in load_items(raw, name=f"f.{fmt}", accept_partial=True).items] == ["q2?"]


def test_a_csv_header_with_many_columns_is_fast():
    raw = (",".join(f"c{i}" for i in range(100_000)) + ",question,answer\n" + "," * 100_000 + "q?,a\n").encode()
    t0 = time.perf_counter()
    assert len(load_items(raw, name="f.csv").items) == 1
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "txt"])  # tsv is the csv parser with another delimiter
def test_a_hundred_thousand_rows_load_in_bounded_time(fmt):
    n = 100_000
    rows = [{"question": f"Who is person {i}?", "answer": f"Answer {i}"} for i in range(n)]
    if fmt == "jsonl":
        raw = "\n".join(json.dumps(r) for r in rows)
    elif fmt == "json":
        raw = json.dumps(rows)
    elif fmt in ("csv", "tsv"):
        d = "," if fmt == "csv" else "\t"
        raw = f"question{d}answer\n" + "\n".join(f"{r['question']}{d}{r['answer']}" for r in rows)
    else:
        raw = "\n".join(f"passage number {i}" for i in range(n))
    t0 = time.perf_counter()
    report = load_items(raw.encode(), name=f"f.{fmt}")
    assert len(report.items) == n
    assert time.perf_counter() - t0 < 30
    if fmt == "jsonl":
        with pytest.raises(DataError, match=r"over the limit of 50,000 rows"):
            load_items(raw.encode(), name=f"f.{fmt}", max_rows=50_000)


@pytest.mark.parametrize("template", ["{foo} {question}", "{question.__class__.__mro__}", "{0}{question}",
                                      "{question", "{question!r:>{x}}", "{question[0]}"])
def test_prompt_templates_with_other_fields_are_refused_up_front(template):
    with pytest.raises(ValueError, match="template"):
        PromptFormat(template)



@FUZZ
@given(body=st.one_of(st.binary(max_size=300),
                      st.builds(lambda h, tail: len(h).to_bytes(8, "little") + h + tail,
                                json_value.map(lambda v: json.dumps(v).encode()), st.binary(max_size=16)),
                      st.builds(lambda shape, dtype: (lambda h: len(h).to_bytes(8, "little") + h)(
                          json.dumps({"w": {"shape": shape, "dtype": dtype, "data_offsets": [0, 0]}}).encode()),
                          json_value, json_value)))
def test_safetensors_headers_of_a_typed_checkpoint_folder(tmp_path_factory, body):
    """A checkpoint folder typed in the browser is inspected from its safetensors header before any weight is read:
    a corrupt header is a CheckpointError, never another exception."""
    TRIED["inputs"] += 1
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    path.write_bytes(body)
    try:
        shapes = safetensors_shapes(path)
    except CheckpointError as e:
        assert str(path) in str(e)
        return
    assert all(isinstance(s, tuple) and all(isinstance(d, int) for d in s) for s, _ in shapes.values())


OU_KEYS = st.sampled_from(["forget_Q_A_Prob", "forget_truth_ratio", "value_by_index", "agg_value", "0", "1", "prob",
                           "forget", "retain", "model_utility"]) | st.text(max_size=4)
ou_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                      st.dictionaries(OU_KEYS, c, max_size=4)), max_leaves=15)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), ou_value.map(lambda v: json.dumps(v).encode()).flatmap(mutated)))
def test_imported_open_unlearning_result_files(raw):
    """An imported EVAL/SUMMARY json (CLI --import-eval): an OUEval, or OUFormatError naming the file."""
    TRIED["inputs"] += 1
    try:
        load_ou(raw, "eval.json")
    except OUFormatError as e:
        assert "eval.json" in str(e)


SPECS = {n: registry.get_spec(n) for n in registry.ANALYSES}  # imported once, outside the deadline
setting_value = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.integers(), st.floats(),
                          st.text(max_size=10), st.lists(st.one_of(st.integers(-5, 50), st.floats(),
                                                                    st.text(max_size=3)), max_size=4).map(tuple))


@FUZZ
@given(name=st.sampled_from(sorted(SPECS)), data=st.data())
def test_analysis_settings_typed_on_a_page(name, data):
    """Any value in any analysis setting (what the page's widgets and JSON boxes can produce): the config is built
    and hashed, or refused with ValueError/TypeError (the page shows it and keeps the defaults)."""
    TRIED["inputs"] += 1
    default = SPECS[name].default_config()
    field = data.draw(st.sampled_from([f.name for f in dataclasses.fields(default) if f.init]))
    try:
        hash_config(dataclasses.replace(default, **{field: data.draw(setting_value)}))
    except (ValueError, TypeError) as e:
        assert str(e)
