"""Session state of the dashboard: which lab, which workspace, loaded models and the results store.

Everything the pages share goes through here so a page stays "widgets -> core call -> plot". Loaded models are the
only st.cache_resource (read-only, shared by sessions, released when a new workspace is applied); results live in
the SQLite results store, so a rerun or a second session gets them back without recomputing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import streamlit as st

from unlearn_core.run.workspace import WorkspaceSpec
from unlearn_core.types import AuditData, ModelSet

ENV_LAB_DIR = "UNLEARN_AUDIT_LAB_DIR"
ENV_LAB_CONFIG = "UNLEARN_AUDIT_LAB_CONFIG"
ENV_STORE = "UNLEARN_AUDIT_STORE"  # results store path; default <lab dir>/results.sqlite
WS_KEY = "workspace"


# ---------------------------------------------------------------------------------------------------- demo lab


def lab_config() -> str:
    return os.environ.get(ENV_LAB_CONFIG, "default")


def lab_dir() -> Path:
    if os.environ.get(ENV_LAB_DIR):
        return Path(os.environ[ENV_LAB_DIR]).expanduser()
    from unlearn_core.lab.build import default_lab_dir

    return default_lab_dir(lab_config())


def lab_meta(path: Path | None = None) -> dict:
    return json.loads(((path or lab_dir()) / "lab.json").read_text())


def ensure_lab() -> Path:
    """The demo lab, built on first start with a visible progress bar (cached on disk, file-locked, atomic)."""
    path = lab_dir()
    if (path / "lab.json").exists():
        return path
    from unlearn_core.lab.build import build_lab

    st.info(f"First start: building the demo lab (config {lab_config()!r}) in {path}. This happens once.")
    bar = st.progress(0.0, text="Building the demo lab ...")

    def progress(frac: float, msg: str) -> None:
        bar.progress(min(max(float(frac), 0.0), 1.0), text=f"Building the demo lab: {msg}")

    # one process: a spawned worker re-runs the __main__ module, which under Streamlit is the page script itself
    # (scripts/run_app.sh builds the lab with the CLI's worker processes before the server starts)
    build_lab(path, lab_config(), progress=progress, verbose=False, jobs=1)
    bar.empty()
    return path


# ---------------------------------------------------------------------------------------------------- workspace


@dataclass(frozen=True)
class Workspace:
    """The applied workspace: checkpoint paths (spec), validated data and where results are stored."""

    spec: WorkspaceSpec
    data: AuditData
    store_path: str
    sources: dict[str, str] = field(default_factory=dict)  # split -> human label of where it came from
    saved_id: str | None = None  # the saved workspace file (app folder) it came from: the URL's ?ws=
    accept_partial: bool = False  # a data file kept with its valid rows only: read back so after a reload

    def record(self) -> dict:
        """The saved-workspace record (unlearn_core.run.saved) of this workspace."""
        from unlearn_core.run.saved import workspace_record

        return workspace_record(self.spec, self.store_path, self.sources, self.accept_partial)

    @property
    def key(self) -> str:
        return spec_key(self.spec)

    def names(self) -> list[str]:
        names = ["original", *(n for n, _ in self.spec.unlearned)]
        return names + (["retain_only"] if self.spec.retain_only else [])


def spec_key(spec: WorkspaceSpec) -> str:
    """Only the checkpoint half of the spec decides which models are loaded, and how: a new memory budget or number
    kept resident reloads them (placement never changes a number, so the results store keys leave it out)."""
    d = asdict(spec)
    keep = ("original", "unlearned", "retain_only", "device", "allow_pickle", "trust_remote_code", "max_memory",
            "resident")
    return json.dumps({k: d[k] for k in keep}, sort_keys=True, default=list)


def default_workspace() -> Workspace:
    from unlearn_core.run.workspace import lab_workspace

    path = ensure_lab()
    spec = lab_workspace(path)
    src = {s: f"demo lab {s} set" for s in ("forget", "retain", "holdout")}
    store_path = os.environ.get(ENV_STORE) or str(path / "results.sqlite")
    return Workspace(spec, spec.load_data(), store_path, src)


def app_folder() -> Path:
    """Where the app keeps saved workspaces and the colour book: beside the default results store."""
    return Path(os.environ.get(ENV_STORE) or lab_dir() / "results.sqlite").expanduser().parent


def saved_folder() -> Path:
    return app_folder() / "workspaces"


def workspace() -> Workspace:
    """The session's workspace; on a fresh session (a reload), the saved one the URL names (?ws=ID), else the demo
    lab. The URL is kept pointing at the applied workspace on every page."""
    if WS_KEY not in st.session_state:
        st.session_state[WS_KEY] = _restored() or default_workspace()
    ws = st.session_state[WS_KEY]
    if ws.saved_id and st.query_params.get("ws") != ws.saved_id:
        st.query_params["ws"] = ws.saved_id
    _pin_colours(ws)
    return ws


def _restored() -> Workspace | None:
    from unlearn_core.run.saved import WorkspaceFileError, load_saved

    rid = st.query_params.get("ws")
    if not rid:
        return None
    try:
        ws = from_record(load_saved(saved_folder(), rid))
    except (WorkspaceFileError, ValueError, OSError) as e:
        st.session_state["flash_warning"] = f"The workspace in the link could not be restored ({e}): opened the demo " \
                                            "lab instead."
        st.query_params.pop("ws", None)
        return None
    return replace(ws, saved_id=rid)


def from_record(record: dict) -> Workspace:
    """A Workspace from a saved-workspace record: checkpoints, data files (loaded and validated now), store."""
    from unlearn_core.run.saved import spec_from_record

    spec = spec_from_record(record)
    store_path = record.get("store_path") or str(app_folder() / "results.sqlite")
    partial = bool(record.get("accept_partial", False))
    return Workspace(spec, spec.load_data(accept_partial=partial), store_path, dict(record.get("sources") or {}),
                     accept_partial=partial)


def save(ws: Workspace) -> Workspace:
    """Saved in the app folder (content-addressed: the same workspace is one file) and named in the URL."""
    from unlearn_core.run.saved import save_record

    rid = save_record(ws.record(), saved_folder())
    return replace(ws, saved_id=rid)


def _pin_colours(ws: Workspace) -> None:
    """Every checkpoint keeps the colour the app folder's colour book gave its name, across workspaces."""
    from unlearn_core.viz import theme

    if set(ws.names()) - {"original", "retain_only"} <= set(theme.pinned()):
        return
    from unlearn_core.run.saved import colour_book

    theme.pin_colors(colour_book(app_folder(), ws.names()))


def set_workspace(ws: Workspace) -> None:
    old = st.session_state.get(WS_KEY)
    if old is None or old.key != ws.key:
        _load_models.clear()  # release the previous checkpoints (memory) before the next ones load
    st.session_state[WS_KEY] = ws
    st.session_state.pop("results", None)
    if ws.saved_id:
        st.query_params["ws"] = ws.saved_id
    else:
        st.query_params.pop("ws", None)


@st.cache_resource(show_spinner=False, max_entries=2)
def _load_models(key: str, _spec: WorkspaceSpec) -> ModelSet:
    return _spec.load_models()


def models(ws: Workspace | None = None) -> ModelSet:
    ws = ws or workspace()
    with st.spinner(f"Loading {len(ws.names())} checkpoints ..."):
        return _load_models(ws.key, ws.spec)


@st.cache_resource(show_spinner=False)
def _store(path: str):
    from unlearn_core.run.jobs import ResultsStore

    return ResultsStore(path)


def store(ws: Workspace | None = None):
    return _store((ws or workspace()).store_path)


# ---------------------------------------------------------------------------------------------------- analyses


def checkpoint_hashes(ws: Workspace) -> dict[str, str] | None:
    """name -> content hash from the folders alone (what LoadedModel.hash holds), or None if any cannot be read.

    Lets a page find its result in the store without loading a single model: a warm start skips loading entirely.
    """
    from unlearn_core.checkpoints.adapters import checkpoint_hash

    paths = {"original": ws.spec.original, **dict(ws.spec.unlearned)}
    if ws.spec.retain_only:
        paths["retain_only"] = ws.spec.retain_only
    try:  # a LoRA adapter's hash covers its base (the original when its own base is not here)
        return {n: checkpoint_hash(p, ws.spec.original) for n, p in paths.items()}
    except Exception:  # noqa: BLE001 - fall back to loading the models, which reports the problem properly
        return None


def shape(ws: Workspace):
    """What config defaults resolve against (analyses.spec.Shape), from the original's config.json when it can
    be read (no model loaded), else from the loaded original."""
    from unlearn_core.run.jobs import shape_of
    from unlearn_core.run.workspace import shape_from_folders

    found = shape_from_folders(ws.spec, ws.data)
    return found if found is not None else shape_of(models(ws), ws.data)


def plan(analysis, config, ws: Workspace | None = None):
    """The job of one analysis (a registry name or a SPEC) on this workspace: from the folders' hashes when they
    can be read (no model loaded: a warm start skips loading entirely), else from the loaded models."""
    from unlearn_core.run.jobs import plan as plan_job
    from unlearn_core.run.jobs import plan_for

    ws = ws or workspace()
    hashes = checkpoint_hashes(ws)
    if hashes is not None:
        return plan_job(analysis, hashes, ws.data.hash, config, shape(ws))
    return plan_for(analysis, models(ws), ws.data, config)


def stored_result(analysis, config, ws: Workspace | None = None):
    """(result, job) if the results store already has it (decoded once per session), else (None, job)."""
    from unlearn_core.run.jobs import serve

    ws = ws or workspace()
    job = plan(analysis, config, ws)
    memo = st.session_state.setdefault("results", {})
    if job.key in memo:
        return memo[job.key], job
    hit = serve(job, store(ws))
    if hit is not None:
        memo[job.key] = hit
    return hit, job


def run_or_serve(job, ws: Workspace | None = None, progress=None):
    """(result, from_store) of a planned job; the models load only if it must be computed."""
    from unlearn_core.run.jobs import run_or_serve as run_job

    ws = ws or workspace()
    result, from_store = run_job(job, lambda: models(ws), ws.data, store(ws), progress)
    st.session_state.setdefault("results", {})[job.key] = result
    return result, from_store


def run_with_progress(analysis, config, ws: Workspace | None = None, label: str | None = None, part: str = ""):
    """Run one registry analysis with a progress bar (with the time left) and a Stop button; returns (result,
    seconds, from_store).

    Stop (or any other click) makes Streamlit raise inside the next progress update, which unwinds out of the
    computation before the store's single write transaction: an interrupted run leaves nothing behind. `part`
    tells apart several runs of one analysis in one script run (their Stop buttons need distinct keys).
    """
    from unlearn_core.run.eta import with_eta

    ws = ws or workspace()
    job = plan(analysis, config, ws)
    models(ws)  # loaded before the progress bar appears (its own spinner)
    slot = st.empty()  # one placeholder: cleared when the run is over
    with slot.container(border=True):
        cols = st.columns([5, 1])
        bar = cols[0].progress(0.0, text=f"{label or analysis.title}: starting ...")
        cols[1].button("Stop", key=f"stop_{analysis.name}{part}", icon=":material/stop_circle:",
                       help="Cancel this run; nothing is written to the results store")
    st.session_state["running"] = analysis.name

    def show(frac: float, msg: str) -> None:
        bar.progress(min(max(float(frac), 0.0), 1.0), text=f"{label or analysis.title}: {msg}")

    t0 = time.perf_counter()
    result, from_store = run_or_serve(job, ws, with_eta(show))
    seconds = time.perf_counter() - t0
    st.session_state.pop("running", None)
    slot.empty()
    return result, seconds, from_store


@dataclass
class ManyRun:
    """What run_many did: analyses now in the store, those skipped (name -> why), the processes used."""

    done: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    processes: int = 1
    why: str = ""
    seconds: float = 0.0


def run_many(names: list[str], ws: Workspace | None = None, seconds: dict[str, float] | None = None) -> ManyRun:
    """Registry analyses at their default settings, each computed unless the store has it: in worker processes
    beside this one when the machine has the cores and memory for them (run.parallel.default_jobs_for, the CLI's
    rule; with this machine's estimated seconds the longest analysis is split by checkpoints where it pays), else one
    after the other here. Workers write under the keys the page plans (same code, same seeds, one thread
    each), so what follows reads every result back from the store. One progress bar with a Stop button; a worker's
    error stops the rest and is raised as a RuntimeError naming the analysis."""
    from unlearn_core.analyses.registry import cannot_run, get_spec
    from unlearn_core.run.jobs import stored
    from unlearn_core.run.parallel import default_jobs_for, prefill_store

    ws = ws or workspace()
    out = ManyRun(skipped=cannot_run(names, ws.data))
    todo = []
    for name in names:
        if name in out.skipped:
            continue
        if stored(plan(get_spec(name), None, ws), store(ws)):
            out.done.append(name)
        else:
            todo.append(name)
    out.processes, out.why = default_jobs_for(ws.spec, todo, seconds) if todo else (1, "nothing to compute")
    t0 = time.perf_counter()
    if out.processes < 2:
        for i, name in enumerate(todo):
            spec = get_spec(name)
            try:
                run_with_progress(spec, spec.default_config(), ws, label=f"{i + 1}/{len(todo)} {spec.title}")
                out.done.append(name)
            except ValueError as e:  # this workspace cannot feed the probe: say so, run the rest
                out.skipped[name] = str(e)
        out.seconds = time.perf_counter() - t0
        return out
    loaded = models(ws)
    slot = st.empty()
    with slot.container(border=True):
        cols = st.columns([5, 1])
        bar = cols[0].progress(0.0, text=f"{len(todo)} analyses in {out.processes} processes ({out.why}): starting")
        cols[1].button("Stop", key=f"stop_{todo[0]}_many", icon=":material/stop_circle:",
                       help="Cancel the analyses still running; those already finished stay in the results store")
    st.session_state["running"] = todo[0]

    def show(frac: float, msg: str) -> None:
        bar.progress(min(max(float(frac), 0.0), 1.0), text=f"{len(todo)} analyses in {out.processes} processes: "
                                                             f"{msg}")

    prefill_store(ws.spec, todo, ws.store_path, out.processes, accept_partial=ws.accept_partial, progress=show,
                  estimates=seconds, local=(loaded, ws.data), data=ws.data, report_in_caller=True)
    st.session_state.pop("running", None)
    slot.empty()
    out.done += todo
    out.seconds = time.perf_counter() - t0
    return out


def was_stopped(analysis_name: str) -> bool:
    """True on the rerun that follows a click on this analysis' Stop button."""
    prefix = f"stop_{analysis_name}"  # run_with_progress(part=...) suffixes the key (one per layer of a sweep)
    if any(k.startswith(prefix) and st.session_state.get(k) for k in list(st.session_state.keys())
           if isinstance(k, str)):
        st.session_state.pop("running", None)
        return True
    return False
