"""Unit tests of the parameter audit engine and its renderers, on real (mostly meta) models."""

from __future__ import annotations

import io
import json
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from paramaudit.audit import (
    OPTIMIZER_STATES,
    AuditReport,
    audit_model,
    training_memory,
)
from paramaudit.errors import SpecError
from paramaudit.report import format_bytes, layers_dataframe, plot_layers, render
from paramaudit.spec import load_spec

# --------------------------------------------------------------------------- test models


class TinyMLP(nn.Module):
    """4 -> 3 -> 2: (4*3 + 3) + (3*2 + 2) = 15 + 8 = 23 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(3, 2)


class GPT2Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(d, 3 * d)
        self.attn.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(d, 4 * d)
        self.mlp.c_proj = nn.Linear(4 * d, d)


class GPT2Model(nn.Module):
    def __init__(self, vocab: int, n_pos: int, d: int, layers: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(n_pos, d)
        self.h = nn.ModuleList(GPT2Block(d) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)


class GPT2LMHeadModel(nn.Module):
    """GPT-2 shaped, lm_head tied to the token embedding as in the released checkpoints."""

    def __init__(self, vocab: int = 50257, n_pos: int = 1024, d: int = 768, layers: int = 12):
        super().__init__()
        self.transformer = GPT2Model(vocab, n_pos, d, layers)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight


class RMSNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


class LlamaLayer(nn.Module):
    def __init__(self, d: int, inter: int, heads: int, kv_heads: int) -> None:
        super().__init__()
        kv = d // heads * kv_heads
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(d, d, bias=False)
        self.self_attn.k_proj = nn.Linear(d, kv, bias=False)
        self.self_attn.v_proj = nn.Linear(d, kv, bias=False)
        self.self_attn.o_proj = nn.Linear(d, d, bias=False)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(d, inter, bias=False)
        self.mlp.up_proj = nn.Linear(d, inter, bias=False)
        self.mlp.down_proj = nn.Linear(inter, d, bias=False)
        self.input_layernorm = RMSNorm(d)
        self.post_attention_layernorm = RMSNorm(d)


class LlamaForCausalLM(nn.Module):
    """Llama-2-70B shaped: GQA with 8 kv heads, untied lm_head."""

    def __init__(self, vocab=32000, d=8192, layers=80, inter=28672, heads=64, kv_heads=8):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, d)
        self.model.layers = nn.ModuleList(
            LlamaLayer(d, inter, heads, kv_heads) for _ in range(layers)
        )
        self.model.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)


class T5Like(nn.Module):
    """One embedding shared four ways: shared, both embed_tokens and lm_head."""

    def __init__(self, vocab: int = 100, d: int = 16) -> None:
        super().__init__()
        self.shared = nn.Embedding(vocab, d)
        self.encoder = nn.Module()
        self.encoder.embed_tokens = nn.Embedding(vocab, d)
        self.encoder.embed_tokens.weight = self.shared.weight
        self.encoder.ff = nn.Linear(d, d, bias=False)
        self.decoder = nn.Module()
        self.decoder.embed_tokens = nn.Embedding(vocab, d)
        self.decoder.embed_tokens.weight = self.shared.weight
        self.decoder.ff = nn.Linear(d, d, bias=False)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.shared.weight


GPT2_SMALL_PARAMS = 124_439_808
LLAMA2_70B_PARAMS = 68_976_648_192


def rows_sum(report: AuditReport) -> int:
    return sum(row.params for row in report.layers)


def row(report: AuditReport, name: str):
    return next(r for r in report.layers if r.name == name)


@pytest.fixture(scope="module")
def gpt2_report() -> AuditReport:
    with torch.device("meta"):
        model = GPT2LMHeadModel()
    return audit_model(model)


# --------------------------------------------------------------------------- counting


def test_mlp_exact_counts_and_rows() -> None:
    report = audit_model(TinyMLP())
    assert report.total_params == 23
    assert report.trainable_params == 23 and report.frozen_params == 0
    assert [r.name for r in report.layers] == ["fc1", "fc2"]  # ReLU owns nothing: no row
    fc1 = row(report, "fc1")
    assert fc1.type == "Linear"
    assert fc1.shapes == {"weight": [3, 4], "bias": [3]}
    assert fc1.params == 15 and fc1.dtypes == ["float32"] and fc1.bytes == 60
    assert fc1.share == pytest.approx(15 / 23)
    assert report.bytes == 23 * 4 and report.bytes_by_dtype == {"float32": 92}
    assert report.embedding_params == 0 and report.non_embedding_params == 23
    assert rows_sum(report) == report.total_params


def test_batchnorm_buffers_reported_not_counted() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    report = audit_model(model)
    assert report.total_params == 9 + 6  # BatchNorm weight + bias only
    bn = row(report, "1")
    assert bn.type == "BatchNorm1d"
    assert bn.params == 6
    assert bn.buffer_elements == 3 + 3 + 1  # running_mean, running_var, num_batches_tracked
    assert report.buffer_elements == 7
    assert report.buffer_bytes == 3 * 4 + 3 * 4 + 8
    assert "running_mean" not in bn.shapes
    assert report.bytes == 15 * 4  # parameter bytes only


def test_buffer_only_module_gets_a_zero_param_row() -> None:
    class Rotary(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("inv_freq", torch.ones(8))

    model = nn.Sequential(Rotary(), nn.Linear(2, 2))
    report = audit_model(model)
    assert row(report, "0").params == 0 and row(report, "0").buffer_elements == 8
    assert rows_sum(report) == report.total_params == 6


def test_frozen_params() -> None:
    model = TinyMLP()
    model.fc1.requires_grad_(False)
    report = audit_model(model)
    assert report.frozen_params == 15 and report.trainable_params == 8
    assert row(report, "fc1").frozen_params == 15 and row(report, "fc1").trainable_params == 0
    assert row(report, "fc2").trainable_params == 8


def test_gpt2_small_tied_exact(gpt2_report: AuditReport) -> None:
    report = gpt2_report
    assert report.total_params == GPT2_SMALL_PARAMS
    head = row(report, "lm_head")
    assert head.params == 0
    assert head.tied_to == {"weight": "transformer.wte.weight"}
    assert head.shapes == {"weight": [50257, 768]}
    assert row(report, "transformer.wte").params == 50257 * 768
    assert report.embedding_params == 50257 * 768 + 1024 * 768
    assert report.non_embedding_params == GPT2_SMALL_PARAMS - report.embedding_params
    assert rows_sum(report) == report.total_params


def test_naive_count_double_counts_tied_weight() -> None:
    with torch.device("meta"):
        model = GPT2LMHeadModel()
    naive = sum(p.numel() for m in model.modules() for p in m.parameters(recurse=False))
    assert naive - audit_model(model).total_params == 50257 * 768


def test_t5_three_way_shared_embedding_counted_once() -> None:
    vocab, d = 100, 16
    report = audit_model(T5Like(vocab, d))
    assert report.total_params == vocab * d + 2 * d * d
    assert row(report, "shared").params == vocab * d
    for name in ("encoder.embed_tokens", "decoder.embed_tokens", "lm_head"):
        assert row(report, name).params == 0
        assert row(report, name).tied_to == {"weight": "shared.weight"}
    assert report.embedding_params == vocab * d
    assert report.bytes == report.total_params * 4
    assert rows_sum(report) == report.total_params


def test_shared_module_instance_appears_as_tied_row() -> None:
    layer = nn.Linear(3, 3)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    report = audit_model(model)
    assert report.total_params == 12
    assert row(report, "2").tied_to == {"weight": "0.weight", "bias": "0.bias"}
    assert rows_sum(report) == 12


def test_dedup_uses_identity_not_data_ptr_on_meta() -> None:
    with torch.device("meta"):
        model = TinyMLP()
    # meta tensors have no storage; pointers cannot tell them apart, identity can
    assert audit_model(model).total_params == 23


def test_llama2_70b_on_meta_exact_fast_and_without_weight_memory() -> None:
    def rss_bytes() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    rss_before = rss_bytes()
    tracemalloc.start()
    start = time.perf_counter()
    with torch.device("meta"):
        model = LlamaForCausalLM()
    report = audit_model(model)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = rss_bytes() - rss_before

    assert report.total_params == LLAMA2_70B_PARAMS
    assert rows_sum(report) == LLAMA2_70B_PARAMS
    assert report.bytes == 4 * LLAMA2_70B_PARAMS  # 276 GB if it had been real
    assert row(report, "model.layers.0.self_attn.k_proj").shapes == {"weight": [1024, 8192]}
    assert row(report, "lm_head").tied_to == {}
    assert all(p.is_meta for p in model.parameters())
    assert elapsed < 10
    assert peak < 200 * 2**20
    assert rss_growth < 200 * 2**20
    for depth in (1, 2, 3):
        assert rows_sum(report.grouped(depth)) == LLAMA2_70B_PARAMS


# --------------------------------------------------------------------------- grouping


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_grouped_rows_sum_to_total(gpt2_report: AuditReport, depth: int) -> None:
    grouped = gpt2_report.grouped(depth)
    assert rows_sum(grouped) == grouped.total_params == GPT2_SMALL_PARAMS
    assert sum(r.trainable_params for r in grouped.layers) == GPT2_SMALL_PARAMS
    assert grouped.bytes_by_dtype == gpt2_report.bytes_by_dtype
    assert all(len(r.name.split(".")) <= depth for r in grouped.layers)
    assert sum(r.share for r in grouped.layers) == pytest.approx(1.0)


def test_grouped_depth_one_names_types_and_ties(gpt2_report: AuditReport) -> None:
    grouped = gpt2_report.grouped(1)
    assert [r.name for r in grouped.layers] == ["transformer", "lm_head"]
    transformer = row(grouped, "transformer")
    assert transformer.type == "GPT2Model"
    assert transformer.shapes["wte.weight"] == [50257, 768]
    assert transformer.shapes["h.11.mlp.c_proj.bias"] == [768]
    assert row(grouped, "lm_head").tied_to == {"weight": "transformer.wte.weight"}
    assert row(gpt2_report.grouped(2), "transformer.h").type == "ModuleList"


def test_grouped_rejects_bad_depth(gpt2_report: AuditReport) -> None:
    with pytest.raises(ValueError, match="depth"):
        gpt2_report.grouped(0)


def test_by_type(gpt2_report: AuditReport) -> None:
    by_type = gpt2_report.by_type
    d = 768
    assert by_type["Embedding"] == {"params": 50257 * d + 1024 * d, "modules": 2}
    assert by_type["LayerNorm"] == {"params": 25 * 2 * d, "modules": 25}
    # 48 Linear layers in the blocks plus the tied lm_head row, which counts 0
    linear = 12 * ((d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d))
    assert by_type["Linear"] == {"params": linear, "modules": 49}
    assert sum(v["params"] for v in by_type.values()) == GPT2_SMALL_PARAMS


# --------------------------------------------------------------------------- dtypes, memory


def test_dtype_bytes_bfloat16_and_float64() -> None:
    bf16 = audit_model(TinyMLP().to(torch.bfloat16))
    assert bf16.bytes_by_dtype == {"bfloat16": 46} and bf16.bytes == 46
    assert row(bf16, "fc1").dtypes == ["bfloat16"]
    f64 = audit_model(TinyMLP().double())
    assert f64.bytes_by_dtype == {"float64": 184}

    mixed = TinyMLP()
    mixed.fc2.to(torch.float16)
    report = audit_model(mixed)
    assert report.bytes_by_dtype == {"float32": 15 * 4, "float16": 8 * 2}
    assert report.bytes == 76


def test_training_memory_hand_checked() -> None:
    model = TinyMLP()  # 23 params
    model.fc2.requires_grad_(False)  # 15 trainable, 8 frozen
    report = audit_model(model, optimizer="sgd_momentum")
    mem = report.training_memory_bytes
    # weights (all 23) + grads (15 trainable) + states (k * 15 trainable), 4 bytes each
    assert mem["sgd"]["fp32"] == 4 * (23 + 15) == 152
    assert mem["sgd_momentum"]["fp32"] == 4 * (23 + 15 + 15) == 212
    assert mem["adam"]["fp32"] == 4 * (23 + 15 + 30) == 272
    assert mem["adamw"] == mem["adam"]
    assert mem["rmsprop"] == mem["sgd_momentum"]
    assert mem["adam"]["bf16"] == 136
    # bf16 weights + grads (2 + 2), fp32 master weights + two fp32 states (4 + 8)
    assert mem["adam"]["mixed_bf16"] == 2 * 23 + 2 * 15 + 4 * 15 + 8 * 15
    assert set(mem) == set(OPTIMIZER_STATES)
    assert training_memory(report, "adam") == mem["adam"]
    assert training_memory((23, 15), "sgd") == mem["sgd"]
    assert report.optimizer == "sgd_momentum"


def test_unknown_optimizer_rejected() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        audit_model(TinyMLP(), optimizer="lion")
    with pytest.raises(ValueError, match="unknown optimizer"):
        training_memory((1, 1), "lion")


def test_lazy_module_is_a_one_line_error() -> None:
    with pytest.raises(SpecError, match="lazy") as info:
        audit_model(nn.Sequential(nn.LazyLinear(4)))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- rendering


def test_render_json_round_trips(gpt2_report: AuditReport) -> None:
    data = json.loads(render(gpt2_report, "json"))
    assert data["total_params"] == GPT2_SMALL_PARAMS
    assert data["layers"][0]["name"] == "transformer.wte"
    head = next(r for r in data["layers"] if r["name"] == "lm_head")
    assert head["tied_to"] == {"weight": "transformer.wte.weight"}
    assert data["training_memory_bytes"]["adam"]["fp32"] == 16 * GPT2_SMALL_PARAMS
    grouped = json.loads(render(gpt2_report, "json", depth=1))
    assert [r["name"] for r in grouped["layers"]] == ["transformer", "lm_head"]
    assert grouped["total_params"] == GPT2_SMALL_PARAMS


def test_render_csv_parses_with_pandas(gpt2_report: AuditReport) -> None:
    frame = pd.read_csv(io.StringIO(render(gpt2_report, "csv")))
    assert len(frame) == len(gpt2_report.layers)
    assert int(frame["params"].sum()) == GPT2_SMALL_PARAMS
    head = frame[frame["name"] == "lm_head"].iloc[0]
    assert json.loads(head["tied_to"]) == {"weight": "transformer.wte.weight"}
    assert layers_dataframe(gpt2_report)["params"].sum() == GPT2_SMALL_PARAMS


def test_render_markdown_and_table(gpt2_report: AuditReport) -> None:
    md = render(gpt2_report, "markdown")
    assert md.startswith("| Layer | Type | Params |")
    assert "|---|" in md and "- **Total params**: 124,439,808" in md

    table = render(gpt2_report, "table")
    assert "Total params" in table and "124,439,808" in table
    assert "tied→transformer.wte.weight" in table
    assert "38,597,376" in table  # wte: thousands separators
    assert "Training memory (adam)" in table and "GiB" in table
    assert "%" in table
    lines = table.splitlines()
    assert len({line.index("Linear") for line in lines if " Linear " in line}) == 1  # aligned

    sgd = audit_model(TinyMLP(), optimizer="sgd")
    assert "Training memory (sgd)" in render(sgd)
    assert "(root)" in render(audit_model(nn.Linear(2, 2)))


def test_render_unknown_format(gpt2_report: AuditReport) -> None:
    with pytest.raises(ValueError, match="unknown format 'xml'") as info:
        render(gpt2_report, "xml")
    assert "\n" not in str(info.value)


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(int(1.23 * 2**30)) == "1.23 GiB"


def test_plot_layers_writes_png(tmp_path: Path) -> None:
    report = audit_model(nn.Sequential(*(nn.Linear(2, 2) for _ in range(35))))
    out = plot_layers(report, tmp_path / "plots" / "layers.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- load_spec

SPEC_MODULE = "pa_spec_fixture_models"


@pytest.fixture
def spec_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / f"{SPEC_MODULE}.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            NOT_CALLABLE = 42
            READY = nn.Linear(2, 2)

            def build():
                return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))

            def returns_string():
                return "a model"

            def raises():
                raise RuntimeError("out of cheese\\nsecond line")

            class Factory:
                @staticmethod
                def make():
                    return nn.Linear(3, 1)
            """
        )
    )
    (tmp_path / "pa_spec_broken_import.py").write_text("import pa_no_such_package_xyz\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in (SPEC_MODULE, "pa_spec_broken_import"):
        sys.modules.pop(name, None)


def test_load_spec_good(spec_dir: Path) -> None:
    path_before = list(sys.path)
    model = load_spec(f"{SPEC_MODULE}:build")
    assert audit_model(model).total_params == 23
    assert sys.path == path_before  # the working directory is not left on sys.path
    meta = load_spec(f"{SPEC_MODULE}:build", meta=True)
    assert all(p.is_meta for p in meta.parameters())
    assert audit_model(load_spec(f"{SPEC_MODULE}:Factory.make")).total_params == 4
    assert isinstance(load_spec(f"{SPEC_MODULE}:READY"), nn.Linear)


def test_load_spec_registry_models() -> None:
    mlp = audit_model(load_spec("models:mlp"))
    # digits defaults: 64 inputs, two hidden layers of 128, 10 classes
    assert mlp.total_params == (64 * 128 + 128) + (128 * 128 + 128) + (128 * 10 + 10)
    cnn = load_spec("models:cnn", meta=True)
    assert all(p.is_meta for p in cnn.parameters())
    assert audit_model(cnn).buffer_elements > 0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("no_colon_here", "no ':'"),
        (":build", "empty module or callable"),
        ("pa_no_such_module_xyz:build", "cannot import module 'pa_no_such_module_xyz'"),
        ("pa_spec_broken_import:build", "pa_no_such_package_xyz"),
        (f"{SPEC_MODULE}:missing", "has no attribute 'missing'"),
        (f"{SPEC_MODULE}:NOT_CALLABLE", "names a int, not a callable"),
        (f"{SPEC_MODULE}:returns_string", "returned builtins.str, not a torch.nn.Module"),
        (f"{SPEC_MODULE}:raises", "raised RuntimeError: out of cheese second line"),
        ("models:no_such_model", "no registered model 'no_such_model'"),
    ],
)
def test_load_spec_errors_are_one_line(spec_dir: Path, spec: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_a_module_graph_with_a_cycle_is_audited_once_per_module() -> None:
    outer = nn.Sequential(nn.Linear(2, 2))
    outer.append(outer)  # contains itself: named_modules(remove_duplicate=False) never ends
    report = audit_model(outer)
    assert report.total_params == 6
