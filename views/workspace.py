"""Workspace: which checkpoints and which forget / retain / holdout sets this audit compares.

Every typed path (checkpoint folders, results store) goes through checkpoints.guard before anything reads it: with a
workspace root (UNLEARN_AUDIT_ROOT) a path outside it is refused here, and Apply stays disabled.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from unlearn_core.checkpoints.adapters import describe
from unlearn_core.checkpoints.guard import PathOutsideRoot, checkpoint_source, store_location, workspace_root
from unlearn_core.checkpoints.placement import normalise_max_memory
from unlearn_core.checkpoints.source import CheckpointError
from unlearn_core.data.items import PromptFormat
from unlearn_core.data.sets import DataError, example_files, load_items
from unlearn_core.run.workspace import WorkspaceSpec
from views._shared import sidebar, state

SPLITS = {"forget": "Forget set", "retain": "Retain set", "holdout": "Holdout set (non-members for MIA)"}
LAB, FOLDERS = "Demo lab", "Local folders"
UPLOAD_TYPES = ["jsonl", "ndjson", "json", "csv", "tsv", "txt"]

ws = state.workspace()
root = workspace_root()
refused: list[str] = []  # typed paths the guard refused: shown as errors, and Apply stays disabled


def _guarded(check, typed, *args):
    """check(typed, ...) or None with the refusal recorded (the path is then never read or written)."""
    try:
        return check(typed, *args)
    except PathOutsideRoot as e:
        refused.append(str(e))
        return None
lab = state.lab_dir()
meta = state.lab_meta(lab)
lab_ckpts = {n: str(lab / c["path"]) for n, c in meta["checkpoints"].items()}

st.title("Workspace")
st.write("Choose the checkpoints to compare and the data to audit them on, then **Apply**. "
         "The demo lab is loaded by default.")
st.markdown("Current: " + sidebar.chips(ws.names()), unsafe_allow_html=True)
if flash := st.session_state.pop("flash", None):
    st.success(flash)
    st.page_link("views/scorecard.py", label="Open the behavioural scorecard", icon=":material/arrow_forward:")


def _load_saved(raw: bytes) -> None:
    """A saved workspace file: every path through the same guard as typed ones, then applied like Apply does."""
    from unlearn_core.checkpoints.guard import resolve_inside
    from unlearn_core.run.saved import WorkspaceFileError, read_record, record_id

    try:
        record = read_record(raw)
        if record_id(record) == st.session_state.get("loaded_saved"):
            return  # the uploader keeps its file across reruns: applied once
        if root is not None:
            for n, p in [("original", record.get("original")), ("retain-only", record.get("retain_only")),
                         *((f"unlearned {n}", p) for n, p in record.get("unlearned") or [])]:
                if p:
                    checkpoint_source(p, root, n)
            for split in SPLITS:
                if record.get(split):
                    resolve_inside(record[split], root, split)
            if record.get("store_path"):
                store_location(record["store_path"], root)
        new = state.save(state.from_record(record))
        state.models(new)
    except (WorkspaceFileError, PathOutsideRoot, CheckpointError, DataError, ValueError, OSError) as e:
        st.error(f"Saved workspace not loaded: {e}")
        return
    st.session_state["loaded_saved"] = record_id(record)
    state.set_workspace(new)
    st.session_state["flash"] = f"Saved workspace loaded: {len(new.names())} checkpoints ({', '.join(new.names())})."
    st.rerun()




# ------------------------------------------------------------------------------------------------ checkpoints

def _in_lab(path: str | None) -> str | None:
    return next((n for n, p in lab_ckpts.items() if p == path), None)


st.subheader("1. Checkpoints")
lab_mode = all(_in_lab(p) for p in [ws.spec.original, *(p for _, p in ws.spec.unlearned)])
source = st.radio("Checkpoints from", [LAB, FOLDERS], index=0 if lab_mode else 1, horizontal=True,
                  key="ckpt_source")
unlearned: list[tuple[str, str]] = []
if source == LAB:
    table = pd.DataFrame([
        {"checkpoint": n, "kind": c.get("kind", ""), "ground truth": c.get("ground_truth") or "",
         "forget acc (build)": c.get("scores", {}).get("forget_acc"),
         "retain acc (build)": c.get("scores", {}).get("retain_acc")}
        for n, c in meta["checkpoints"].items()
    ])
    st.caption(f"Demo lab `{lab}` (config {meta.get('config', '?')}, {meta.get('arch', '?')})")
    st.dataframe(table, hide_index=True, width="stretch")
    names = list(lab_ckpts)
    cur_orig = _in_lab(ws.spec.original) or "original"
    c1, c2, c3 = st.columns([1, 2, 1])
    original_name = c1.selectbox("Original", names, index=names.index(cur_orig) if cur_orig in names else 0,
                                 key="lab_original")
    options = [n for n in names if n not in ("original", "retain_only", original_name)]
    current = [n for n, _ in ws.spec.unlearned if n in options] if lab_mode else options
    chosen = c2.multiselect("Unlearned checkpoints", options, default=current or options, key="lab_unlearned")
    ro_options = ["(none)", *[n for n in names if n != original_name]]
    cur_ro = _in_lab(ws.spec.retain_only) if ws.spec.retain_only else "(none)"
    ro = c3.selectbox("Retain-only reference", ro_options,
                      index=ro_options.index(cur_ro) if cur_ro in ro_options else 0, key="lab_retain_only",
                      help="A model trained without the forget set: what true deletion looks like")
    original_path = lab_ckpts[original_name]
    unlearned = [(n, lab_ckpts[n]) for n in chosen]
    retain_only_path = None if ro == "(none)" else lab_ckpts[ro]
else:
    st.caption("Hugging Face causal-LM folders (config.json + safetensors), PEFT LoRA adapter folders (merged into "
               "their base, or into the original), or hub ids already in the local cache."
               + (f" Paths must stay inside the workspace root `{root}`." if root else ""))
    original_path = st.text_input("Original checkpoint folder", value=ws.spec.original, key="path_original")
    default_lines = "\n".join(f"{n}={p}" for n, p in ws.spec.unlearned)
    lines = st.text_area("Unlearned checkpoints, one per line as NAME=FOLDER", value=default_lines,
                         key="paths_unlearned", height=120)
    bad_lines = []
    for i, line in enumerate(lines.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, path = line.partition("=")
        if not sep or not name.strip() or not path.strip():
            bad_lines.append(i)
        else:
            unlearned.append((name.strip(), path.strip()))
    if bad_lines:
        st.error(f"Line(s) {', '.join(map(str, bad_lines))}: write NAME=FOLDER, e.g. `npo=/models/npo`")
    retain_only_path = st.text_input("Retain-only checkpoint folder (optional)", value=ws.spec.retain_only or "",
                                     key="path_retain_only").strip() or None
    if original_path.strip():
        original_path = _guarded(checkpoint_source, original_path, root, "Original checkpoint folder") or ""
    unlearned = [(n, g) for n, p in unlearned if (g := _guarded(checkpoint_source, p, root, f"Unlearned {n}"))]
    if retain_only_path:
        retain_only_path = _guarded(checkpoint_source, retain_only_path, root, "Retain-only checkpoint folder")

with st.expander("Advanced: device, loading, prompt format, results store"):
    a1, a2 = st.columns(2)
    device = a1.selectbox("Device", ["auto", "cpu", "cuda"], index=["auto", "cpu", "cuda"].index(ws.spec.device)
                          if ws.spec.device in ("auto", "cpu", "cuda") else 0, key="device")
    allow_pickle = a1.checkbox("Allow pickle (.bin) weights", value=ws.spec.allow_pickle, key="allow_pickle",
                               help="Only for checkpoints you trust: pickle files can run code when loaded")
    trust_remote_code = a1.checkbox("Trust remote code", value=ws.spec.trust_remote_code, key="trust_remote_code")
    use_chat = a2.checkbox(
        "Use the checkpoint's chat template", value=ws.spec.prompt_format.chat, key="use_chat_template",
        help="Render every prompt with the ORIGINAL checkpoint's own chat template (its tokenizer's "
             "chat_template.jinja or tokenizer_config.json) over [system message, user = the question] with the "
             "generation prompt, as tokenizer.apply_chat_template does; the answer follows directly (the CLI's "
             "--chat-template). For chat models fine-tuned in their chat format. The data check shows the rendered "
             "prompt and its tokens")
    system_prompt = a2.text_input(
        "System prompt (chat template only)", key="system_prompt", disabled=not use_chat,
        value=ws.spec.prompt_format.system_prompt or "",
        help="The system message (the CLI's --system-prompt). Empty: none is passed, and a template that writes its "
             "own default then uses it (SmolLM2's writes 'You are a helpful AI assistant named SmolLM, trained by "
             "Hugging Face')")
    shown = PromptFormat.template if ws.spec.prompt_format.chat else ws.spec.prompt_format.template
    template = a2.text_input("Prompt template (must contain {question})", key="prompt_template", value=shown,
                             disabled=use_chat,
                             help="A plain prompt: the question put in at {question}, the answer after the prompt "
                                  "(not used with the chat template)")
    budget_text = a1.text_input(
        "Memory budget (optional, spreads a large checkpoint)", key="max_memory",
        value=",".join(f"{d}={n / 2**30:g}GiB" for d, n in ws.spec.max_memory or ()), placeholder="0=70GiB,cpu=100GiB",
        help="DEVICE=SIZE pairs (GPU index or cpu): checkpoints are placed with accelerate's device_map='auto' within "
             "this budget, shared by every checkpoint loaded at once (the CLI's --max-memory). Empty: one device.")
    store_path = a2.text_input("Results store (SQLite file)", value=ws.store_path, key="store_path",
                               help="Results computed once are served from here, across sessions and restarts"
                               + (f"; on this server only under `{root}` or the app's data folder" if root else ""))
# the store a server admin configured (env or the lab default) is always allowed, typed paths only under the root
store_file = _guarded(store_location, store_path.strip() or str(lab / "results.sqlite"), root,
                      (os.environ.get(state.ENV_STORE, ""), str(lab / "results.sqlite"), ws.store_path),
                      "Results store")


# ------------------------------------------------------------------------------------------------ data

st.subheader("2. Data")
with st.expander("Example files (formats: JSONL, JSON, CSV/TSV, TXT)"):
    st.caption("Fields: `question` + `answer` (or `text` for passages); optional `paraphrased_answer`, "
               "`perturbed_answers` (list), `keywords` (list), `concept`. TOFU field names work as they are. "
               "`forget_with_errors.jsonl` shows how bad rows are reported.")
    ex_cols = st.columns(4)
    for i, (name, path) in enumerate(sorted(example_files().items())):
        ex_cols[i % 4].download_button(name, Path(path).read_bytes(), name, key=f"example_{name}",
                                       on_click="ignore", icon=":material/download:")


def _keep_upload(raw: bytes, name: str) -> str:
    """Uploaded bytes saved content-addressed beside the results store, so the workspace names a real file (its
    forget/retain/holdout fields are paths, never display labels) and the audit can be re-run from it."""
    import hashlib

    folder = Path(store_file or ws.store_path).parent / "uploads"  # a refused store path is never written to
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in {f".{t}" for t in UPLOAD_TYPES} else ".txt"
    path = folder / f"{hashlib.sha256(raw).hexdigest()[:16]}{suffix}"
    if not path.exists():
        path.write_bytes(raw)
    return str(path)


def load_split(split: str):
    """(items or None, label, path or None, ok). Shows the validation report row by row for an upload with bad
    rows. `path` is the file the items came from (an upload is kept beside the results store)."""
    lab_file = lab / meta["data"][split]
    choices = ["Demo lab file", "Upload"] + ([] if split == "forget" else ["None"])
    how = st.radio(SPLITS[split], choices, horizontal=True, key=f"src_{split}")
    if how == "None":
        return (), "none", None, True
    if how == "Demo lab file":
        st.caption(f"`{lab_file}`")
        return load_items(lab_file).items, f"demo lab {split} set", str(lab_file), True
    up = st.file_uploader(f"Upload the {split} set", type=UPLOAD_TYPES, key=f"up_{split}",
                          label_visibility="collapsed")
    if up is None:
        st.info(f"Upload a {split} file, or pick the demo lab file.")
        return None, "", None, split != "forget"
    raw = up.getvalue()
    try:
        report = load_items(raw, name=up.name)
    except DataError as e:
        report = e.report
        if report is None or not report.items:
            st.error(str(e))
            if report is not None and len(report.errors):
                st.dataframe(report.to_frame(), hide_index=True, width="stretch")
            return None, "", None, False
        n_bad = len(report.rejected_lines)
        where = ("line " if n_bad == 1 else "lines ") + ", ".join(map(str, report.rejected_lines))
        st.error(f"{up.name}: {n_bad} of {report.n_rows} rows rejected ({where}). "
                 "Fix the file, or keep only the valid rows.")
        st.dataframe(report.to_frame(), hide_index=True, width="stretch", key=f"issues_{split}")
        keep = st.checkbox(f"Keep the {len(report.items)} valid rows", key=f"keep_{split}")
        if not keep:
            return None, "", None, False
        report = load_items(raw, name=up.name, accept_partial=True)
        kept_partial.add(split)
    st.success(f"{up.name}: {report.summary()}")
    if report.warnings:
        with st.expander(f"{len(report.warnings)} warnings"):
            st.dataframe(report.to_frame(), hide_index=True, width="stretch")
    return report.items, f"upload {up.name}", _keep_upload(raw, up.name), True


loaded = {}
kept_partial: set[str] = set()  # splits whose upload is kept with its valid rows only
paths: dict[str, str | None] = {}
ok = True
for split in SPLITS:
    with st.container(border=True):
        items, label, paths[split], split_ok = load_split(split)
    loaded[split] = (items, label)
    ok = ok and split_ok and items is not None


# ------------------------------------------------------------------------------------------------ apply

st.subheader("3. Apply")
problems = []
if not unlearned:
    problems.append("choose at least one unlearned checkpoint")
if not original_path.strip():
    problems.append("give the original checkpoint")
if not ok:
    problems.append("the data above needs attention")
if not use_chat and "{question}" not in template:
    problems.append("the prompt template must contain {question}")
max_memory = None
if budget_text.strip():
    try:
        max_memory = normalise_max_memory(budget_text)
    except ValueError as e:
        st.error(f"Memory budget: {e}")
        problems.append("the memory budget is not DEVICE=SIZE pairs")
for msg in refused:
    st.error(f"Refused: {msg}")
if refused:
    problems.append("a path above is not allowed on this server")
def _one_at_a_time(models, n: int) -> str:
    residency = getattr(models.original, "residency", None)
    if residency is None:
        return ""
    return (f" They do not all fit in memory: at most {residency.capacity} of {n} are kept at once (the original "
            "stays; each other checkpoint is loaded when an analysis reaches it, so analyses take longer).")


def _prompt_format(chat: bool, system: str, template: str) -> PromptFormat:
    """The chat format (its template is read from the original when the spec is built: a clear error when it has
    none) or the plain template, keeping the current answer prefix when that is what is shown."""
    if chat:
        return PromptFormat.chat_format(system_prompt=system.strip() or None)
    prefix = PromptFormat.answer_prefix if ws.spec.prompt_format.chat else ws.spec.prompt_format.answer_prefix
    return PromptFormat(template, prefix)


if problems:
    st.warning("Cannot apply yet: " + "; ".join(problems) + ".")

if st.button("Apply workspace", type="primary", disabled=bool(problems), key="apply"):
    try:
        from unlearn_core.types import AuditData

        spec = WorkspaceSpec(
            original=original_path.strip(), unlearned=tuple(unlearned), forget=paths["forget"] or "",
            retain_only=retain_only_path, retain=paths["retain"], holdout=paths["holdout"],
            device=device, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, max_memory=max_memory,
            prompt_format=_prompt_format(use_chat, system_prompt, template),
        )
        infos = spec.inspect()  # compatibility (tokenizer, vocabulary, shapes) before anything is loaded
        data = AuditData(loaded["forget"][0], loaded["retain"][0] or (), loaded["holdout"][0] or (),
                         spec.prompt_format)
        new = state.save(state.Workspace(spec, data, str(store_file), {s: loaded[s][1] for s in SPLITS},
                                         accept_partial=bool(kept_partial & {s for s in SPLITS if paths[s]})))
        state.set_workspace(new)
        try:
            loaded_models = state.models(new)
        except Exception:
            state.set_workspace(ws)  # keep the previous, working workspace
            raise
    except (CheckpointError, ValueError, OSError, RuntimeError) as e:
        st.error(f"Workspace not applied: {e}")
    else:
        st.session_state["flash"] = (
            f"Workspace applied: {len(new.names())} checkpoints ({', '.join(new.names())}); forget "
            f"{len(data.forget)}, retain {len(data.retain)}, holdout {len(data.holdout)} items."
            + "".join(f" {n}: {describe(i)}." for n, i in infos.items() if i.adapter is not None)
            + _one_at_a_time(loaded_models, len(infos)))
        st.rerun()  # so the sidebar shows the new workspace too


# ------------------------------------------------------------------------------------------------ save / load
# last on the page, behind a switch: until asked for, the forget set's uploader is the page's only file input
if st.toggle("Save or load a workspace", key="ws_io"):
    import json as _json


    st.caption("A small JSON file naming the checkpoints, data files, prompt format and results store (no weights, "
               "no data copied). Applied workspaces are also saved in the app's folder and named in the page's "
               "URL (`?ws=...`), so a reload or a shared link comes back to them.")
    sc1, sc2 = st.columns([1, 2])
    sc1.download_button("Save this workspace", _json.dumps(ws.record(), indent=2),
                        "workspace.json", "application/json", key="ws_save", on_click="ignore",
                        icon=":material/download:")
    saved_file = sc2.file_uploader("Load a saved workspace", type=["json"], key="ws_load")
    if saved_file is not None:
        _load_saved(saved_file.getvalue())
