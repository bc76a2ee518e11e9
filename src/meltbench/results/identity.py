"""What configuration a run measured: one identity, used by compare, report, scaling.

A run's identity is derived here and nowhere else, so ``compare`` (which runs are the
same point), the report's figures (which runs lie on one curve, how a run is labelled)
and the sweep's context-scaling fits group the same runs the same way.

Every field is resolved once, from what the run *resolved* where it recorded it, else
from what its spec *asked* for (a failed run has no engine description, and still
belongs to its configuration):

=============  =====================================================================
``model``      the model's own name (GGUF ``general.name``, HF config), else its path,
               else the spec's reference
``model_path`` the model file or folder (None for a hub reference never resolved)
``quant``      the GGUF quantization (``Q4_K_M``), None for other formats
``weights``    ``pretrained`` or ``random`` (the spec's)
``engine``     the engine's registry name (the spec's: ``llama.cpp``, ``transformers``)
``dtype``      the dtype the engine ran, else the one asked for
``device``     the device the engine ran on, else the one asked for
``target``     where it ran (``local``, ``ssh:jetson``, ``adb:SERIAL``)
``threads``    threads the engine was given, else asked for
``test``       the llama-bench label (``pp512+tg128@d4096``)
``n_prompt``, ``n_gen``, ``n_depth``   the workload's token counts
=============  =====================================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # annotations only: keeps `meltbench --help` free of pydantic
    from meltbench.results.schema import RunResult

__all__ = [
    "CURVE_FIELDS",
    "POINT_FIELDS",
    "ContextCurve",
    "RunIdentity",
    "context_curves",
    "describe",
    "identity_key",
]

POINT_FIELDS = ("model", "quant", "weights", "engine", "dtype", "device", "threads", "test")
"""What makes two runs the same point of ``compare`` (timestamps, machine, seed are not)."""

CURVE_FIELDS = (
    "model",
    "model_path",
    "quant",
    "weights",
    "engine",
    "dtype",
    "device",
    "target",
    "threads",
    "n_gen",
)
"""What stays fixed along a context curve (plus the context axis that is not varied)."""


@dataclass(frozen=True)
class RunIdentity:
    """The configuration a run measured (see the module docstring for each field)."""

    model: str | None
    model_path: str | None
    quant: str | None
    weights: str
    engine: str
    dtype: str | None
    device: str | None
    target: str
    threads: int | None
    test: str
    n_prompt: int
    n_gen: int
    n_depth: int

    @classmethod
    def of(cls, result: RunResult) -> RunIdentity:
        """The identity of ``result`` (also :meth:`RunResult.identity`)."""
        spec, model, settings, engine = result.spec, result.model, result.settings, result.engine
        threads = settings.get("threads")
        return cls(
            model=model.get("name") or model.get("path") or spec.model.ref,
            model_path=model.get("path"),
            quant=model.get("quant"),
            weights=spec.model.weights,
            engine=spec.engine.name,
            dtype=settings.get("dtype") or spec.engine.dtype,
            device=engine.get("device") or settings.get("device") or spec.engine.device,
            target=result.target,
            threads=threads if threads is not None else spec.engine.threads,
            test=result.test,
            n_prompt=spec.workload.n_prompt,
            n_gen=spec.workload.n_gen,
            n_depth=spec.workload.n_depth,
        )

    def fields(self, names: Iterable[str] = POINT_FIELDS) -> dict[str, Any]:
        """The named fields as a dict, in the order given (JSON-ready).

        Raises:
            KeyError: a name that is not a field.
        """
        values = asdict(self)
        return {name: values[name] for name in names}

    @property
    def label(self) -> str:
        """Short display name of the point: ``Gemma 3 270m Q4_K_M llama.cpp t2 pp64+tg16``
        (see :func:`describe`)."""
        return describe(self.fields(POINT_FIELDS))


def describe(fields: dict[str, Any]) -> str:
    """Display name of a set of identity fields: model, quant, ``random`` (weights),
    engine, dtype, device, ``t<threads>``, test; None fields and default weights omitted.
    """
    parts = [fields.get("model"), fields.get("quant")]
    if fields.get("weights") == "random":
        parts.append("random")
    parts += [fields.get("engine"), fields.get("dtype"), fields.get("device")]
    if fields.get("threads") is not None:
        parts.append(f"t{fields['threads']}")
    parts.append(fields.get("test"))
    return " ".join(str(p) for p in parts if p is not None and p != "")


def identity_key(
    fields: dict[str, Any], names: Iterable[str] | None = None
) -> tuple[tuple[str, str], ...]:
    """A hashable, order-independent key of ``fields`` restricted to ``names`` (default:
    all of them); values are compared as JSON, so 2 and "2" differ."""
    chosen = fields if names is None else names
    return tuple((n, json.dumps(fields.get(n), sort_keys=True)) for n in sorted(chosen))


@dataclass
class ContextCurve:
    """Runs of one configuration along one context axis.

    Attributes:
        group: the fixed fields (:data:`CURVE_FIELDS` and the axis that is not varied:
            ``n_depth`` on an ``n_prompt`` curve, ``n_prompt`` on a ``context`` curve).
        axis: ``n_prompt`` (x = prompt tokens) or ``context`` (x = ``n_depth +
            n_prompt``, the KV length at the end of prefill).
        points: ``(x, run)`` in the order the runs were given.
    """

    group: dict[str, Any]
    axis: Literal["n_prompt", "context"]
    points: list[tuple[int, RunResult]] = field(default_factory=list)


def context_curves(
    results: Sequence[RunResult], include_failed: bool = False
) -> list[ContextCurve]:
    """Every context curve of ``results``: ``n_prompt`` curves first, then ``context``
    curves, each kind ordered by its group's key; a grid that varies both gives both.

    Curves of any length are returned (callers need >= 2 or >= 3 distinct x). Failed
    runs are left out unless ``include_failed`` (the report marks the OOM boundary).
    """
    by_prompt: dict[tuple[tuple[str, str], ...], ContextCurve] = {}
    by_depth: dict[tuple[tuple[str, str], ...], ContextCurve] = {}
    for result in results:
        if not result.ok and not include_failed:
            continue
        ident = RunIdentity.of(result)
        base = ident.fields(CURVE_FIELDS)
        g1 = {**base, "n_depth": ident.n_depth}
        by_prompt.setdefault(identity_key(g1), ContextCurve(g1, "n_prompt")).points.append(
            (ident.n_prompt, result)
        )
        g2 = {**base, "n_prompt": ident.n_prompt}
        by_depth.setdefault(identity_key(g2), ContextCurve(g2, "context")).points.append(
            (ident.n_depth + ident.n_prompt, result)
        )
    return [table[key] for table in (by_prompt, by_depth) for key in sorted(table)]
