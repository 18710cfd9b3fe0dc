"""Executable layout rules (issue 11): the core never imports the UI, analyses do not reach into each other's private
names, nothing in the core imports the demo-lab builder, and every registered analysis declares one SPEC."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from unlearn_core import registry
from unlearn_core.spec import CONTROLS, AnalysisSpec

CORE = Path(__file__).resolve().parents[2] / "unlearn_core"
# modules allowed to import the demo lab: the lab itself, and the entry points that build it on request
LAB_IMPORTERS = {"cli.py", "workspace.py"}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement in a file, including those inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


CORE_FILES = sorted(p for p in CORE.rglob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_import_boundaries(path):
    rel = path.relative_to(CORE)
    for module, names in _imports(path):
        assert not module.startswith(("streamlit", "views")), f"{rel} imports {module}: the core has no UI"
        if module.startswith("unlearn_core.lab") and rel.parts[0] != "lab":
            assert str(rel) in LAB_IMPORTERS, f"{rel} imports the demo-lab builder ({module})"
        if module.startswith("unlearn_core.analyses.") and rel.parts[0] == "analyses":
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{rel} imports private names {private} from {module}"
        if module in ("unlearn_core.audit", "unlearn_core.cli") and rel.parts[0] == "analyses":
            pytest.fail(f"{rel} imports {module}: an upward arrow (analyses are leaves under the registry)")


def test_spec_module_is_a_leaf():
    mods = [m for m, _ in _imports(CORE / "spec.py")]
    assert not [m for m in mods if m.startswith("unlearn_core")], mods


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_analysis_declares_its_spec(name):
    spec = registry.get_spec(name)
    assert isinstance(spec, AnalysisSpec) and spec.name == name and spec.title
    cfg = spec.default_config()
    assert cfg.__dataclass_params__.frozen
    for ev in spec.evidence:
        assert ev.control in CONTROLS and ev.label
    module = CORE / "analyses" / registry.ANALYSES[name]
    files = sorted(module.rglob("*.py")) if module.is_dir() else [module.with_suffix(".py")]
    assert files and all("def analysis_spec" not in f.read_text() for f in files)


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
    from unlearn_core.items import QAItem
    from unlearn_core.types import AuditData

    data = AuditData((QAItem("q?", "a"),))
    assert data.hash is data.hash and "hash" in data.__dict__
    assert AuditData((QAItem("q?", "b"),)).hash != data.hash


def test_config_defaults_are_resolved_before_the_store_key(tiny_lab):
    """layer=None, the layer it means and the same layer counted from the end are one computation: one key."""
    from unlearn_core.analyses.perturbation import PerturbationConfig
    from unlearn_core.analyses.sae_restoration import RestorationConfig, default_layer, default_n_expert
    from unlearn_core.registry import resolve_config, store_key
    from unlearn_core.spec import Shape

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
    from unlearn_core.audit import run_analysis
    from unlearn_core.registry import get_spec
    from unlearn_core.workspace import lab_workspace

    spec = lab_workspace(tiny_lab, unlearned=["ga"])
    models, data = spec.load_models(), spec.load_data()
    result, _ = run_analysis(get_spec("perturbation"), models, data, None,
                             config=get_spec("perturbation").default_config().__class__(sigmas=(0.3,), k=1))
    assert result.config.layers == (1,) and result.config.headline_sigma == 0.3


def test_no_pages_folder_beside_the_app():
    """A folder named pages/ next to app.py switches Streamlit to its old multipage mode until st.navigation first
    runs in the process: the first visitor of /verdict got the bare page script (raw file names, no stylesheet)."""
    from views._shared import nav

    assert not (CORE.parent / "pages").exists()
    assert nav.available() and all(f.startswith("views/") for f, _, _ in nav.available())


def test_reading_results_does_not_import_the_heavy_training_libraries():
    """The CLI's parent process, the dashboard and every worker import all analysis modules to validate names and
    decode stored results; sae-lens (which imports transformer-lens) and rouge-score (nltk, scipy.stats) cost ~10 s
    of start-up together and are needed only where an SAE is trained or loaded, or text is scored."""
    import subprocess
    import sys

    code = ("import sys; from unlearn_core import registry; [registry.get_spec(n) for n in registry.names()]; "
            "print(sorted(m for m in ('sae_lens', 'transformer_lens', 'rouge_score', 'nltk') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
