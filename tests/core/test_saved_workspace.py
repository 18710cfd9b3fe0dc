"""A saved workspace is the same workspace read back; a file that names gone files says which; the colour book gives
each name one colour across workspaces and a new name a colour nobody has."""

from __future__ import annotations

import json

import pytest

from unlearn_core.data.items import PromptFormat
from unlearn_core.run.saved import (
    WorkspaceFileError,
    colour_book,
    load_saved,
    read_record,
    record_id,
    save_record,
    spec_from_record,
    workspace_record,
)
from unlearn_core.run.workspace import WorkspaceSpec
from unlearn_core.viz import theme


def _spec(tmp_path, **kw) -> WorkspaceSpec:
    for name in ("orig", "ga", "ref"):
        (tmp_path / name).mkdir(exist_ok=True)
    (tmp_path / "forget.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    return WorkspaceSpec(original=str(tmp_path / "orig"), unlearned=(("ga", str(tmp_path / "ga")),),
                         forget=str(tmp_path / "forget.jsonl"), retain_only=str(tmp_path / "ref"), **kw)


def test_a_saved_workspace_reads_back_equal(tmp_path):
    fmt = PromptFormat.chat_format(system_prompt="Be brief.", chat_template="{{ messages }}",
                                   template_vars={"bos_token": "<s>", "additional_special_tokens": ("<a>", "<b>")})
    spec = _spec(tmp_path, prompt_format=fmt, device="cpu", resident=2, max_memory="cpu=4GiB")
    record = workspace_record(spec, str(tmp_path / "r.sqlite"))
    rid = save_record(json.loads(json.dumps(record)), tmp_path / "saved")
    assert save_record(record, tmp_path / "saved") == rid  # content-addressed: saved once
    back = spec_from_record(load_saved(tmp_path / "saved", rid))
    assert back == spec and back.prompt_format.key() == spec.prompt_format.key()


def test_a_workspace_kept_with_valid_rows_only_says_so_and_keeps_its_old_id(tmp_path):
    spec = _spec(tmp_path)
    plain, partial = workspace_record(spec), workspace_record(spec, accept_partial=True)
    assert "accept_partial" not in plain and partial["accept_partial"] is True  # an old file's id is unchanged
    assert record_id(plain) != record_id(partial) and spec_from_record(partial) == spec


def test_a_saved_workspace_naming_gone_files_says_which(tmp_path):
    record = workspace_record(_spec(tmp_path))
    (tmp_path / "ga").rmdir()
    (tmp_path / "forget.jsonl").unlink()
    with pytest.raises(WorkspaceFileError, match=r"unlearned ga .*ga; forget set .*forget.jsonl"):
        spec_from_record(record)
    with pytest.raises(WorkspaceFileError, match="not a saved workspace"):
        spec_from_record({"original": "x"})
    with pytest.raises(WorkspaceFileError, match="not a saved workspace id"):
        load_saved(tmp_path, "../../etc/pa")
    with pytest.raises(WorkspaceFileError, match="as JSON"):
        read_record(b"{nope")


def test_colour_book_keeps_a_name_colour_across_workspaces(tmp_path):
    lab = ["original", "ga", "graddiff", "npo", "rmu", "suppressed_head", "retrained", "retain_only"]
    try:
        book = colour_book(tmp_path, lab)
        theme.pin_colors(book)
        full = theme.checkpoint_colors(lab)
        assert len(set(full.values())) == len(lab)
        # the first workspace's colours are the ones the sorted-name rule gives: nothing changes for it
        theme.pin_colors({})
        assert theme.checkpoint_colors(lab) == full
        theme.pin_colors(colour_book(tmp_path, ["original", "npo", "rmu"]))  # a later workspace, same folder
        assert theme.checkpoint_colors(["original", "npo", "rmu"]) == {n: full[n] for n in ("original", "npo", "rmu")}
        book2 = colour_book(tmp_path, ["original", "simnpo", "npo"])  # a new name: a colour nobody has
        assert book2["simnpo"] not in book.values() and json.loads((tmp_path / "checkpoint_colours.json").read_text())
        theme.pin_colors(book2)
        assert theme.checkpoint_colors(["npo", "simnpo"])["npo"] == full["npo"]
        # two names pinned to one colour in one set: the second moves to a free colour
        theme.pin_colors({"a": theme.UNLEARNED_COLORS[0], "b": theme.UNLEARNED_COLORS[0]})
        c = theme.checkpoint_colors(["a", "b"])
        assert c["a"] == theme.UNLEARNED_COLORS[0] and c["b"] != c["a"]
    finally:
        theme.pin_colors({})


def test_provenance_without_loaded_models_reads_the_placement_they_load_with(tmp_path):
    """The page zip's provenance.json: device and dtype as the spec's models load (CPU: float32), no model loaded."""
    from unlearn_core.run.provenance import provenance

    spec = _spec(tmp_path, device="cpu")
    data = spec.load_data()
    prov = provenance(None, data, None, spec)
    assert (prov["device"], prov["dtype"]) == ("cpu", "float32")
    assert prov["prompt_format"]["kind"] == "plain" and prov["libraries"]["torch"]
