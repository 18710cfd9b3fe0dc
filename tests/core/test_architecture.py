"""Executable layout rules (architecture.md, "Target layout, turn 3"): packages by concept, arrows down.

The core is an ordered list of layers; a module imports only from its own layer or the layers below it, at module
level and inside functions alike (a function-level import may defer a heavy library, never hide an upward arrow),
and no set of files imports itself round in a circle. The pages (views/, app.py) sit on top and reach the core only
through the layers meant for them. Every registered analysis declares one SPEC.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from unlearn_core.analyses import registry
from unlearn_core.analyses.spec import CONTROLS, AnalysisSpec

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "unlearn_core"

# bottom to top: a module of layer i imports only unlearn_core modules of layers <= i
LAYERS: tuple[tuple[str, ...], ...] = (
    ("viz",),  # style: colours, print presets, fonts (no analysis, no model)
    ("data",),  # forget/retain/holdout files -> items
    ("store",),  # hashing, tagged-JSON codec, the SQLite results store, timing records
    ("model",),  # read and hook a loaded model: arch, scoring, hooks, fused MLP, threads
    ("types",),  # ModelSet, LoadedModel, AuditData: the handles every layer above passes
    ("evidence",),  # per-item probe numbers -> calibrated evidence -> verdict
    ("checkpoints",),  # find, inspect, place and load checkpoints
    ("analyses",),  # spec, registry, data check, one folder per analysis
    ("run",),  # workspace, audit (one key, run-or-serve), parallel, series, timing
    ("report",),  # export, paper, drill-down, gallery
    ("lab",),  # the demo labs (builds with run's worker pool)
    ("cli", "__main__"),
)
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}
# what a page may import from the core: the orchestration, drawing and report layers, the handles, and the
# analyses' declarations (specs, configs, results); never a model hook, the store's internals or a lab's insides
VIEW_ALLOWED = ("run", "report", "viz", "types", "analyses", "evidence", "checkpoints", "data")
VIEW_FORBIDDEN = ("model", "store", "lab.train", "lab.unlearn", "lab.world", "lab.extras")
LAB_PUBLIC = ("lab.build", "lab.config")  # what outside the lab may import of it


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every import statement in a file, including those inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names], node.lineno))
    return out


def _layer(module: str) -> str | None:
    """The layer name of an unlearn_core module ('unlearn_core.run.audit' -> 'run'), None outside the core."""
    parts = module.split(".")
    if parts[0] != "unlearn_core" or len(parts) < 2:
        return None
    return parts[1]


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


CORE_FILES = sorted(CORE.rglob("*.py"))
VIEW_FILES = sorted((ROOT / "views").rglob("*.py")) + [ROOT / "app.py"]


def test_every_core_module_belongs_to_a_layer():
    loose = sorted(p.name for p in CORE.glob("*.py") if p.stem not in LAYER_OF and p.name != "__init__.py")
    packages = sorted(p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert not loose, f"modules outside every layer: {loose}"
    assert set(packages) <= set(LAYER_OF), f"packages outside every layer: {set(packages) - set(LAYER_OF)}"
    assert len([p for p in CORE.glob("*.py") if p.name != "__init__.py"]) <= 8  # a few entry points, not a bag


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_point_down(path):
    rel = path.relative_to(CORE)
    own = _layer(_module_of(path)) or rel.stem
    for module, names, line in _imports(path):
        assert not module.startswith(("streamlit", "views")), f"{rel}:{line} imports {module}: the core has no UI"
        if module == "unlearn_core":  # `from unlearn_core import x`: each name is a module, but __version__, a
            # constant of the package root (its __init__ imports nothing)
            targets = [f"unlearn_core.{n}" for n in names if n != "__version__"]
        else:
            targets = [module]
        for target in targets:
            layer = _layer(target)
            if layer is None:
                continue
            assert layer in LAYER_OF, f"{rel}:{line} imports {target}, which is in no layer"
            assert LAYER_OF[layer] <= LAYER_OF[own], (
                f"{rel}:{line} imports {target}: an arrow up from {own!r} (layer {LAYER_OF[own]}) to {layer!r} "
                f"(layer {LAYER_OF[layer]})")
            if layer == "lab" and own != "lab":
                assert target.startswith(tuple(f"unlearn_core.{m}" for m in LAB_PUBLIC)), (
                    f"{rel}:{line} imports the demo lab's insides ({target})")
        if module.startswith("unlearn_core.analyses.") and own == "analyses":
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{rel}:{line} imports private names {private} from {module}"


def _analysis_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["unlearn_core", "analyses"] and parts[2] in registry.ANALYSES:
        return parts[2]
    return None


@pytest.mark.parametrize("path", sorted((CORE / "analyses").rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_analyses_do_not_import_each_other(path):
    """An analysis reaches shared code through analyses/common, never through another analysis's module."""
    own = _analysis_of(_module_of(path))
    for module, names, line in _imports(path):
        targets = [f"{module}.{n}" for n in names] if module == "unlearn_core.analyses" else [module]
        for target in targets:
            other = _analysis_of(target)
            assert other is None or other == own or own is None and path.stem in ("registry",), (
                f"{path.relative_to(CORE)}:{line} imports {target}: analyses share code through analyses/common")


@pytest.mark.parametrize("path", VIEW_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_reach_the_core_through_its_upper_layers(path):
    for module, names, line in _imports(path):
        targets = [f"unlearn_core.{n}" for n in names] if module == "unlearn_core" else [module]
        for target in targets:
            layer = _layer(target)
            if layer is None:
                continue
            sub = target.split(".", 1)[1]
            assert not sub.startswith(VIEW_FORBIDDEN), f"{path.relative_to(ROOT)}:{line} imports {target}"
            assert layer in VIEW_ALLOWED or target.startswith(tuple(f"unlearn_core.{m}" for m in LAB_PUBLIC)), (
                f"{path.relative_to(ROOT)}:{line} imports {target}")
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{path.relative_to(ROOT)}:{line} imports private names {private} from {module}"


def _file_graph() -> dict[str, set[str]]:
    """module -> core modules it imports (a `from pkg import name` that names a submodule points at it)."""
    modules = {_module_of(p): p for p in CORE_FILES}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, path in modules.items():
        for module, names, _ in _imports(path):
            if not module.startswith("unlearn_core"):
                continue
            for n in names or [None]:
                sub = f"{module}.{n}" if n else None
                target = sub if sub in modules else module
                if target in modules and target != m:
                    graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles(_file_graph()) == []


def test_the_circle_test_finds_a_circle():
    """The detector itself: a three-module ring is one circle, a chain is none."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


HOOK_CALLS = {"register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
              "register_full_backward_pre_hook", "register_hook"}


@pytest.mark.parametrize("path", [p for p in CORE_FILES if p.relative_to(CORE).parts[0] != "model"],
                         ids=lambda p: str(p.relative_to(CORE)))
def test_only_the_model_layer_registers_hooks(path):
    """Every hook site is a context manager of model.hooks (removed on exit); nothing else hooks a module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in HOOK_CALLS:
            pytest.fail(f"{path.relative_to(CORE)}:{node.lineno} calls .{node.func.attr}: use model.hooks")


@pytest.mark.parametrize("name", registry.names())
def test_every_analysis_has_its_page_and_charts(name):
    """Adding an analysis is its folder, its page and one registry line: the navigation, the chart gallery and the
    workers' order read the SPEC, so a SPEC without a page or charts would leave a hole in all of them."""
    spec = registry.get_spec(name)
    file, title, icon = spec.page
    assert (ROOT / file).is_file() and title and icon.startswith(":material/")
    assert spec.plots is not None and spec.cost_rank > 0
    assert file in [f for f, _, _ in __import__("views._shared.nav", fromlist=["nav"]).available()]
    page = (ROOT / file).read_text()
    assert f'"{name}"' in page  # the page renders this analysis


def test_spec_module_is_a_leaf():
    mods = [m for m, _, _ in _imports(CORE / "analyses" / "spec.py")]
    assert not [m for m in mods if m.startswith("unlearn_core")], mods


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_analysis_declares_its_spec(name):
    spec = registry.get_spec(name)
    assert isinstance(spec, AnalysisSpec) and spec.name == name and spec.title
    cfg = spec.default_config()
    assert cfg.__dataclass_params__.frozen
    for ev in spec.evidence:
        assert ev.control in CONTROLS and ev.label
    module = CORE / "analyses" / name
    files = sorted(module.rglob("*.py")) if module.is_dir() else [module.with_suffix(".py")]
    assert files and all(f.exists() for f in files)
    assert all("def analysis_spec" not in f.read_text() for f in files)


def test_evidence_keys_are_unique_and_default_set_is_registered():
    evidence = registry.all_evidence()
    assert {"decodability", "relearning_recovery", "quantization_recovery"} <= set(evidence)
    assert evidence["sae_restoration"][1].control == "reference"  # it copies the original's states
    assert evidence["relearning_recovery"][1].control == "reference+holdout"
    assert set(registry.DEFAULT_EVIDENCE_SET) <= set(registry.ANALYSES)


def test_sae_training_leaves_the_global_rng_alone():
    import torch

    from unlearn_core.analyses.sae_restoration.training import SAETrainConfig, train_sae

    acts = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = train_sae(acts, SAETrainConfig(steps=3, batch_size=16, expansion=2, k=2))
    assert torch.equal(before, torch.random.get_rng_state())
    b = train_sae(acts, SAETrainConfig(steps=3, batch_size=16, expansion=2, k=2))
    assert torch.equal(a.W_dec, b.W_dec)  # seeded: the same SAE twice


def test_audit_data_hash_is_computed_once():
    from unlearn_core.data.items import QAItem
    from unlearn_core.types import AuditData

    data = AuditData((QAItem("q?", "a"),))
    assert data.hash is data.hash and "hash" in data.__dict__
    assert AuditData((QAItem("q?", "b"),)).hash != data.hash


def test_config_defaults_are_resolved_before_the_store_key(tiny_lab):
    """layer=None, the layer it means and the same layer counted from the end are one computation: one key."""
    from unlearn_core.analyses.perturbation import PerturbationConfig
    from unlearn_core.analyses.registry import resolve_config
    from unlearn_core.analyses.sae_restoration import RestorationConfig, default_layer, default_n_expert
    from unlearn_core.analyses.spec import Shape
    from unlearn_core.run.audit import store_key

    shape = Shape(n_layers=3, n_forget=16)
    hashes, data = {"original": "a", "ga": "b"}, "d"
    layer = default_layer(3)
    keys = {store_key("sae_restoration", hashes, data, RestorationConfig(layer=x), shape) for x in (None, layer,
                                                                                                     layer - 3)}
    assert len(keys) == 1
    assert store_key("sae_restoration", hashes, data, RestorationConfig(layer=0), shape) not in keys
    resolved = resolve_config("sae_restoration", RestorationConfig(), shape)
    assert (resolved.layer, resolved.n_expert) == (layer, default_n_expert(16))
    p = resolve_config("perturbation", PerturbationConfig(), shape)
    assert p.layers == (1,) and p.headline_sigma == PerturbationConfig().headline
    assert (store_key("perturbation", hashes, data, PerturbationConfig(), shape)
            == store_key("perturbation", hashes, data, PerturbationConfig(layers=(1,), headline_sigma=0.3), shape))


def test_the_stored_result_carries_its_resolved_config(tiny_lab):
    """run_analysis computes with the resolved config, so a result says which layer it used."""
    from unlearn_core.analyses.registry import get_spec
    from unlearn_core.run.audit import run_analysis
    from unlearn_core.run.workspace import lab_workspace

    spec = lab_workspace(tiny_lab, unlearned=["ga"])
    models, data = spec.load_models(), spec.load_data()
    result, _ = run_analysis(get_spec("perturbation"), models, data, None,
                             config=get_spec("perturbation").default_config().__class__(sigmas=(0.3,), k=1))
    assert result.config.layers == (1,) and result.config.headline_sigma == 0.3


def test_no_pages_folder_beside_the_app():
    """A folder named pages/ next to app.py switches Streamlit to its old multipage mode until st.navigation first
    runs in the process: the first visitor of /verdict got the bare page script (raw file names, no stylesheet)."""
    from views._shared import nav

    assert not (ROOT / "pages").exists()
    assert nav.available() and all(f.startswith("views/") for f, _, _ in nav.available())


def test_reading_results_does_not_import_the_heavy_training_libraries():
    """The CLI's parent process, the dashboard and every worker import all analysis modules to validate names and
    decode stored results; sae-lens (which imports transformer-lens) and rouge-score (nltk, scipy.stats) cost ~10 s
    of start-up together and are needed only where an SAE is trained or loaded, or text is scored."""
    import subprocess
    import sys

    code = ("import sys; from unlearn_core.analyses import registry; "
            "[registry.get_spec(n) for n in registry.names()]; "
            "print(sorted(m for m in ('sae_lens', 'transformer_lens', 'rouge_score', 'nltk', 'plotly') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
