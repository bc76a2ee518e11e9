"""Search spaces of decoder shapes: a YAML file of lists, expanded and filtered.

A space file (``examples/arch-space-phonelm.yaml``)::

    name: phonelm-0.5b
    shape:                        # one value or a list per dimension
      n_layers: [16, 20, 24]
      d_model: [896, 1024]
      n_heads: [14, 16]
      n_kv_heads: [16, 4, 1]      # = n_heads is MHA, 1 is MQA, between is GQA
      head_dim: [64]              # default d_model / n_heads
      ffn_ratio: [2.75, 4, 5.5]   # d_ff = ffn_ratio * d_model, rounded to ffn_multiple
      ffn_multiple: 64
      activation: [swiglu, gelu]  # gated (3 MLP matrices) or not (2)
      vocab_size: [32000]
      tied: [true]
      ctx: 2048
      qkv_bias: false
    budget_params: 300M..600M     # kept: shapes whose exact count is in the range
    quant: Q4_0                   # llama.cpp type the candidates are quantised to
    strategy: model-guided        # exhaustive | random | model-guided
    samples: 12                   # candidates to measure (random, model-guided)
    seed: 0
    workload:                     # an experiment (meltbench sweep's file format)
      n_prompt: [128, 512]
      n_gen: 32
      reps: 3

Combinations that cannot be built are dropped and counted by reason (``n_kv_heads``
must divide ``n_heads``; without ``head_dim``, ``n_heads`` must divide ``d_model``; a
``gelu`` shape is llama.cpp's StarCoder2 block, whose loader wants ``n_heads * head_dim
== d_model``).
Errors name the file, line and field, like experiment files.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.sweep.experiment import (
    Experiment,
    _Located,
    parse_experiment,
    read_yaml,
)

__all__ = [
    "STRATEGIES",
    "SearchSpace",
    "Shape",
    "load_space",
    "parse_budget",
    "parse_count",
]

STRATEGIES = ("exhaustive", "random", "model-guided")
ACTIVATIONS = {"swiglu": True, "gelu": False}  # name -> gated
_DIMS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "ffn_ratio",
         "activation", "vocab_size", "tied", "ctx", "qkv_bias")  # fmt: skip
_SHAPE_KEYS = (*_DIMS, "ffn_multiple")
_TOP = ("name", "description", "shape", "budget_params", "quant", "strategy", "samples",
        "seed", "engine", "workload", "max_candidates")  # fmt: skip
# llama.cpp's starcoder2 loader checks attn_q as (n_embd, n_embd) (check_tensor_dims).
_UNGATED_WIDTH = "gelu (StarCoder2 block) needs n_heads * head_dim == d_model"
_COUNT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGB]?)\s*", re.I)
_SCALE = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9}


@dataclass(frozen=True)
class Shape:
    """One decoder shape (all sizes in elements).

    Attributes:
        n_layers, d_model, n_heads, n_kv_heads, head_dim, d_ff: the block's sizes.
        gated: SwiGLU MLP (Llama block) or GELU MLP with biases (StarCoder2 block).
        vocab_size: embedding rows. tied: LM head shares the embedding.
        ctx: context length the model is built for (``max_position_embeddings``).
        qkv_bias: Q, K, V biases on the gated block (as Qwen2).
        qk_norm, norms_per_block: count-only (published configs; see :mod:`.params`).
    """

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    gated: bool = True
    vocab_size: int = 32000
    tied: bool = True
    ctx: int = 2048
    qkv_bias: bool = False
    qk_norm: bool = False
    norms_per_block: int = 2

    @property
    def key(self) -> str:
        """12 hex digits of the SHA-256 of the shape's sorted JSON: its cache and result id."""
        raw = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()[:12]

    @property
    def n_params(self) -> int:
        """Exact parameter count (:func:`meltbench.archsearch.params.count_params`)."""
        from meltbench.archsearch.params import count_params

        return count_params(self)

    @property
    def attention(self) -> str:
        """``MHA``, ``MQA`` or ``GQA``."""
        if self.n_kv_heads == self.n_heads:
            return "MHA"
        return "MQA" if self.n_kv_heads == 1 else "GQA"

    def label(self) -> str:
        """Short label, e.g. ``L24 d896 h14/2x64 ff4864 swiglu v151936 tied``."""
        return (
            f"L{self.n_layers} d{self.d_model} h{self.n_heads}/{self.n_kv_heads}x{self.head_dim} "
            f"ff{self.d_ff} {'swiglu' if self.gated else 'gelu'} v{self.vocab_size}"
            + (" tied" if self.tied else "")
            + (" qkvb" if self.qkv_bias else "")
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (:meth:`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shape:
        """A shape from :meth:`to_dict`'s output."""
        return cls(**data)


def parse_count(text: Any, name: str) -> int:
    """A count such as ``300M``, ``1.5B``, ``500000`` or an integer.

    Raises:
        UsageError: not a positive count.
    """
    if isinstance(text, int) and not isinstance(text, bool) and text > 0:
        return text
    m = _COUNT.fullmatch(str(text))
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"{name}: {text!r} is not a count; write e.g. 300M, 1.5B or 500000")
    return int(float(m.group(1)) * _SCALE[m.group(2).upper()])


def parse_budget(text: Any, name: str = "--budget-params") -> tuple[int, int]:
    """``(lo, hi)`` parameters from ``300M..600M`` (either side may be empty: ``..600M``).

    Raises:
        UsageError: malformed, or lo > hi.
    """
    lo_text, sep, hi_text = str(text).partition("..")
    if not sep:
        raise UsageError(f"{name}: {text!r} is not a range; write LO..HI, e.g. 300M..600M")
    lo = parse_count(lo_text, name) if lo_text.strip() else 0
    hi = parse_count(hi_text, name) if hi_text.strip() else 2**63
    if lo > hi:
        raise UsageError(f"{name}: {text!r} has LO above HI; write e.g. 300M..600M")
    return lo, hi


@dataclass
class SearchSpace:
    """A parsed space file.

    Attributes:
        name: the space's name. dims: dimension -> list of values.
        ffn_multiple: d_ff is rounded to a multiple of this.
        budget: (lo, hi) parameters, inclusive. quant: llama.cpp quant type.
        strategy, samples, seed, max_candidates: how candidates are chosen.
        engine: ``llama.cpp`` (GGUF) or ``transformers`` (random weights, float32).
        workload: the experiment every candidate runs (model axis left out).
        source, text_sha256: the file and its text's SHA-256 (resume checks).
    """

    name: str
    dims: dict[str, list[Any]]
    ffn_multiple: int = 64
    budget: tuple[int, int] = (0, 2**63)
    quant: str = "Q4_0"
    strategy: str = "exhaustive"
    samples: int = 8
    seed: int = 0
    max_candidates: int = 64
    engine: str = "llama.cpp"
    workload: Experiment = field(default_factory=lambda: Experiment(axes={}))
    source: Path | None = None
    text_sha256: str | None = None

    def shapes(self) -> tuple[list[Shape], dict[str, int]]:
        """Every buildable shape of the cross product inside the budget, smallest first,
        and the number dropped per reason (``budget``, ``n_kv_heads``, ``head_dim``)."""
        dropped = {"n_kv_heads does not divide n_heads": 0,
                   "n_heads does not divide d_model (give head_dim)": 0,
                   _UNGATED_WIDTH: 0, "outside the parameter budget": 0}  # fmt: skip
        kept: dict[str, Shape] = {}
        for combo in itertools.product(*(self.dims[d] for d in _DIMS)):
            v = dict(zip(_DIMS, combo, strict=True))
            if v["n_heads"] % v["n_kv_heads"]:
                dropped["n_kv_heads does not divide n_heads"] += 1
                continue
            head_dim = v["head_dim"]
            if head_dim is None:
                if v["d_model"] % v["n_heads"]:
                    dropped["n_heads does not divide d_model (give head_dim)"] += 1
                    continue
                head_dim = v["d_model"] // v["n_heads"]
            if not ACTIVATIONS[v["activation"]] and v["n_heads"] * head_dim != v["d_model"]:
                dropped[_UNGATED_WIDTH] += 1
                continue
            m = self.ffn_multiple
            d_ff = max(m, round(float(v["ffn_ratio"]) * v["d_model"] / m) * m)
            shape = Shape(
                n_layers=v["n_layers"], d_model=v["d_model"], n_heads=v["n_heads"],
                n_kv_heads=v["n_kv_heads"], head_dim=head_dim, d_ff=d_ff,
                gated=ACTIVATIONS[v["activation"]], vocab_size=v["vocab_size"],
                tied=v["tied"], ctx=v["ctx"], qkv_bias=v["qkv_bias"],
            )  # fmt: skip
            if not self.budget[0] <= shape.n_params <= self.budget[1]:
                dropped["outside the parameter budget"] += 1
                continue
            kept.setdefault(shape.key, shape)
        shapes = sorted(kept.values(), key=lambda s: (s.n_params, s.key))
        return shapes, {k: n for k, n in dropped.items() if n}


# ffn_ratio 4: the Transformer's d_ff = 4 d_model (Vaswani et al. 2017, section 3.3).
_DEFAULTS: dict[str, Any] = {"head_dim": [None], "ffn_ratio": [4], "activation": ["swiglu"],
                             "vocab_size": [32000], "tied": [True], "ctx": [2048],
                             "qkv_bias": [False], "n_kv_heads": None}  # fmt: skip
_INTS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "vocab_size", "ctx")


def _dim_values(key: str, value: Any, loc: _Located) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise loc.error(("shape", key), "empty list; give at least one value")
    out = []
    for i, item in enumerate(items):
        where = ("shape", key, i) if isinstance(value, list) else ("shape", key)
        if key in _INTS:
            if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                raise loc.error(where, f"expected an integer >= 1, got {item!r}")
        elif key == "ffn_ratio":
            if isinstance(item, bool) or not isinstance(item, (int, float)) or item <= 0:
                raise loc.error(where, f"expected a number > 0, got {item!r}")
        elif key == "activation":
            if item not in ACTIVATIONS:
                raise loc.error(where, f"expected one of {', '.join(ACTIVATIONS)}, got {item!r}")
        elif not isinstance(item, bool):
            raise loc.error(where, f"expected true or false, got {item!r}")
        out.append(item)
    return list(dict.fromkeys(out))


def _shape_dims(data: Any, loc: _Located) -> tuple[dict[str, list[Any]], int]:
    if not isinstance(data, dict):
        raise loc.error(("shape",), "expected a mapping of dimensions, e.g. n_layers: [12, 16]")
    for key in data:
        if key not in _SHAPE_KEYS:
            raise loc.error(("shape", key), f"unknown dimension; use {', '.join(_SHAPE_KEYS)}")
    dims: dict[str, list[Any]] = {}
    for key in _DIMS:
        if key in data:
            dims[key] = _dim_values(key, data[key], loc)
        elif key in _DEFAULTS and _DEFAULTS[key] is not None:
            dims[key] = list(_DEFAULTS[key])
        elif key != "n_kv_heads":
            raise loc.error(("shape",), f"missing {key}")
    dims.setdefault("n_kv_heads", dims["n_heads"])  # default: MHA
    multiple = data.get("ffn_multiple", 64)
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise loc.error(("shape", "ffn_multiple"), f"expected an integer >= 1, got {multiple!r}")
    return dims, multiple


def parse_space(data: Any, source: str, lines: dict[tuple[Any, ...], int]) -> SearchSpace:
    """Validate a loaded space mapping; ``lines`` maps YAML paths to line numbers.

    Raises:
        UsageError: ``file:line: field: problem`` for the first problem found.
    """
    from meltbench.models.quantize import normalize_quant

    loc = _Located(source, lines)
    if not isinstance(data, dict):
        raise loc.error((), "a search space is a mapping with a shape: section")
    for key in data:
        if key not in _TOP:
            raise loc.error((key,), f"unknown field; use {', '.join(_TOP)}")
    dims, multiple = _shape_dims(data.get("shape"), loc)
    space = SearchSpace(name=str(data.get("name") or Path(source).stem), dims=dims,
                        ffn_multiple=multiple)  # fmt: skip
    if data.get("budget_params") is not None:
        try:
            space.budget = parse_budget(data["budget_params"], "budget_params")
        except UsageError as exc:
            raise loc.error(("budget_params",), str(exc).split(": ", 1)[-1]) from None
    if data.get("quant") is not None:
        try:
            space.quant = normalize_quant(str(data["quant"]))
        except UsageError as exc:
            raise loc.error(("quant",), str(exc)) from None
    strategy = data.get("strategy", space.strategy)
    if strategy not in STRATEGIES:
        raise loc.error(("strategy",), f"expected one of {', '.join(STRATEGIES)}")
    space.strategy = strategy
    for key in ("samples", "seed", "max_candidates"):
        value = data.get(key, getattr(space, key))
        if isinstance(value, bool) or not isinstance(value, int) or value < (key != "seed"):
            raise loc.error((key,), f"expected an integer >= {int(key != 'seed')}, got {value!r}")
        setattr(space, key, value)
    engine = data.get("engine", space.engine)
    if engine not in ("llama.cpp", "transformers"):
        raise loc.error(("engine",), "expected llama.cpp (GGUF) or transformers (random weights)")
    space.engine = engine
    workload = data.get("workload") or {}
    if not isinstance(workload, dict):
        raise loc.error(("workload",), "expected a mapping, e.g. {n_prompt: [128, 512]}")
    for key in ("model", "weights", "engine", "quant"):
        if key in workload:
            raise loc.error(("workload", key), "set by the search; remove it from workload")
    sub = {p[1:]: n for p, n in lines.items() if p[:1] == ("workload",)}
    space.workload = parse_experiment(workload, source, sub)
    return space


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file.

    Raises:
        UsageError: missing/unreadable file, invalid YAML (with its line) or an invalid
            field (``file:line: field: problem``).
    """
    p = Path(path)
    text, data, lines = read_yaml(p, "search space")
    space = parse_space(data, str(p), lines)
    space.source = p.resolve()
    space.text_sha256 = hashlib.sha256(text.encode()).hexdigest()
    return space
