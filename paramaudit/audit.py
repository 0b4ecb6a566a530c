"""Exact per-layer parameter counts for any PyTorch model, without a forward pass.

The audit reads only shapes, dtypes and ``requires_grad`` of each tensor, never its values, so
a model built on the meta device (``with torch.device("meta"): model = Build()``) is audited
with no real weight memory, however large it is.

Counting rules:

* One row per module that owns parameters or buffers directly (``recurse=False``), in
  ``named_modules`` order. A module reachable under several paths gets a row for each path.
* Every tensor is counted once, in its first owner. Later owners show the tensor in
  ``tied_to`` and count 0 for it, so the rows always add up to the total. Tensors are told
  apart by ``id()`` of the ``Parameter`` object: meta tensors can all report the same
  ``data_ptr``, so pointers would merge unrelated tensors.
* Buffers (BatchNorm running statistics and the like) are reported in ``buffer_elements``
  and ``buffer_bytes``, never as parameters. ``bytes`` and ``bytes_by_dtype`` are parameter
  bytes only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import torch
from torch import nn

from paramaudit.errors import SpecError
from paramaudit.train_hyperparameters import OPTIMIZER

# Optimizer state tensors kept per trainable parameter, as torch.optim keeps them with its
# defaults. rmsprop is torch's default RMSprop (momentum=0, centered=False): square_avg only.
# With momentum > 0 it also keeps a momentum buffer: use "rmsprop_momentum" for that case.
OPTIMIZER_STATES: dict[str, int] = {
    "sgd": 0,
    "sgd_momentum": 1,
    "adam": 2,
    "adamw": 2,
    "rmsprop": 1,
    "rmsprop_momentum": 2,
}

# Bytes per element in each precision regime of the training-memory estimate.
# fp32: weights, gradients and optimizer states all fp32 (4 bytes).
# bf16: weights, gradients and optimizer states all bf16 (2 bytes), i.e. pure bf16 training.
# mixed_bf16: bf16 weights and gradients plus an fp32 master copy of the trainable weights and
#   fp32 optimizer states, the usual mixed-precision recipe (16 bytes per parameter for Adam).
PRECISIONS = ("fp32", "bf16", "mixed_bf16")

DEFAULT_OPTIMIZER: str = OPTIMIZER.default  # what training uses when no optimizer is searched

_EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)


@dataclass
class LayerRow:
    """One module that owns tensors directly; counts cover only tensors it owns first."""

    name: str
    type: str
    shapes: dict[str, list[int]]
    params: int
    trainable_params: int
    frozen_params: int
    buffer_elements: int
    dtypes: list[str]
    bytes: int
    share: float
    tied_to: dict[str, str] = field(default_factory=dict)


@dataclass
class AuditReport:
    """Per-layer rows plus totals; ``sum(row.params for row in layers) == total_params``."""

    layers: list[LayerRow]
    total_params: int
    trainable_params: int
    frozen_params: int
    buffer_elements: int
    bytes: int
    bytes_by_dtype: dict[str, int]
    embedding_params: int
    non_embedding_params: int
    by_type: dict[str, dict[str, int]]
    training_memory_bytes: dict[str, dict[str, int]]
    buffer_bytes: int = 0
    # The optimizer asked for, if any; renderers show its training memory (adam otherwise).
    optimizer: str | None = None
    # What training in this process measured (paramaudit.memory.measured_peak; the pipeline
    # sets it for the final model), to set beside the estimate; None for a standalone audit.
    measured_training_memory: dict[str, Any] | None = None
    # Class name of every module path, so grouped rows can name the module they stand for.
    module_types: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain ints, floats, strings, lists and dicts)."""
        return {
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "frozen_params": self.frozen_params,
            "buffer_elements": self.buffer_elements,
            "buffer_bytes": self.buffer_bytes,
            "bytes": self.bytes,
            "bytes_by_dtype": dict(self.bytes_by_dtype),
            "embedding_params": self.embedding_params,
            "non_embedding_params": self.non_embedding_params,
            "optimizer": self.optimizer,
            "layers": [asdict(row) for row in self.layers],
            "by_type": {k: dict(v) for k, v in self.by_type.items()},
            "training_memory_bytes": {k: dict(v) for k, v in self.training_memory_bytes.items()},
            "measured_training_memory": (None if self.measured_training_memory is None
                                         else dict(self.measured_training_memory)),
        }

    def grouped(self, depth: int) -> AuditReport:
        """Rows summed at module-path depth ``depth`` (>= 1); totals are unchanged.

        A row whose name has ``depth`` parts or fewer stays as it is. Keys of ``shapes`` and
        ``tied_to`` in a merged row are paths relative to the group.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
        groups: dict[str, list[LayerRow]] = {}
        for row in self.layers:
            key = ".".join(row.name.split(".")[:depth])
            groups.setdefault(key, []).append(row)
        layers = [_merge_rows(key, rows, self) for key, rows in groups.items()]
        return replace(self, layers=layers)


def _merge_rows(key: str, rows: list[LayerRow], report: AuditReport) -> LayerRow:
    if len(rows) == 1 and rows[0].name == key:
        return replace(rows[0], shapes=dict(rows[0].shapes), tied_to=dict(rows[0].tied_to))
    shapes: dict[str, list[int]] = {}
    tied: dict[str, str] = {}
    for row in rows:
        rel = row.name[len(key) :].lstrip(".") if key else row.name
        prefix = f"{rel}." if rel else ""
        shapes.update({prefix + k: v for k, v in row.shapes.items()})
        tied.update({prefix + k: v for k, v in row.tied_to.items()})
    params = sum(r.params for r in rows)
    types = {r.type for r in rows}
    return LayerRow(
        name=key,
        type=report.module_types.get(key) or (types.pop() if len(types) == 1 else "group"),
        shapes=shapes,
        params=params,
        trainable_params=sum(r.trainable_params for r in rows),
        frozen_params=sum(r.frozen_params for r in rows),
        buffer_elements=sum(r.buffer_elements for r in rows),
        dtypes=sorted({d for r in rows for d in r.dtypes}),
        bytes=sum(r.bytes for r in rows),
        share=params / report.total_params if report.total_params else 0.0,
        tied_to=tied,
    )


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def training_memory(
    source: AuditReport | tuple[int, int], optimizer: str = DEFAULT_OPTIMIZER
) -> dict[str, int]:
    """Bytes for weights + gradients + optimizer state, per precision (see ``PRECISIONS``).

    ``source`` is an audit or a ``(total_params, trainable_params)`` pair. Weights cover all
    parameters; gradients and optimizer state only trainable ones. Buffers and activations
    are not included.
    """
    if isinstance(source, AuditReport):
        total, trainable = source.total_params, source.trainable_params
    else:
        total, trainable = source
    if optimizer not in OPTIMIZER_STATES:
        known = ", ".join(OPTIMIZER_STATES)
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {known}")
    states = OPTIMIZER_STATES[optimizer]
    return {
        "fp32": 4 * (total + trainable + states * trainable),
        "bf16": 2 * (total + trainable + states * trainable),
        # bf16 weights and grads, fp32 master weights (trainable only) and fp32 states
        "mixed_bf16": 2 * total + 2 * trainable + 4 * trainable + 4 * states * trainable,
    }


def _has_cycle(model: nn.Module) -> bool:
    """True if a module contains itself somewhere below (depth-first, three colours)."""
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[nn.Module, Iterator[nn.Module]]] = [(model, model.children())]
    on_path.add(id(model))
    while stack:
        module, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            on_path.discard(id(module))
            done.add(id(module))
        elif id(child) in on_path:
            return True
        elif id(child) not in done:
            on_path.add(id(child))
            stack.append((child, child.children()))
    return False


def _walk(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``named_modules(remove_duplicate=False)`` order: a row for every path to a module.

    A module graph with a cycle, which that would follow forever, is walked once per module.
    """
    yield from model.named_modules(remove_duplicate=_has_cycle(model))


@dataclass
class _Tally:
    """What one audit pass has seen so far; every tensor is counted in its first owner only."""

    # id(tensor) -> qualified name of its first owner; the model keeps every tensor alive for
    # the whole audit, so ids cannot be reused under us.
    first_owner: dict[int, str] = field(default_factory=dict)
    embedding_ids: set[int] = field(default_factory=set)
    counted: dict[int, nn.Parameter] = field(default_factory=dict)
    module_types: dict[str, str] = field(default_factory=dict)
    layers: list[LayerRow] = field(default_factory=list)
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)
    buffer_elements: int = 0
    buffer_bytes: int = 0


class _ParamCounts(NamedTuple):
    """The parameters one module owns, counted for its row."""

    shapes: dict[str, list[int]]
    tied: dict[str, str]
    dtypes: set[str]
    params: int
    trainable: int
    nbytes: int


def _check_audit_args(model: Any, optimizer: str | None) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"audit_model needs a torch.nn.Module, got {type(model).__name__}")
    if optimizer is not None and optimizer not in OPTIMIZER_STATES:
        known = ", ".join(OPTIMIZER_STATES)
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {known}")


def _lazy_error(mod_name: str, model_type: str, local: str, kind: str) -> SpecError:
    """The error for an uninitialized lazy tensor (``kind``: "parameter" or "buffer")."""
    return SpecError(
        f"{mod_name or model_type}.{local} is an uninitialized lazy "
        f"{kind}; its size is unknown until a forward pass"
    )


def _count_own_params(
    tally: _Tally, mod_name: str, own_params: list[tuple[str, nn.Parameter]], model_type: str
) -> _ParamCounts:
    """Count a module's own parameters, registering the ones seen here first in ``tally``."""
    shapes: dict[str, list[int]] = {}
    tied: dict[str, str] = {}
    dtypes: set[str] = set()
    params = trainable = row_bytes = 0
    for local, p in own_params:
        if nn.parameter.is_lazy(p):
            raise _lazy_error(mod_name, model_type, local, "parameter")
        shapes[local] = list(p.shape)
        key = dtype_name(p.dtype)
        dtypes.add(key)
        # a tied tensor is listed (shape, dtype) in every owner but counted in the first only
        if id(p) in tally.first_owner:
            tied[local] = tally.first_owner[id(p)]
            continue
        tally.first_owner[id(p)] = f"{mod_name}.{local}" if mod_name else local
        tally.counted[id(p)] = p
        n = p.numel()
        params += n
        trainable += n if p.requires_grad else 0
        nbytes = n * p.element_size()
        row_bytes += nbytes
        tally.bytes_by_dtype[key] = tally.bytes_by_dtype.get(key, 0) + nbytes
    return _ParamCounts(shapes, tied, dtypes, params, trainable, row_bytes)


def _count_own_buffers(
    tally: _Tally, mod_name: str, own_buffers: list[tuple[str, torch.Tensor]], model_type: str
) -> int:
    """Elements of a module's own buffers not seen before; adds their bytes to ``tally``."""
    row_buffers = 0
    for local, b in own_buffers:
        if nn.parameter.is_lazy(b):
            raise _lazy_error(mod_name, model_type, local, "buffer")
        if id(b) in tally.first_owner:
            continue
        tally.first_owner[id(b)] = mod_name
        row_buffers += b.numel()
        tally.buffer_bytes += b.numel() * b.element_size()
    tally.buffer_elements += row_buffers
    return row_buffers


def _audit_module(tally: _Tally, mod_name: str, module: nn.Module, model_type: str) -> None:
    """Add the row of one module path to ``tally``, if the module owns tensors directly."""
    tally.module_types.setdefault(mod_name, type(module).__name__)
    own_params = list(module.named_parameters(recurse=False, remove_duplicate=False))
    own_buffers = list(module.named_buffers(recurse=False, remove_duplicate=False))
    # recorded before the empty check below: what matters is which tensors an embedding owns
    if isinstance(module, _EMBEDDING_TYPES):
        tally.embedding_ids.update(id(p) for _, p in own_params)
    if not own_params and not own_buffers:
        return
    counts = _count_own_params(tally, mod_name, own_params, model_type)
    row_buffers = _count_own_buffers(tally, mod_name, own_buffers, model_type)
    tally.layers.append(
        LayerRow(
            name=mod_name,
            type=type(module).__name__,
            shapes=counts.shapes,
            params=counts.params,
            trainable_params=counts.trainable,
            frozen_params=counts.params - counts.trainable,
            buffer_elements=row_buffers,
            dtypes=sorted(counts.dtypes),
            bytes=counts.nbytes,
            share=0.0,  # set once the total is known, in _build_report
            tied_to=counts.tied,
        )
    )


def _build_report(tally: _Tally, optimizer: str | None) -> AuditReport:
    """Totals, shares and per-type sums over the rows of a finished pass."""
    layers = tally.layers
    total = sum(row.params for row in layers)
    trainable_total = sum(row.trainable_params for row in layers)
    # A parameter is an embedding parameter if any of its owners is an embedding module, so
    # a tied lm_head listed before the embedding does not turn it into a non-embedding one.
    embedding = sum(p.numel() for i, p in tally.counted.items() if i in tally.embedding_ids)
    by_type: dict[str, dict[str, int]] = {}
    for row in layers:
        row.share = row.params / total if total else 0.0
        entry = by_type.setdefault(row.type, {"params": 0, "modules": 0})
        entry["params"] += row.params
        entry["modules"] += 1
    return AuditReport(
        layers=layers,
        total_params=total,
        trainable_params=trainable_total,
        frozen_params=total - trainable_total,
        buffer_elements=tally.buffer_elements,
        bytes=sum(tally.bytes_by_dtype.values()),
        bytes_by_dtype=tally.bytes_by_dtype,
        embedding_params=embedding,
        non_embedding_params=total - embedding,
        by_type=by_type,
        training_memory_bytes={
            opt: training_memory((total, trainable_total), opt) for opt in OPTIMIZER_STATES
        },
        buffer_bytes=tally.buffer_bytes,
        optimizer=optimizer,
        module_types=tally.module_types,
    )


def audit_model(model: nn.Module, optimizer: str | None = None) -> AuditReport:
    """Audit ``model``'s parameters layer by layer; reads shapes and dtypes only.

    ``optimizer`` (one of ``OPTIMIZER_STATES``) picks the training-memory estimate renderers
    show; estimates for every optimizer are computed either way.
    """
    _check_audit_args(model, optimizer)
    tally = _Tally()
    model_type = type(model).__name__
    # one pass over the modules: a 70B model on the meta device must audit in seconds
    for mod_name, module in _walk(model):
        _audit_module(tally, mod_name, module, model_type)
    return _build_report(tally, optimizer)
