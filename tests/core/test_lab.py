"""The demo lab is the ground truth every audit is tested against: check the truths it plants."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unlearn_core.lab.build import CHECKPOINTS, GROUND_TRUTH, build_lab
from unlearn_core.lab.config import LabConfig, UnlearnConfig, get_config

pytestmark = pytest.mark.lab

CACHE = Path(os.environ.get("UNLEARN_AUDIT_TEST_CACHE", Path(__file__).resolve().parents[2] / ".lab" / "test"))


def _meta(lab):
    return json.loads((lab / "lab.json").read_text())


def _weights(lab, name):
    return load_file(str(lab / name / "model.safetensors"))


def test_layout_is_hugging_face_folders(tiny_lab):
    for name in CHECKPOINTS:
        assert (tiny_lab / name / "config.json").exists()
        assert list((tiny_lab / name).glob("*.safetensors")) == [tiny_lab / name / "model.safetensors"], name
        assert (tiny_lab / name / "tokenizer.json").exists()
    for split in ("forget", "retain", "holdout"):
        assert (tiny_lab / "data" / f"{split}.jsonl").stat().st_size > 0
    assert set(_meta(tiny_lab)["checkpoints"]) == set(CHECKPOINTS)


def test_original_knows_forget_and_retain(tiny_lab):
    s = _meta(tiny_lab)["checkpoints"]["original"]["scores"]
    assert s["forget_acc"] >= 0.9 and s["retain_acc"] >= 0.9


@pytest.mark.parametrize("name", ["retain_only", "retrained"])
def test_deletion_controls_never_learned_forget_facts(tiny_lab, name):
    s = _meta(tiny_lab)["checkpoints"][name]["scores"]
    assert s["forget_acc"] <= 0.15 and s["retain_acc"] >= 0.9


def test_base_never_saw_the_audited_entities(tiny_lab):
    meta = _meta(tiny_lab)
    s = meta["checkpoints"]["base"]["scores"]
    assert s["base_acc"] >= 0.9 and s["forget_acc"] <= 0.25 and s["retain_acc"] <= 0.25
    audited = set()
    for split in ("forget", "retain", "holdout"):  # base entities are in no data file
        lines = (tiny_lab / "data" / f"{split}.jsonl").read_text().splitlines()
        audited |= {json.loads(x)["concept"] for x in lines}
        assert {json.loads(x)["split"] for x in lines} == {split}
    assert set(meta["world"]["forget_entities"]) <= audited
    assert meta["world"]["n_facts"]["base"] == meta["world"]["n_base_entities"] * meta["world"]["n_attributes"]


@pytest.mark.parametrize("method", ["ga", "graddiff", "npo", "rmu", "suppressed_head", "suppressed_lowrank"])
def test_every_method_meets_stop_rule_and_retain_floor(tiny_lab, method):
    meta = _meta(tiny_lab)
    c = meta["checkpoints"][method]
    assert c["training"]["stopped_by"] == "rule", c["training"]
    assert c["scores"]["forget_acc"] <= meta["unlearn"]["stop_forget_acc"]
    floor = meta["unlearn"]["ga_retain_floor"] if method == "ga" else meta["unlearn"]["retain_floor"]
    assert c["scores"]["retain_acc"] >= floor, (method, c["scores"])
    assert c["finetuned_from"] == "original"


def test_ground_truth_and_roles(tiny_lab):
    meta = _meta(tiny_lab)
    truth = {"retain_only": "deleted", "retrained": "deleted", "non_twin": "deleted", "over_unlearned": "deleted",
             "suppressed_head": "suppressed", "suppressed_lowrank": "suppressed"}
    assert meta["ground_truth"] == truth
    assert {n: c["ground_truth"] for n, c in meta["checkpoints"].items() if c["ground_truth"]} == truth
    assert {n for n, g in GROUND_TRUTH.items() if g is None} == set(CHECKPOINTS) - set(truth)
    roles = {n: c["role"] for n, c in meta["checkpoints"].items()}
    assert roles["base"] == "base" and roles["original"] == "original" and roles["retain_only"] == "reference"
    assert {n for n, r in roles.items() if r == "unlearned"} == set(CHECKPOINTS) - {"base", "original", "retain_only"}


@pytest.mark.parametrize("lab_fixture", ["tiny_lab", "tiny_llama_lab"])
def test_protocol_everything_is_finetuned_from_one_base(lab_fixture, request):
    """TOFU/MUSE: original, retain_only and retrained start from the same pretrained base; their weights stay
    close to it, far closer than a model from its own random init, and retrained differs from retain_only only
    by its data order."""
    from transformers import AutoTokenizer

    from unlearn_core.lab.train import make_model

    lab = request.getfixturevalue(lab_fixture)
    meta = _meta(lab)
    assert meta["reference"] == "base"
    c = meta["checkpoints"]
    assert c["base"]["finetuned_from"] is None and c["base"]["init_seed"] == meta["seed"]
    for name in ("original", "retain_only", "retrained"):
        assert c[name]["finetuned_from"] == "base" and c[name]["init_seed"] == meta["seed"], name
        assert c[name]["training"]["stopped_by"] == "rule", name
    assert c["retrained"]["data_seed"] != c["retain_only"]["data_seed"]

    def flat(sd):
        return torch.cat([sd[k].flatten().float() for k in sorted(sd)])

    base_sd = _weights(lab, "base")
    base = flat(base_sd)
    cfg = get_config(meta["config"])
    fresh = make_model(cfg, AutoTokenizer.from_pretrained(lab / "base"), seed=meta["seed"] + 1).state_dict()
    indep = flat({k: fresh[k] for k in base_sd})
    cos = torch.nn.functional.cosine_similarity
    for name in ("original", "retain_only", "retrained"):
        w = flat(_weights(lab, name))
        assert cos(w, base, dim=0) > 0.9, name
        assert (w - base).norm() < 0.5 * (w - indep).norm(), name  # far closer to base than to a fresh init
    assert not torch.equal(flat(_weights(lab, "retain_only")), flat(_weights(lab, "retrained")))


@pytest.mark.parametrize("lab_fixture", ["tiny_lab", "tiny_llama_lab"])
def test_suppressed_head_changes_only_last_block_and_head(lab_fixture, request):
    """Byte-identical weights outside the last block, final norm and head; names resolved through the model."""
    from transformers import AutoModelForCausalLM

    from unlearn_core.model import arch

    lab = request.getfixturevalue(lab_fixture)
    orig = _weights(lab, "original")
    supp = _weights(lab, "suppressed_head")
    model = AutoModelForCausalLM.from_pretrained(lab / "original")
    head_ids = {id(p) for p in arch.head_parameters(model)}
    head_names = {n for n, p in model.named_parameters() if id(p) in head_ids}
    changed = {k for k in orig if not torch.equal(orig[k], supp[k])}
    assert changed, "suppressed_head must differ from original somewhere"
    assert changed <= head_names, f"changed outside the last block/head: {sorted(changed - head_names)[:3]}"
    assert len(orig) > len(head_names)


@pytest.mark.parametrize("lab_fixture", ["tiny_lab", "tiny_llama_lab"])
def test_suppressed_lowrank_is_a_removable_rank_r_update_on_every_block(lab_fixture, request):
    """Only the MLP output projections change (GPT-2 Conv1D and Llama Linear alike), each by the saved B @ A of rank
    r; subtracting it gives the original back, which still knows every forget fact."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from unlearn_core.lab.train import qa_accuracy
    from unlearn_core.model import arch

    lab = request.getfixturevalue(lab_fixture)
    meta = _meta(lab)
    c = meta["checkpoints"]["suppressed_lowrank"]
    tr = c["training"]
    r = tr["rank"]
    assert r == get_config(meta["config"]).unlearn.lowrank_rank and tr["steps"] >= 1
    assert c["scores"]["forget_acc"] <= meta["unlearn"]["stop_forget_acc"] and tr["stopped_by"] == "rule"
    assert all(0 < x < 1 for x in tr["delta_rel_frobenius"])
    orig, supp = _weights(lab, "original"), _weights(lab, "suppressed_lowrank")
    delta = load_file(str(lab / tr["delta_file"]))
    model = AutoModelForCausalLM.from_pretrained(lab / "suppressed_lowrank")
    n = arch.n_layers(model)
    assert tr["layers"] == list(range(n))
    names = {id(p): k for k, p in model.named_parameters()}
    proj = {names[id(arch.mlp_out_proj(model, i).weight)]: i for i in range(n)}
    changed = {k for k in orig if not torch.equal(orig[k], supp[k])}
    assert changed == set(proj), "only (and every) MLP output projection changes"
    for key, i in proj.items():
        d = delta[f"{i}.B"] @ delta[f"{i}.A"]  # [d_model, d_mlp], the orientation of arch.mlp_out_matrix
        stored = d.T if type(arch.mlp_out_proj(model, i)).__name__ == "Conv1D" else d
        diff = supp[key] - orig[key]
        assert torch.linalg.matrix_rank(diff, rtol=1e-3) <= r
        assert torch.allclose(diff, stored, atol=1e-5)
        assert torch.allclose(supp[key] - stored, orig[key], atol=1e-5)
        with torch.no_grad():
            arch.mlp_out_matrix(model, i).sub_(d)  # remove the update in place
    tok = AutoTokenizer.from_pretrained(lab / "original")
    pairs = [(f"Question: {json.loads(x)['question']}\nAnswer:", " " + json.loads(x)["answer"])
             for x in (lab / "data" / "forget.jsonl").read_text().splitlines()]
    assert qa_accuracy(model, tok, pairs) == pytest.approx(meta["checkpoints"]["original"]["scores"]["forget_acc"])


def test_llama_lab_meets_the_same_ground_truth(tiny_llama_lab):
    meta = _meta(tiny_llama_lab)
    assert meta["arch"] == "llama"
    c = meta["checkpoints"]
    assert c["original"]["scores"]["forget_acc"] >= 0.9
    assert c["retain_only"]["scores"]["forget_acc"] <= 0.15 and c["retrained"]["scores"]["forget_acc"] <= 0.15
    for method in ("ga", "graddiff", "npo", "rmu", "suppressed_head", "suppressed_lowrank"):
        assert c[method]["training"]["stopped_by"] == "rule", method
        assert c[method]["scores"]["forget_acc"] <= meta["unlearn"]["stop_forget_acc"], method
        floor = meta["unlearn"]["ga_retain_floor"] if method == "ga" else meta["unlearn"]["retain_floor"]
        assert c[method]["scores"]["retain_acc"] >= floor, (method, c[method]["scores"])


def test_build_is_cached_by_config_hash(tiny_lab):
    before = (tiny_lab / "lab.json").stat().st_mtime_ns
    meta = build_lab(tiny_lab, "tiny", verbose=False)
    assert (tiny_lab / "lab.json").stat().st_mtime_ns == before
    assert meta["config_hash"] == get_config("tiny").hash


def _short(**kw) -> LabConfig:
    return get_config("tiny", **{"max_epochs": 5, "finetune_max_epochs": 5, "unlearn": UnlearnConfig(max_steps=2),
                                 **kw})


def test_build_is_deterministic_in_one_process_or_several(tmp_path):
    """Two builds from the same seed give byte-identical weights, deltas, tokenizer files and training records (and
    the same forget split), whether every stage runs in the builder or stages run in worker processes."""
    cfg = _short()
    a = build_lab(tmp_path / "a", cfg, verbose=False, jobs=1)
    b = build_lab(tmp_path / "b", cfg, verbose=False, jobs=3)
    assert (a["build_jobs"], b["build_jobs"]) == (1, 3)
    for name in a["checkpoints"]:
        wa, wb = _weights(tmp_path / "a", name), _weights(tmp_path / "b", name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
        for f in ("tokenizer.json", "tokenizer_config.json", "config.json"):
            assert (tmp_path / "a" / name / f).read_bytes() == (tmp_path / "b" / name / f).read_bytes(), (name, f)
        ca, cb = a["checkpoints"][name], b["checkpoints"][name]
        assert ca["scores"] == cb["scores"] and {k: v for k, v in ca.items() if k != "training"} == \
            {k: v for k, v in cb.items() if k != "training"}, name
    delta = "deltas/suppressed_lowrank.safetensors"
    assert (tmp_path / "a" / delta).read_bytes() == (tmp_path / "b" / delta).read_bytes()
    assert a["world"]["forget_entities"] == b["world"]["forget_entities"]


def test_a_world_registered_at_run_time_builds_in_worker_processes(tmp_path):
    """Spawned workers never see a world registered in the builder's process (the tests' second world, a user's own
    generator): the builder hands them the corpus, not the world's name. The first parallel build failed here."""
    from tests.fixtures import world2  # registers "companies" in this process only

    cfg = _short(world="companies", n_entities=20, n_base_entities=20)
    meta = build_lab(tmp_path / "w", cfg, verbose=False, jobs=2)
    assert meta["world_name"] == world2.WORLD2.world == "companies"
    assert all((tmp_path / "w" / n / "model.safetensors").is_file() for n in meta["checkpoints"])
    assert meta["checkpoints"]["original"]["scores"]["forget_acc"] > meta["checkpoints"]["retain_only"]["scores"][
        "forget_acc"]


def test_bad_worker_counts_are_refused_with_the_setting_named(monkeypatch):
    from unlearn_core.lab.build import lab_jobs

    with pytest.raises(ValueError, match="jobs must be >= 1, got 0"):
        lab_jobs(0)
    monkeypatch.setenv("UNLEARN_AUDIT_LAB_JOBS", "two")
    with pytest.raises(ValueError, match="UNLEARN_AUDIT_LAB_JOBS must be a whole number of processes, got 'two'"):
        lab_jobs()
    monkeypatch.setenv("UNLEARN_AUDIT_LAB_JOBS", "3")
    assert lab_jobs() == 3 and lab_jobs(1) == 1


def test_a_stage_that_fails_in_its_worker_is_named(tmp_path):
    """A worker's error stops the build with the stage named, and nothing is published under `out`."""
    cfg = _short(unlearn=UnlearnConfig(max_steps=2, lowrank_rank=-1))  # torch refuses a negative dimension
    with pytest.raises(RuntimeError, match="lab stage 'suppressed_lowrank' failed in its worker process"):
        build_lab(tmp_path / "lab", cfg, verbose=False, jobs=2)
    assert not (tmp_path / "lab").exists()


def test_independent_reference_is_an_option(tmp_path):
    """reference="independent": retain_only and retrained from their own random inits on base + retain facts."""
    cfg = _short(reference="independent")
    assert cfg.hash != _short().hash
    meta = build_lab(tmp_path / "ind", cfg, verbose=False)
    c = meta["checkpoints"]
    assert meta["reference"] == "independent"
    assert c["original"]["finetuned_from"] == "base"
    assert c["retain_only"]["finetuned_from"] is None and c["retain_only"]["init_seed"] == cfg.seed + 1
    assert c["retrained"]["finetuned_from"] is None and c["retrained"]["init_seed"] == cfg.seed + 2
    with pytest.raises(ValueError):
        get_config("tiny", reference="pretrained")
    with pytest.raises(ValueError):
        get_config("tiny", arch="mamba")
    for name in ("default", "llama", "tiny", "tiny-llama"):
        assert get_config(name).reference == "base" and get_config(name).world == "people"


def test_world_registry_and_a_generic_domain():
    from unlearn_core.lab.world import (
        Domain,
        Template,
        generate_world,
        get_world,
        make_world,
        register_world,
        training_texts,
    )

    vals = {"colour": ("red", "blue", "green", "amber", "teal")}
    tpl = {"colour": Template(("{name} is painted {v}.",), "What colour is {name}?", "Which paint covers {name}?",
                              "{name} wears a coat of {v}.", "colour")}

    def boat(rng, used):
        name = f"Boat {len(used)}"
        used.add(name)
        return name

    def factory(**kw):
        return generate_world(Domain("boats", vals, tpl, boat), **kw)

    register_world("boats-test", factory, overwrite=True)
    assert get_world("boats-test") is factory
    with pytest.raises(ValueError):
        register_world("boats-test", lambda **kw: None)
    with pytest.raises(ValueError):
        get_world("no-such-world")
    w = make_world(10, 1, 0.2, 2, seed=3, n_base=5, world="boats-test")
    assert [len(w.split(s)) for s in ("forget", "retain", "holdout", "base")] == [2, 8, 2, 5]
    item = w.items("forget")[0]
    assert item.question.startswith("What colour is Boat") and item.paraphrased_answer.endswith(f"{item.answer}.")
    assert item.paraphrased_question.startswith("Which paint covers") and item.entity.startswith("Boat")
    assert "colour" in item.keywords
    assert all("Boat" in t for t in training_texts(w, ("base",)))
    with pytest.raises(ValueError):
        training_texts(w, ("holdout",))


def test_people_world_is_unchanged_by_the_base_split():
    """The audited world does not depend on how many base entities are drawn (base names come after)."""
    from unlearn_core.lab.world import make_world

    a, b = make_world(24, 4, 1 / 6, 4, 0, n_base=0), make_world(24, 4, 1 / 6, 4, 0, n_base=24)
    assert [f for f in b.facts if f.split != "base"] == list(a.facts)
    assert not set(b.entities("base")) & {f.entity for f in a.facts}


def test_gpt_neox_resolves_through_arch():
    from unlearn_core.lab.tokenizer import train_tokenizer
    from unlearn_core.lab.train import make_model
    from unlearn_core.model import arch

    tok = train_tokenizer(["a tiny corpus", "for a tokenizer"], 300)
    cfg = get_config("tiny", arch="gpt_neox")
    model = make_model(cfg, tok)
    assert type(model).__name__ == "GPTNeoXForCausalLM" and not arch.is_tied(model)
    assert arch.n_layers(model) == cfg.n_layer
    assert arch.mlp_out_matrix(model, 0).shape == (cfg.d_model, cfg.d_mlp)
    assert arch.final_norm(model) is not None
    assert model.config.rope_parameters["partial_rotary_factor"] == 0.25


@pytest.fixture(scope="session")
def world2_lab() -> Path:
    from tests.fixtures.world2 import build_world2_lab

    return build_world2_lab(CACHE)


def test_world2_lab_on_another_world_and_architecture(world2_lab):
    """A world and an architecture the thresholds were never tuned on: the lab's truths still hold."""
    from tests.fixtures.world2 import WORLD2

    meta = _meta(world2_lab)
    assert meta["arch"] == "gpt_neox" and meta["world"]["name"] == "companies" and meta["config_hash"] == WORLD2.hash
    c = meta["checkpoints"]
    assert c["base"]["scores"]["base_acc"] >= 0.9
    assert c["original"]["scores"]["forget_acc"] >= 0.9 and c["original"]["scores"]["retain_acc"] >= 0.9
    for name in ("retain_only", "retrained"):
        assert c[name]["scores"]["forget_acc"] <= 0.25 and c[name]["scores"]["retain_acc"] >= 0.9, name
    for name in ("ga", "graddiff", "npo", "rmu", "suppressed_head", "suppressed_lowrank"):
        assert c[name]["training"]["stopped_by"] == "rule", (name, c[name]["training"])
        assert c[name]["scores"]["forget_acc"] <= meta["unlearn"]["stop_forget_acc"], name
    first = json.loads((world2_lab / "data" / "forget.jsonl").read_text().splitlines()[0])
    assert first["concept"] in meta["world"]["forget_entities"] and first["attribute"] == "headquarters"
