"""Forget/retain/holdout set files -> validated QAItems, with every bad row reported by line number.

Audits are only as trustworthy as their data, and people bring files from many places (TOFU dumps, spreadsheets,
hand-written JSONL), so loading is lenient about *names* (TOFU fields and common aliases are accepted) but strict
about *content*: a wrong type or an empty answer is reported with its line, never silently coerced. Loading is
all-or-nothing unless the caller opts into `accept_partial`, so a half-broken file cannot quietly shrink a forget set.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, Literal

from unlearn_core.data.items import QAItem

FORMATS = ("jsonl", "json", "csv", "tsv", "txt")
MAX_FIELD_CHARS = 20_000  # one QA field longer than this is almost certainly a mis-parsed file, not a fact
MAX_JSON_DEPTH = 100  # a forget set is flat; deeper JSON is a broken or hostile file (and nests past the stack)
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
               ".txt": "txt", ".text": "txt"}
_UNSUPPORTED = {".xlsx": "Excel", ".xls": "Excel", ".parquet": "Parquet", ".arrow": "Arrow"}
# canonical field -> accepted names, first wins; the others present in the same row are kept in `extra`
_ALIASES = {
    "question": ("question", "prompt", "input"),
    "answer": ("answer", "completion", "output"),
    "paraphrased_answer": ("paraphrased_answer",),
    "perturbed_answers": ("perturbed_answers", "perturbed_answer"),  # TOFU names it perturbed_answer (a list)
    "keywords": ("keywords",),
    "concept": ("concept",),
    "text": ("text",),
    "entity": ("entity", "group", "author"),  # TOFU's rows belong to an author
    "paraphrased_question": ("paraphrased_question", "held_out_question"),
}
_LIST_FIELDS = ("perturbed_answers", "keywords")
_MAX_LISTED = 20  # issues quoted in an exception message; the report keeps all of them


class DataError(ValueError):
    """A data file that cannot be used as given; `report` holds whatever was parsed (for the UI to show)."""

    def __init__(self, message: str, report: LoadReport | None = None):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class RowIssue:
    line: int  # 1-based line/row of the source file; 0 = the file as a whole
    reason: str
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class LoadReport:
    """What a load produced: the good items plus every issue, so the UI can show both side by side."""

    items: tuple[QAItem, ...]
    errors: tuple[RowIssue, ...]  # errors (row dropped) and warnings (row kept, or duplicate skipped)
    n_rows: int
    fmt: str
    source: str

    @property
    def ok(self) -> bool:
        return not any(e.severity == "error" for e in self.errors)

    @property
    def warnings(self) -> tuple[RowIssue, ...]:
        return tuple(e for e in self.errors if e.severity == "warning")

    @property
    def rejected_lines(self) -> tuple[int, ...]:
        return tuple(sorted({e.line for e in self.errors if e.severity == "error"}))

    def to_frame(self):
        """Issues as a table (line, severity, reason); pandas is imported here so loading data never needs it."""
        import pandas as pd

        rows = [{"line": e.line, "severity": e.severity, "reason": e.reason} for e in self.errors]
        return pd.DataFrame(rows, columns=["line", "severity", "reason"])

    def summary(self) -> str:
        """One line for a status bar, e.g. '12 rows: 10 valid, 2 rejected (lines 3, 7)'."""
        kept = {it.line for it in self.items}
        rejected = self.rejected_lines
        skipped = sorted({e.line for e in self.warnings if e.line not in kept and e.line not in rejected and e.line})
        warned = sorted({e.line for e in self.warnings if e.line in kept})
        parts = [f"{len(self.items)} valid"]
        for lines, label in ((rejected, "rejected"), (skipped, "duplicate{s} skipped"), (warned, "with warnings")):
            if lines:
                parts.append(f"{len(lines)} {label.format(s='s' * (len(lines) > 1))} ({_lines_text(lines)})")
        n_file = sum(1 for e in self.warnings if e.line == 0)
        if n_file:
            parts.append(f"{n_file} warning{'s' * (n_file > 1)} on the file as a whole")
        return f"{self.n_rows} rows: " + ", ".join(parts)


def load_items(source: str | Path | bytes, *, fmt: str | None = None, name: str | None = None,
               accept_partial: bool = False, max_bytes: int = 50_000_000, max_rows: int = 200_000) -> LoadReport:
    """Load a forget/retain/holdout set from a path or raw bytes (plus `name`, as an upload widget gives them).

    The format comes from the file extension unless `fmt` (one of FORMATS) is given. Raises DataError when the file
    cannot be read, is too big, is not UTF-8, has no valid rows, or has any bad row and `accept_partial` is False.
    """
    data, label = _read_source(source, name, max_bytes)
    fmt = _resolve_format(fmt, name or label, label)
    text = _decode(data, label, fmt)
    parser = {"jsonl": _parse_jsonl, "json": _parse_json, "csv": _parse_csv, "tsv": _parse_csv, "txt": _parse_txt}
    rows, issues, fmt = parser[fmt](text, fmt)  # rows: (line, dict); a .json file may turn out to be JSON lines
    n_rows = len(rows) + len({i.line for i in issues if i.line > 0})  # parse issues are rows that never got a dict
    if n_rows > max_rows:
        raise DataError(f"{label} has {n_rows:,} rows, over the limit of {max_rows:,} rows (max_rows={max_rows}); "
                        "split the file or raise max_rows", LoadReport((), tuple(issues), n_rows, fmt, label))
    items, row_issues = _validate(rows, from_csv=fmt in ("csv", "tsv"))
    row_issues += _near_misses(items)
    issues = sorted(issues + row_issues, key=lambda i: (i.line, i.severity))
    report = LoadReport(items, tuple(issues), n_rows, fmt, label)
    errors = [i for i in issues if i.severity == "error"]
    if not items:
        why = f"{label} has no valid rows" if n_rows or errors else f"{label} is empty (no rows)"
        raise DataError(why + _issue_list(errors), report)
    if errors and not accept_partial:
        n_bad = len(report.rejected_lines)
        raise DataError(f"{label}: {n_bad} of {n_rows} rows rejected" + _issue_list(errors)
                        + f"\npass accept_partial=True to keep the {len(items)} valid rows", report)
    return report


def save_jsonl(items: Iterable[QAItem], path: str | Path) -> Path:
    """Write items as JSONL in the canonical field names, so load_items(save_jsonl(x)) gives x back (bar `line`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for it in items:
            f.write(json.dumps(_item_to_dict(it), ensure_ascii=False) + "\n")
    return path


def example_files() -> dict[str, Path]:
    """The bundled example sets (file name -> path), for the 'try an example' button and for tests."""
    folder = Path(__file__).resolve().parents[2] / "assets" / "examples"
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}


# --- reading and decoding


def _read_source(source, name: str | None, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), name or "uploaded data"
    elif hasattr(source, "getvalue") or hasattr(source, "read"):  # file-like, e.g. an upload widget's file object
        data = source.getvalue() if hasattr(source, "getvalue") else source.read()
        label = name or getattr(source, "name", None) or "uploaded data"
    else:
        path = Path(source)
        label = str(path)
        if not path.exists():
            _fail(f"file not found: {path}", label)
        if path.is_dir():
            _fail(f"{path} is a folder, not a data file", label)
        _check_size(path.stat().st_size, max_bytes, label)
        data = path.read_bytes()
    _check_size(len(data), max_bytes, label)
    return data, label


def _check_size(size: int, max_bytes: int, label: str) -> None:
    if size > max_bytes:
        _fail(f"{label} is {_size(size)}, over the limit of {_size(max_bytes)} (max_bytes={max_bytes})", label)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB ({n:,} bytes)" if n >= 100_000 else f"{n:,} bytes"


def _resolve_format(fmt: str | None, filename: str, label: str) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        fmt = {"ndjson": "jsonl", "text": "txt"}.get(fmt, fmt)
        if fmt not in FORMATS:
            _fail(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", label)
        return fmt
    suffix = Path(filename).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if suffix in _UNSUPPORTED:
        _fail(f"{label}: {_UNSUPPORTED[suffix]} files are not supported; export to CSV or JSONL", label)
    what = f"extension {suffix!r}" if suffix else "no file extension"
    _fail(f"cannot tell the format of {label} ({what}); pass fmt= one of {', '.join(FORMATS)}", label)


def _decode(data: bytes, label: str, fmt: str) -> str:
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # Excel writes a BOM; it is not part of the content
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = e.start + bom
    line = data[:offset].count(b"\n") + 1
    _fail(f"{label} is not UTF-8 text: byte 0x{data[offset]:02X} at byte offset {offset} (line {line}) is not valid "
          "UTF-8; re-save the file with UTF-8 encoding (it may be Latin-1/Windows-1252 or UTF-16)", label, fmt, line)


# --- per-format parsing -> (line, dict) rows

Rows = list[tuple[int, dict]]


class _DuplicateKeys(dict):
    """A JSON object that named a key twice (json.loads silently keeps the last value); `duplicated` lists them."""

    duplicated: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        obj = _DuplicateKeys(obj)
        obj.duplicated = tuple(sorted({k for k, _ in pairs if k in seen or seen.add(k)}))
    return obj


def _json_loads(text: str) -> tuple[Any, str | None]:
    """(value, None), or (None, why) for JSON that parses but cannot be used: nested past MAX_JSON_DEPTH (also
    what a RecursionError means) or a number too long to convert. Syntax errors raise JSONDecodeError as usual."""
    try:
        value = json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        return None, f"JSON nested more than {MAX_JSON_DEPTH} levels deep"
    except ValueError as e:  # Python refuses to convert integers with more than sys.get_int_max_str_digits() digits
        return None, f"a number too long to read ({str(e).split(';')[0]})"
    if _too_deep(value):
        return None, f"JSON nested more than {MAX_JSON_DEPTH} levels deep"
    return value, None


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (list, dict)):
            if depth > MAX_JSON_DEPTH:
                return True
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return False


def _parse_jsonl(text: str, fmt: str) -> tuple[Rows, list[RowIssue], str]:
    rows, issues = [], []
    for n, raw in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 is legal inside JSON strings
        if not raw.strip():
            continue
        try:
            obj, why = _json_loads(raw)
        except json.JSONDecodeError as e:
            issues.append(RowIssue(n, f"invalid JSON at line {n}: {e.msg} (column {e.colno})"))
        else:
            if why:
                issues.append(RowIssue(n, why))
            else:
                _add_object(rows, issues, n, obj, "line")
    return rows, issues, "jsonl"


def _parse_json(text: str, fmt: str) -> tuple[Rows, list[RowIssue], str]:
    try:
        top, why = _json_loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # several top-level values: JSON lines named .json (as Hugging Face TOFU ships)
            return _parse_jsonl(text, fmt)
        return [], [RowIssue(e.lineno, f"invalid JSON at line {e.lineno}: {e.msg} (column {e.colno})")], fmt
    if why:  # the file as a whole: find the item it is in, so the person can fix that one
        return _parse_json_items(text, fmt, why)
    if isinstance(top, dict):
        top = [top] if any(k in top for names in _ALIASES.values() for k in names) else top
    if not isinstance(top, list):
        return [], [RowIssue(0, f"a JSON file must hold a list of objects, got {_type_name(top)}")], fmt
    rows, issues = [], []
    for n, obj in enumerate(top, start=1):
        _add_object(rows, issues, n, obj, "list item")
    return rows, issues, fmt


def _parse_json_items(text: str, fmt: str, why: str) -> tuple[Rows, list[RowIssue], str]:
    """A JSON list with an unusable item: parse item by item (raw_decode) so only that item is rejected."""
    dec = json.JSONDecoder(object_pairs_hook=_object)
    i = len(text) - len(text.lstrip())
    if not text.startswith("[", i):
        return [], [RowIssue(0, why)], fmt
    rows, issues, n, i = [], [], 0, i + 1
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return rows, issues, fmt
        n += 1
        try:
            obj, i = dec.raw_decode(text, i)
        except RecursionError:
            return rows, issues + [RowIssue(n, f"JSON nested more than {MAX_JSON_DEPTH} levels deep; the rest of "
                                                  "the file was not read")], fmt
        except ValueError as e:
            reason = (f"a number too long to read ({str(e).split(';')[0]})" if not isinstance(e, json.JSONDecodeError)
                      else f"invalid JSON: {e.msg}")
            return rows, issues + [RowIssue(n, reason + "; the rest of the file was not read")], fmt
        if _too_deep(obj):
            issues.append(RowIssue(n, f"JSON nested more than {MAX_JSON_DEPTH} levels deep"))
        else:
            _add_object(rows, issues, n, obj, "list item")


def _add_object(rows: Rows, issues: list[RowIssue], n: int, obj: Any, where: str) -> None:
    if isinstance(obj, _DuplicateKeys):
        keys = ", ".join(f"`{k}`" for k in obj.duplicated)
        issues.append(RowIssue(n, f"duplicate key {keys} in one object: each field may appear once (which value is "
                                  "meant?)"))
    elif isinstance(obj, dict):
        rows.append((n, obj))
    else:
        issues.append(RowIssue(n, f"not a JSON object (got {_type_name(obj)}); each {where} must be {{...}}"))


def _parse_csv(text: str, fmt: str) -> tuple[Rows, list[RowIssue], str]:
    first = text.split("\n", 1)[0]
    delim = "\t" if fmt == "tsv" else max(",;\t", key=first.count)  # spreadsheets in some locales write ';'
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    rows, issues, header = [], [], None
    n, end = 0, 0  # n: the file line a record starts on (a quoted cell may span lines); end: its last line
    try:
        for cells in reader:
            n, end = end + 1, reader.line_num
            if header is None:
                known = {k for names in _ALIASES.values() for k in names}  # typed by people: 'Question' is fine
                header = [h.strip().lower() if h.strip().lower() in known else h.strip() for h in cells]
                counts = Counter(header)  # not header.count(): quadratic in a (hostile) 100,000-column header
                dupes = sorted(h for h, c in counts.items() if c > 1 and h)
                if dupes:
                    return [], [RowIssue(1, f"header repeats column(s) {', '.join(dupes)}")], fmt
                continue
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                issues.append(RowIssue(n, f"row has {len(cells)} cells but the header has {len(header)} columns"
                                       " (an unquoted delimiter or line break?)"))
                continue
            rows.append((n, {h: c for h, c in zip(header, cells) if h}))
    except csv.Error as e:
        issues.append(RowIssue(end + 1, f"CSV parse error at line {end + 1}: {e}; the rest of the file was not read"))
    return rows, issues, fmt


def _parse_txt(text: str, fmt: str) -> tuple[Rows, list[RowIssue], str]:
    lines = [ln.strip() for ln in text.split("\n")]
    filled = [i for i, ln in enumerate(lines, start=1) if ln]
    if not filled or all(lines[filled[0] - 1:filled[-1]]):  # no blank line inside: one passage per line
        return [(n, {"text": lines[n - 1]}) for n in filled], [], fmt
    blocks = groupby(enumerate(lines, start=1), key=lambda nl: bool(nl[1]))
    # paragraph mode: lines of a block are hard wrapping (layout), so they are joined with spaces
    paras = [list(block) for is_text, block in blocks if is_text]
    return [(p[0][0], {"text": " ".join(ln for _, ln in p)}) for p in paras], [], fmt


# --- row validation


def _validate(rows: Rows, *, from_csv: bool) -> tuple[tuple[QAItem, ...], list[RowIssue]]:
    items, issues, seen = [], [], {}
    for line, obj in rows:
        item, problems, warns = _row_to_item(obj, line, from_csv)
        issues += [RowIssue(line, w, "warning") for w in warns]
        if problems:
            issues.append(RowIssue(line, "; ".join(problems)))
            continue
        key = " ".join((item.text if item.is_passage else item.question).split()).casefold()
        if key in seen:
            what = "passage" if item.is_passage else "question"
            issues.append(RowIssue(line, f"duplicate {what} (same as line {seen[key]}); kept line {seen[key]}, "
                                         "skipped this row", "warning"))
            continue
        seen[key] = line
        items.append(item)
    return tuple(items), issues


def _row_to_item(obj: dict, line: int, from_csv: bool) -> tuple[QAItem | None, list[str], list[str]]:
    problems: list[str] = []
    values, extra = {}, {}
    used = set()
    for canon, names in _ALIASES.items():
        present = [k for k in names if obj.get(k) is not None]
        present.sort(key=lambda k: from_csv and not obj[k].strip())  # in CSV a filled alias beats a blank column
        if present:
            values[canon] = (present[0], obj[present[0]])
            used.add(present[0])
    for k, v in obj.items():
        if k not in used and v is not None and not (from_csv and v == ""):
            extra[str(k)] = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    if from_csv:  # a blank cell means "not given" for every optional field
        values = {c: kv for c, kv in values.items() if c in ("question", "answer") or kv[1].strip()}

    clean: dict[str, Any] = {}
    for canon, (src, v) in values.items():
        label = f"`{src}`" if src == canon else f"`{src}` (used as {canon})"
        if canon in _LIST_FIELDS:
            v, err = (_csv_list(v, label) if from_csv else (v, None))
            err = err or _list_error(v, label)
        else:
            err = None if isinstance(v, str) else f"{label} must be a string, got {_type_name(v)}"
        if err is None:
            too_long = [s for s in (v if isinstance(v, list) else [v]) if len(s) > MAX_FIELD_CHARS]
            if too_long:
                err = f"{label} is too long ({len(too_long[0]):,} characters; the limit is {MAX_FIELD_CHARS:,})"
        if err:
            problems.append(err)
        else:
            clean[canon] = v

    q, a, text = clean.get("question"), clean.get("answer"), clean.get("text")
    qa_keys = [c for c in ("question", "answer") if c in values]
    qa_given = any(c not in clean or clean[c].strip() for c in qa_keys)  # a wrongly typed field still counts
    if not qa_given and "text" in values:  # a raw passage (question/answer absent or blank)
        if text is not None and not text.strip():
            problems.append("empty `text`")
    elif not qa_keys:
        fields = ", ".join(map(str, obj)) or "none"
        problems.append(f"no `question` + `answer` (or `text`) field; fields found: {fields}")
    else:
        qa_given = True
        for canon, alts in (("question", "prompt/input"), ("answer", "completion/output")):
            if canon not in values:
                problems.append(f"missing `{canon}` (or {alts})")
            elif canon in clean and not clean[canon].strip():
                problems.append(f"empty {canon}")
    if problems:
        return None, problems, []

    warns = []
    if qa_given:
        for i, p in enumerate(clean.get("perturbed_answers", ()), start=1):
            if p.strip().casefold() == a.strip().casefold():
                warns.append(f"perturbed answer {i} is the same as the correct answer (truth ratio would be 1)")
    item = QAItem(
        question=q if qa_given else "",
        answer=a if qa_given else text,
        paraphrased_answer=clean.get("paraphrased_answer"),
        perturbed_answers=tuple(clean.get("perturbed_answers", ())),
        keywords=tuple(clean.get("keywords", ())),
        concept=clean.get("concept"),
        text=text,
        line=line,
        extra=tuple(sorted(extra.items())),
        entity=clean.get("entity"),
        paraphrased_question=clean.get("paraphrased_question"),
    )
    return item, [], warns


def _near_misses(items: tuple[QAItem, ...]) -> list[RowIssue]:
    """A field the audit does not read whose name is close to one it does (`perturbed`, `paraphrased_answers`):
    one file-level warning naming the field it was probably meant to be, since its values are otherwise unused and
    the metrics that need them (truth ratio, paraphrase probes) quietly lose their input. Fields far from every known
    name (ids, sources) are kept aside without a word."""
    import difflib

    canon_of = {name: canon for canon, names in _ALIASES.items() for name in names}
    given = {c for c in _ALIASES if any(getattr(it, c, None) for it in items)}
    counts = Counter(k for it in items for k, _ in it.extra)
    out = []
    for key, n in sorted(counts.items()):
        low = key.strip().lower()
        close = difflib.get_close_matches(low, canon_of, n=1, cutoff=0.75) or [
            name for name in canon_of if len(low) >= 5 and (name.startswith(low) or low.startswith(name))][:1]
        if close and canon_of[close[0]] not in given:
            canon = canon_of[close[0]]
            out.append(RowIssue(0, f"field `{key}` ({n} row{'s' * (n > 1)}) is not one the audit reads: did you mean "
                                   f"`{canon}`? Its values are unused as given", "warning"))
    return out


def _csv_list(v: str, label: str) -> tuple[Any, str | None]:
    """A CSV cell holding a list: a JSON list ('["a", "b"]') or a '|'-separated string ('a | b')."""
    s = v.strip()
    if s.startswith("["):
        try:
            value, why = _json_loads(s)
        except json.JSONDecodeError as e:
            return None, f"{label} starts with '[' but is not a valid JSON list ({e.msg}); use JSON or 'a | b | c'"
        return (None, f"{label}: {why}") if why else (value, None)
    return [p.strip() for p in s.split("|") if p.strip()], None


def _list_error(v: Any, label: str) -> str | None:
    if not isinstance(v, list):
        return f"{label} must be a list of strings, got {_type_name(v)}"
    for i, s in enumerate(v, start=1):
        if not isinstance(s, str):
            return f"{label} must be a list of strings, but element {i} is {_type_name(s)}"
        if not s.strip():
            return f"{label} element {i} is empty"
    return None


# --- helpers


def _item_to_dict(it: QAItem) -> dict:
    out: dict[str, Any] = {"text": it.text} if it.is_passage else {"question": it.question, "answer": it.answer}
    optional = {"paraphrased_answer": it.paraphrased_answer, "perturbed_answers": list(it.perturbed_answers) or None,
                "keywords": list(it.keywords) or None, "concept": it.concept, "text": it.text}
    out.update({k: v for k, v in optional.items() if v is not None and k not in out})
    for k, v in it.extra:
        out.setdefault(k, v)
    return out


def _fail(msg: str, label: str, fmt: str = "", line: int = 0):
    """Raise for a file-level problem; the report carries the same message as its single issue."""
    raise DataError(msg, LoadReport((), (RowIssue(line, msg),), 0, fmt, label))


def _issue_list(issues: list[RowIssue]) -> str:
    shown = [f"\n  line {i.line}: {i.reason}" if i.line else f"\n  {i.reason}" for i in issues[:_MAX_LISTED]]
    more = f"\n  ... and {len(issues) - _MAX_LISTED} more" if len(issues) > _MAX_LISTED else ""
    return (":" if shown else "") + "".join(shown) + more


def _lines_text(lines) -> str:
    lines = list(lines)
    head = ", ".join(str(n) for n in lines[:10]) + (f", ... +{len(lines) - 10} more" if len(lines) > 10 else "")
    return ("line " if len(lines) == 1 else "lines ") + head


def _type_name(v: Any) -> str:
    """JSON's words for a value's type, since that is what the person wrote the file in."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"a number ({v})"
    names = {type(None): "null", bool: "true/false", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(v), type(v).__name__)
