"""Quantization variants of a GGUF, made by llama.cpp's own quantizer.

One GGUF (by default the Gemma 3 270M Q4_K_M of the alias) becomes Q4_0, Q8_0, Q2_K, ...
through ``llama_model_quantize`` (llama.cpp ``include/llama.h``; implementation in
``src/llama-quant.cpp``), called in this process through llama-cpp-python, with
``allow_requantize`` set because the source tensors are already quantized. Each tensor
is dequantized to F32 and quantized again to the type llama.cpp's mix for the target
``llama_ftype`` chooses; the file's ``general.file_type`` becomes that ftype, so
:func:`meltbench.models.gguf_info.read_gguf_info` reads the new name back.

A variant made from a quantized source carries the source's error plus its own: it can be
compared against its source, never against the original (unquantized) weights.
:func:`variant_note` words that for results.

Types that need an importance matrix (imatrix, made by ``llama-imatrix`` from calibration
text) are left out of :data:`QUANT_TYPES`, as are types meant for other kinds of model;
:data:`EXCLUDED_TYPES` says why for each. Rows whose length is not a multiple of a type's
block (256 for K- and most IQ-quants) fall back to a legacy type of block 32: for Gemma 3
270M (width 640) that is 90 of 236 tensors of every K-quant variant.

Variants of a file are cached under ``cache_dir()/derived``, keyed by the source's path,
size and modification time, built once and published atomically.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gguf

from meltbench.errors import UsageError
from meltbench.models.gguf_info import GGUFInfo, check_gguf_path

__all__ = [
    "EXCLUDED_TYPES",
    "QUANT_TYPES",
    "cached_variant",
    "normalize_quant",
    "requantize",
    "variant_note",
]

log = logging.getLogger(__name__)

# llama.cpp's names (``llama-quantize``'s spelling, ``LLAMA_FTYPE_MOSTLY_<NAME>``), highest
# precision first. Each was requantized from the Q4_K_M default model with
# llama-cpp-python 0.3.36, read back with the same name, and kept the parameter count.
_SUPPORTED = (
    "F32",
    "F16",
    "BF16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_1",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_1",
    "Q4_0",
    "IQ4_NL",
    "IQ4_XS",
    "Q3_K_L",
    "Q3_K_M",
    "Q3_K_S",
    "IQ3_M",
    "IQ3_S",
    "IQ3_XS",
    "Q2_K",
)

_IMATRIX = (
    "needs an importance matrix: llama.cpp refuses it without one "
    "(tensor_requires_imatrix in src/llama-quant.cpp), and meltbench makes none"
)

#: Quantization types of llama.cpp's ``llama_ftype`` enum that meltbench does not offer.
EXCLUDED_TYPES: dict[str, str] = {
    "IQ1_S": _IMATRIX,
    "IQ1_M": _IMATRIX,
    "IQ2_XXS": _IMATRIX,
    "IQ2_XS": _IMATRIX,
    "IQ2_S": _IMATRIX,
    "IQ2_M": _IMATRIX,
    "Q2_K_S": _IMATRIX,
    "IQ3_XXS": _IMATRIX + " (llama-cpp-python 0.3.36 still builds it, newer llama.cpp refuses it)",
    "TQ1_0": "is meant for models trained with ternary weights (BitNet), not for ordinary weights",
    "TQ2_0": "is meant for models trained with ternary weights (BitNet), not for ordinary weights",
    "Q1_0": "is meant for models trained with 1-bit weights, not for ordinary weights",
    "Q2_0": "writes a tensor type (42) that the gguf package 0.19 cannot read",
    "MXFP4_MOE": "quantizes only mixture-of-experts tensors: on a dense model it is Q8_0",
    "NVFP4": "is rejected by llama.cpp's quantizer (invalid output file type 39)",
}


def _ftype_member(name: str) -> str:
    return "ALL_F32" if name == "F32" else f"MOSTLY_{name}"


#: Supported quantization name (upper case, llama.cpp's) -> ``llama_ftype`` integer, from
#: ``gguf.LlamaFileType`` (names the installed gguf package lacks are left out).
QUANT_TYPES: dict[str, int] = {
    name: int(gguf.LlamaFileType[_ftype_member(name)])
    for name in _SUPPORTED
    if _ftype_member(name) in gguf.LlamaFileType.__members__
}

_FULL_PRECISION = ("F32", "F16", "BF16")
_lock = threading.Lock()  # llama.cpp's log callback is process-wide


def normalize_quant(quant: str) -> str:
    """The canonical (upper-case) name of a quantization type, e.g. ``q4_k_m`` -> ``Q4_K_M``.

    Raises:
        UsageError: the name is not in :data:`QUANT_TYPES` (one line listing the valid
            names, or saying why llama.cpp's type is left out).
    """
    name = quant.strip().upper().replace("-", "_")
    if name in QUANT_TYPES:
        return name
    if name in EXCLUDED_TYPES:
        raise UsageError(
            f"quantization type {name} is not supported: it {EXCLUDED_TYPES[name]}; "
            f"choose one of: {', '.join(QUANT_TYPES)}"
        )
    raise UsageError(
        f"unknown quantization type {quant!r}; choose one of: {', '.join(QUANT_TYPES)}"
    )


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise UsageError(
            "making quantization variants needs llama-cpp-python; "
            "install it with: pip install 'meltbench[llama]'"
        ) from exc
    return llama_cpp


def _failure_reason(lines: list[tuple[int, str]]) -> str:
    """One line from llama.cpp's log of a failed quantize (ggml levels 3 WARN, 4 ERROR).

    The reason is what follows ``failed to quantize:``; a short error logged before it
    (e.g. ``gguf_init_from_reader: failed to read key-value pairs``) is added in brackets.
    """
    texts = [(level, " ".join(text.split())) for level, text in lines if level in (3, 4)]
    texts = [(level, t) for level, t in texts if t]
    marker = "failed to quantize:"
    for i in range(len(texts) - 1, -1, -1):
        if marker in texts[i][1]:
            reason = texts[i][1].split(marker, 1)[1].strip()
            before = [t for lv, t in texts[:i] if lv == 4 and len(t) <= 120 and "==" not in t]
            if before and before[-1] not in reason:
                reason += f" ({before[-1]})"
            return reason
    return texts[-1][1] if texts else "no message"


def _quantize_file(src: Path, out: Path, name: str, threads: int | None) -> None:
    """Run llama.cpp's quantizer from ``src`` to exactly ``out`` (no temporary file)."""
    llama_cpp = _llama_cpp()
    ftype = QUANT_TYPES[name]
    member = _ftype_member(name)
    if getattr(llama_cpp, f"LLAMA_FTYPE_{member}", None) != ftype:
        raise UsageError(
            f"quantization type {name} (llama_ftype {ftype} in the gguf package) is not "
            f"the same in llama-cpp-python {getattr(llama_cpp, '__version__', '?')}; "
            "upgrade both: pip install -U gguf llama-cpp-python"
        )
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or 0  # <= 0: llama.cpp uses std::thread::hardware_concurrency()
    params.allow_requantize = True  # the source tensors are quantized already

    lines: list[tuple[int, str]] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        lines.append((int(level), text.decode("utf-8", "replace")))

    with _lock:
        llama_cpp.llama_backend_init()
        llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
        try:
            rc = llama_cpp.llama_model_quantize(
                str(src).encode(), str(out).encode(), ctypes.byref(params)
            )
        finally:
            _restore_log(llama_cpp)
    for level, text in lines:
        if level in (3, 4) and "fallback quantization" in text:
            log.info("llama.cpp: %s", " ".join(text.split()))
    if rc != 0:
        raise UsageError(
            f"llama.cpp could not quantize {src} to {name}: {_failure_reason(lines)}; "
            "check that llama.cpp can load the source and the output disk has space"
        )


def _restore_log(llama_cpp: Any) -> None:
    """Give llama.cpp's log back to llama-cpp-python's own callback."""
    try:
        from llama_cpp import _logger

        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
    except (ImportError, AttributeError):
        llama_cpp.llama_log_set(None, ctypes.c_void_p(0))  # llama.cpp's default: stderr


def _check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be at least 1, not {threads}")


def requantize(src: Path, dst: Path, quant: str, threads: int | None = None) -> Path:
    """Write ``src`` quantized to ``quant`` at ``dst``, with llama.cpp's quantizer.

    Calls ``llama_model_quantize(src, tmp, params)`` (llama.cpp ``include/llama.h``) with
    ``llama_model_quantize_default_params()``, ``ftype`` from :data:`QUANT_TYPES`,
    ``allow_requantize = True`` and ``nthread``; the file is written to a temporary name
    next to ``dst`` and renamed onto it, so ``dst`` is either complete or untouched.
    llama.cpp's log is captured (not printed); its fallback summary goes to this
    module's logger at INFO level.

    Args:
        src: a GGUF file (any type llama.cpp reads: F32, F16, BF16 or quantized).
        dst: the output GGUF path (replaced if it exists; parent folders are created).
        quant: a name in :data:`QUANT_TYPES`, any case (``q4_0``, ``Q8_0``).
        threads: CPU threads for quantizing; None lets llama.cpp use all hardware threads.

    Returns:
        ``dst``; its ``general.file_type`` is ``quant``'s ``llama_ftype`` and it has the
        same tensors (and parameter count) as ``src``. Times: about 0.5-5 s per variant
        for a 270M model on 2 cores (IQ types 15-35 s).

    Raises:
        UsageError: unknown or unsupported ``quant``; missing or non-GGUF ``src``;
            ``dst`` the same file as ``src`` or a folder; ``threads`` below 1;
            llama-cpp-python missing or disagreeing with gguf on the ``llama_ftype``
            value; llama.cpp returning non-zero (its reason, on one line); or the
            output folder not writable.
    """
    name = normalize_quant(quant)
    _check_threads(threads)
    src = check_gguf_path(src).resolve()
    dst = Path(dst).expanduser().resolve()
    if dst == src:
        raise UsageError(f"output {dst} is the source file; choose another output path")
    if dst.is_dir():
        raise UsageError(f"output {dst} is a directory; pass a .gguf file path")
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        _quantize_file(src, tmp, name, threads)
        tmp.replace(dst)
    except OSError as exc:
        raise UsageError(
            f"cannot write {dst}: {exc.strerror or exc}; choose a writable output path"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def cached_variant(src: Path, quant: str, threads: int | None = None) -> Path:
    """``src`` quantized to ``quant``, built once and cached; ``src`` itself if already so.

    The variant lives at ``cache_dir()/"derived"/f"{src.stem}-{key}-{QUANT}.gguf"``, where
    ``key`` hashes the source's resolved path, size and modification time (a changed
    source gets a new variant). It is built under a per-process partial name and then
    hard-linked into place, so an interrupted build is never used and two processes
    building at once keep whichever finished first.

    Args:
        src: a GGUF file.
        quant: a name in :data:`QUANT_TYPES`, any case.
        threads: CPU threads for quantizing (None: all hardware threads).

    Returns:
        the variant's path, or the resolved ``src`` when its type (``general.file_type``,
        as :func:`meltbench.models.gguf_info.read_gguf_info` names it) already is
        ``quant``.

    Raises:
        UsageError: as :func:`requantize`, and an unwritable cache folder.
    """
    from meltbench.models.cache import cache_dir, cached_gguf_info, source_key

    name = normalize_quant(quant)
    _check_threads(threads)
    src = check_gguf_path(src).resolve()
    if cached_gguf_info(src).quant == name:
        return src
    target = cache_dir() / "derived" / f"{src.stem}-{source_key(src)}-{name}.gguf"
    if target.is_file():
        return target
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        _quantize_file(src, partial, name, threads)
        try:
            os.link(partial, target)  # fails if another process published first: keep it
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system
            if not target.is_file():
                partial.replace(target)
    except OSError as exc:
        raise UsageError(
            f"cannot write the {name} variant to {target.parent}: {exc.strerror or exc}; "
            "set XDG_CACHE_HOME to a writable folder"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


def _field(info: GGUFInfo | Mapping[str, Any], key: str) -> Any:
    if isinstance(info, Mapping):
        return info.get(key)
    return getattr(info, key, None)


def variant_note(
    src_info: GGUFInfo | Mapping[str, Any], variant_info: GGUFInfo | Mapping[str, Any]
) -> str:
    """One line saying what a variant was made from, for results and reports.

    Args:
        src_info: the source's facts (:class:`GGUFInfo` or its dict, e.g.
            ``ResolvedModel.info``); ``quant`` and ``path`` are read.
        variant_info: the variant's facts, same forms.

    Returns:
        e.g. ``"Q4_0 requantized from Q4_K_M (compared against its source, not the
        original weights)"``; ``"Q4_0 quantized from F16"`` from an F32/F16/BF16 source;
        ``"Q4_K_M: the source file itself (not requantized)"`` when both are one file.
    """
    src_quant = _field(src_info, "quant") or "unknown type"
    var_quant = _field(variant_info, "quant") or "unknown type"
    src_path, var_path = _field(src_info, "path"), _field(variant_info, "path")
    if src_path is not None and src_path == var_path:
        return f"{var_quant}: the source file itself (not requantized)"
    if src_quant in _FULL_PRECISION:
        return f"{var_quant} quantized from {src_quant}"
    return (
        f"{var_quant} requantized from {src_quant} "
        "(compared against its source, not the original weights)"
    )
