"""Before Run: how long the analyses will take on this machine, so a run that is not interactive at this size is
known before the click. Scaled from the wall times the results store recorded (unlearn_core.run.timing); no model is
loaded for it."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from unlearn_core.run.eta import fmt_about
from unlearn_core.run.jobs import checkpoints_to_compute
from unlearn_core.run.timing import INTERACTIVE_S, NO_RECORD, Estimate, estimate_for, total, workload_from_spec
from views._shared import state


def _workload(ws: state.Workspace):
    memo = st.session_state.setdefault("_workload", {})
    key = (ws.key, ws.data.hash)
    if key not in memo:
        memo[key] = workload_from_spec(ws.spec, ws.data)
    return memo[key]


def estimates(analyses: list[str], ws: state.Workspace, configs: dict | None = None) -> dict[str, Estimate | None]:
    """Per analysis: its estimate, None without a record here (or when the checkpoints' sizes cannot be read)."""
    from unlearn_core.analyses.registry import ANALYSES
    from unlearn_core.checkpoints.memory import pick_device

    work = _workload(ws)
    try:
        device = pick_device(ws.spec.device, getattr(ws.spec, "max_memory", None))[0].type
    except ValueError:  # CheckpointError: CUDA asked for and absent; the page says so where the models load
        return dict.fromkeys(analyses)
    out: dict[str, Estimate | None] = {}
    for name in analyses:
        if work is None or name not in ANALYSES:  # a module's own SPEC, outside the registry: never recorded
            out[name] = None
            continue
        job = state.plan(name, (configs or {}).get(name), ws)
        part = replace(work, n_checkpoints=checkpoints_to_compute(job, state.store(ws)))  # a grown set: its new part
        out[name] = estimate_for(state.store(ws), name, part, device, job.config_hash)
    return out


def render(analyses: list[str], ws: state.Workspace, configs: dict | None = None) -> None:
    """One line beside a Run button; a warning instead when the run is longer than one waits at the screen for."""
    if not analyses:
        return
    ests = estimates(analyses, ws, configs)
    known = {n: e for n, e in ests.items() if e is not None}
    if not known:
        st.caption(f"Time: {NO_RECORD} (the first run records it).")
        return
    seconds = total(known.values())
    if len(ests) == 1:
        line = next(iter(known.values())).describe()
    else:
        parts = [f"{n} {fmt_about(e.seconds)}" if e else f"{n}: {NO_RECORD}" for n, e in ests.items()]
        more = "" if len(known) == len(ests) else " plus the analyses without a record"
        line = f"{fmt_about(seconds)} on this machine{more} ({'; '.join(parts)}; scaled from recorded runs)"
    if seconds > INTERACTIVE_S:
        st.warning(f"This will take {line}: not interactive at this size.", icon=":material/hourglass_top:")
    else:
        st.caption(f"Estimated time: {line}.")
