"""Real-model loading paths: a --max-memory budget (accelerate device_map="auto"), the estimate said before
loading, and batch sizes that back off on CUDA out-of-memory without changing a number (a fake OOM on CPU)."""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import replace

import pytest
import torch

from unlearn_core.checkpoints.inspect import inspect_checkpoint
from unlearn_core.checkpoints.memory import check_memory
from unlearn_core.checkpoints.placement import footprint, normalise_max_memory
from unlearn_core.checkpoints.source import CheckpointError
from unlearn_core.cli import main
from unlearn_core.model.scoring import encode, greedy_generate, input_device, pad_id_of, run_batched, score_encoded
from unlearn_core.run.workspace import WorkspaceSpec, lab_workspace

GiB = 2**30


# ------------------------------------------------------------------------------------------- --max-memory parsing


def test_max_memory_parses_text_dicts_and_pairs_gpus_first():
    assert normalise_max_memory("0=70GiB,1=70GiB,cpu=100GiB") == (("0", 70 * GiB), ("1", 70 * GiB), ("cpu", 100 * GiB))
    assert normalise_max_memory({"cpu": "1.5GB", "cuda:1": "2GiB", 0: 512 * 2**20}) == (
        ("0", 512 * 2**20), ("1", 2 * GiB), ("cpu", 1_500_000_000))
    assert normalise_max_memory(" cpu = 64 MiB ") == (("cpu", 64 * 2**20),)
    assert normalise_max_memory(None) is None
    # a spec keeps it as hashable pairs (worker processes key loaded models by spec)
    spec = WorkspaceSpec("o", (("u", "u"),), "f", max_memory={"cpu": "4GiB"})
    assert spec.max_memory == (("cpu", 4 * GiB),) and hash(spec) == hash(WorkspaceSpec(
        "o", (("u", "u"),), "f", max_memory="cpu=4GiB"))


@pytest.mark.parametrize("bad, says", [
    ("0=70", "not a size"), ("0=70XB", "not a size"), ("gpu=1GiB", "not a device"), ("disk=1GiB", "not a device"),
    ("0=1GiB,0=2GiB", "given twice"), ("0", "expected DEVICE=SIZE"), ("", "expected DEVICE=SIZE"),
    ("cpu=0GiB", "more than 0"), ("=1GiB", "expected DEVICE=SIZE"), ("cpu=1GiB,", "expected DEVICE=SIZE"),
])
def test_max_memory_bad_values_say_what_and_the_form(bad, says):
    with pytest.raises(ValueError, match="max_memory") as exc:
        normalise_max_memory(bad)
    assert says in str(exc.value) and "0=70GiB,1=70GiB,cpu=100GiB" in str(exc.value)


@pytest.mark.lab
def test_cli_bad_max_memory_exits_2_before_loading(tiny_lab, tmp_path, capsys):
    rc = main(["audit", "--lab", str(tiny_lab), "--out", str(tmp_path / "o"), "--max-memory", "0=70"])
    err = capsys.readouterr().err
    assert rc == 2 and "error: --max-memory: '70' is not a size" in err and "loading" not in err


@pytest.mark.lab
@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU this machine does not have")
def test_cli_budget_naming_a_missing_gpu_exits_2(tiny_lab, tmp_path, capsys):
    rc = main(["audit", "--lab", str(tiny_lab), "--out", str(tmp_path / "o"), "--max-memory", "0=1GiB,cpu=1GiB"])
    assert rc == 2 and "names GPU 0, but this machine has 0 CUDA device(s)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- estimate and check


def _stop_loading(monkeypatch):
    def stop(self):
        raise CheckpointError("stopped before loading (test)")

    monkeypatch.setattr(WorkspaceSpec, "load_models", stop)


@pytest.mark.lab
@pytest.mark.parametrize("budget", [None, "cpu=4GiB"])
def test_cli_says_the_estimate_before_loading(tiny_lab, tmp_path, capsys, monkeypatch, budget):
    _stop_loading(monkeypatch)
    args = ["audit", "--lab", str(tiny_lab), "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert main(args + (["--max-memory", budget] if budget else [])) == 2
    err = capsys.readouterr().err
    spec = lab_workspace(tiny_lab)
    infos = spec.inspect()
    gib = sum(i.n_params for i in infos.values()) * 4 / GiB  # float32 on the CPU, every checkpoint resident
    where = r"spread over cpu 4\.0 GiB \(budget 4\.0 GiB\)" if budget else r"on cpu \([\d.]+ GiB free\)"
    line = re.search(rf"^loading {len(infos)} checkpoints: about ([\d.]+) GiB in float32 {where}$", err, re.M)
    assert line, err
    assert float(line.group(1)) == pytest.approx(gib, abs=6e-4)
    assert err.index(line.group(0)) < err.index("stopped before loading")


@pytest.mark.lab
def test_check_memory_reads_the_budget_not_the_free_memory(tiny_lab, monkeypatch):
    infos = {"original": inspect_checkpoint(tiny_lab / "original"), "ga": inspect_checkpoint(tiny_lab / "ga")}
    need = sum(i.n_params for i in infos.values()) * 4 * 1.2
    monkeypatch.setattr("unlearn_core.checkpoints.memory.available_bytes", lambda device: 0)
    cpu = torch.device("cpu")
    with pytest.raises(CheckpointError, match="only 0.0 GiB is free"):
        check_memory(infos, cpu, torch.float32)
    assert check_memory(infos, cpu, torch.float32, max_memory=(("cpu", int(need) + 1),)) == int(need)
    with pytest.raises(CheckpointError, match=r"max_memory budget \(cpu .*--max-memory"):
        check_memory(infos, cpu, torch.float32, max_memory=(("cpu", int(need) // 2),))


# ------------------------------------------------------------------------------------------- device_map="auto"


def _forget_encoded(lm, data):
    pairs = [data.prompt_format.pair(it) for it in (*data.forget, *data.retain)]
    return encode(lm.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])


@pytest.mark.lab
def test_device_map_auto_on_cpu_gives_the_same_logprobs_and_store_keys(tiny_lab, monkeypatch):
    from transformers import AutoModelForCausalLM

    from unlearn_core.analyses.scorecard import ScorecardConfig
    from unlearn_core.run.audit import result_key

    seen = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append({k: kwargs.get(k) for k in ("device_map", "max_memory")})
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    plain = lab_workspace(tiny_lab, ["ga"], device="cpu")
    spread = replace(plain, device="auto", max_memory={"cpu": "4GiB"})
    data = plain.load_data()
    a, b = plain.load_models(), spread.load_models()
    assert {"device_map": None, "max_memory": None} in seen
    # accelerate places each checkpoint blind to the others: each next one is given what the ones before it left
    budgets = [s["max_memory"] for s in seen if s["device_map"] == "auto"]
    sizes = [footprint(lm.model)["cpu"] for lm in b.all().values()]
    assert budgets == [{"cpu": 4 * GiB - sum(sizes[:k])} for k in range(len(sizes))] and len(budgets) == 3
    for name in a.all():
        ma, mb = a.all()[name], b.all()[name]
        enc = _forget_encoded(ma, data)
        la = score_encoded(ma.model, enc, pad_id_of(ma.tokenizer)).logprobs
        lb = score_encoded(mb.model, enc, pad_id_of(mb.tokenizer)).logprobs
        assert all(torch.equal(x, y) for x, y in zip(la, lb, strict=True)), name
    # placement is in no store key: the same results are read back whichever way the models were loaded
    cfg = ScorecardConfig()
    assert result_key("scorecard", a, data, cfg) == result_key("scorecard", b, data, cfg)


@pytest.mark.lab
def test_lora_adapter_under_a_budget_is_merged_then_placed(tiny_lab):
    from unlearn_core.checkpoints.load import load_model
    from unlearn_core.checkpoints.memory import pick_device

    info = inspect_checkpoint(tiny_lab / "extras" / "ga_lora", original=tiny_lab / "original")
    device, dtype = pick_device("cpu")
    a = load_model(info, "lora", "unlearned", device, dtype)
    b = load_model(info, "lora", "unlearned", device, dtype, max_memory=(("cpu", 4 * GiB),))
    data = lab_workspace(tiny_lab).load_data()
    enc = _forget_encoded(a, data)
    la = score_encoded(a.model, enc, pad_id_of(a.tokenizer)).logprobs
    lb = score_encoded(b.model, enc, pad_id_of(b.tokenizer)).logprobs
    assert all(torch.equal(x, y) for x, y in zip(la, lb, strict=True)) and a.hash == b.hash


def test_input_device_is_the_embeddings_not_the_first_parameter():
    class Spread(torch.nn.Module):  # first parameter on the CPU, embedding elsewhere (as accelerate may place them)
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(2, 2)
            self.emb = torch.nn.Embedding(3, 2, device="meta")

        def get_input_embeddings(self):
            return self.emb

    assert next(Spread().parameters()).device.type == "cpu"
    assert input_device(Spread()).type == "meta"
    assert input_device(torch.nn.Linear(2, 2)).type == "cpu"  # no get_input_embeddings: its one device


# ------------------------------------------------------------------------------------------- OOM back-off


def _oom_above(monkeypatch, model, k: int, hits: list[int]):
    """model.forward raises CUDA's out-of-memory error whenever a batch has more than k rows (its signature kept:
    generate reads it to decide whether to pass position ids, which left-padded rows need)."""
    real = model.forward

    @functools.wraps(real)
    def forward(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[0] > k:
            hits.append(ids.shape[0])
            raise torch.OutOfMemoryError(f"CUDA out of memory (fake, batch {ids.shape[0]} > {k})")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)


def test_run_batched_halves_the_failing_batch_and_does_every_item_once(monkeypatch, caplog):
    done, tried = [], []

    def fn(batch):
        tried.append(len(batch))
        if len(batch) > 3:
            raise torch.OutOfMemoryError("fake")
        done.extend(batch)

    with caplog.at_level(logging.WARNING, logger="unlearn_core.model.scoring"):
        run_batched(fn, [5] * 10 + [9] * 10, batch_size=8)
    assert sorted(done) == list(range(20)) and tried[:3] == [8, 4, 2] and set(tried[2:]) == {2}
    assert "retrying with batches of 4" in caplog.text and "retrying with batches of 2" in caplog.text

    def never(batch):
        raise torch.OutOfMemoryError("fake")

    with pytest.raises(torch.OutOfMemoryError, match=r"even with one item \(7 tokens\).*--max-memory"):
        run_batched(never, [7, 7], batch_size=2, what="teacher-forced scoring pass")


def _same(a, b, rel: float = 0.0) -> bool:
    """Dataclass rows / tensors / numbers equal field by field: exactly (rel=0) or within float32 rounding."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b) if rel == 0 else torch.allclose(a.double(), b.double(), rtol=rel, atol=2e-6)
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=2e-6 if rel else 0.0)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rel) for k in a)
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(_same(getattr(a, f), getattr(b, f), rel) for f in a.__dataclass_fields__)
    return a == b


@pytest.mark.lab
def test_oom_back_off_gives_the_unbatched_numbers(tiny_lab, monkeypatch):
    """Backing off from 32 under a fake OOM above 3 rows ends at batches of 2: exactly the batch-2 numbers, and the
    unbatched ones within float32 rounding (a CPU matmul may round differently at another batch shape)."""
    spec = lab_workspace(tiny_lab, ["ga"], device="cpu")
    data, lm = spec.load_data(), spec.load_models().original
    enc, pad = _forget_encoded(lm, data), pad_id_of(lm.tokenizer)
    prompts = [data.prompt_format.pair(it)[0] for it in data.forget]
    one = score_encoded(lm.model, enc, pad, batch_size=1, with_stats=True)
    two = score_encoded(lm.model, enc, pad, batch_size=2, with_stats=True)
    gen_one = greedy_generate(lm.model, lm.tokenizer, prompts, 12, batch_size=1)
    gen_two = greedy_generate(lm.model, lm.tokenizer, prompts, 12, batch_size=2)
    hits: list[int] = []
    _oom_above(monkeypatch, lm.model, 3, hits)
    got = score_encoded(lm.model, enc, pad, batch_size=32, with_stats=True)
    assert hits[:4] == [32, 16, 8, 4]  # the fake OOM fired at every size above 3, and the run still finished
    for field in ("logprobs", "correct", "mu", "sigma"):
        assert _same(getattr(got, field), getattr(two, field)), field
        assert _same(getattr(got, field), getattr(one, field), rel=1e-5), field
    gen = greedy_generate(lm.model, lm.tokenizer, prompts, 12, batch_size=32)
    assert gen == gen_two == gen_one


@pytest.mark.lab
def test_scorecard_under_fake_oom_equals_the_unbatched_scorecard(tiny_lab, monkeypatch):
    from unlearn_core.analyses.scorecard import ScorecardConfig
    from unlearn_core.analyses.scorecard.compute import compute_scorecard
    from unlearn_core.types import ModelSet

    spec = lab_workspace(tiny_lab, ["ga"], device="cpu")
    data, loaded = spec.load_data(), spec.load_models()
    models = ModelSet(loaded.original, loaded.unlearned, None)  # two checkpoints keep it quick
    one = compute_scorecard(models, data, ScorecardConfig(batch_size=1, max_new_tokens=12))
    two = compute_scorecard(models, data, ScorecardConfig(batch_size=2, max_new_tokens=12))
    hits: list[int] = []
    for lm in models.all().values():
        _oom_above(monkeypatch, lm.model, 2, hits)
    got = compute_scorecard(models, data, ScorecardConfig(batch_size=32, max_new_tokens=12))
    assert hits
    for part in ("items", "mia", "summary", "roc"):
        assert _same(getattr(got, part), getattr(two, part)), part
        assert _same(getattr(got, part), getattr(one, part), rel=1e-5), part


@pytest.mark.lab
def test_series_loads_under_the_budget_left_by_the_fixed_models(tiny_lab):
    from unlearn_core.run.series import SeriesAuditor

    spec = replace(lab_workspace(tiny_lab, ["ga"]), max_memory="cpu=4GiB")
    auditor = SeriesAuditor(spec, spec.load_data(), ["scorecard"], None)
    fixed = auditor.fixed()
    used = sum(footprint(lm.model)["cpu"] for lm in fixed.values())
    assert set(fixed) == {"original", "retain_only"} and auditor._budget(fixed.values()) == (("cpu", 4 * GiB - used),)
