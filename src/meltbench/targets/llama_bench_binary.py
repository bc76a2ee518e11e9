"""The llama-bench binary an adb run pushes: where it is (``-o llama_bench=PATH`` or
$MELTBENCH_ANDROID_LLAMA_BENCH), its ABI from the ELF header, and its command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError

__all__ = ["LLAMA_BENCH_ENV", "elf_abi", "llama_bench_argv", "llama_bench_path"]

#: env var naming the llama-bench binary built for the phone
LLAMA_BENCH_ENV = "MELTBENCH_ANDROID_LLAMA_BENCH"


_ELF_MACHINES = {3: "x86", 40: "armeabi-v7a", 62: "x86_64", 183: "arm64-v8a"}


def llama_bench_path(spec: Any) -> Path:
    """The local llama-bench binary to push: ``spec.engine.options["llama_bench"]``, else
    ``$MELTBENCH_ANDROID_LLAMA_BENCH``.

    Raises:
        UsageError: neither is given, or the path is not a file.
    """
    raw = (spec.engine.options or {}).get("llama_bench") or os.environ.get(LLAMA_BENCH_ENV)
    if not raw:
        raise UsageError(
            "adb targets run llama.cpp's llama-bench on the phone: build llama-bench for "
            "arm64-v8a with the Android NDK (see README) and pass -o llama_bench=PATH "
            f"(or set {LLAMA_BENCH_ENV})"
        )
    path = Path(str(raw)).expanduser()
    if not path.is_file():
        raise UsageError(f"llama-bench {str(path)!r} is not a file; pass -o llama_bench=PATH")
    return path


def elf_abi(path: Path) -> str | None:
    """The Android ABI an ELF executable is built for (``arm64-v8a``...), None when the
    file is not ELF (a script) or the machine is not one Android uses."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "little" if head[5] == 1 else "big"
    return _ELF_MACHINES.get(int.from_bytes(head[18:20], order), f"e_machine {head[18]}")


def llama_bench_argv(spec: Any, bench: str, model: str) -> list[str]:
    """llama-bench's argument list for ``spec`` (paths on the phone).

    ``-p``, ``-n``, ``-r``, ``-b``, ``-ub`` and ``-o json`` always; ``-t`` only when
    ``spec.engine.threads`` is set (else llama-bench's default for the phone's cores);
    ``-d`` for ``n_depth``; ``--no-warmup`` for ``warmup = 0`` (llama-bench's own warmup
    is one untimed run); engine options ``n_gpu_layers`` (``-ngl``), ``flash_attn``
    (``-fa``), ``type_k``/``type_v`` (``-ctk``/``-ctv``) and ``use_mmap`` (``-mmp``).
    """
    wl, eng = spec.workload, spec.engine
    argv = [
        bench,
        "-m",
        model,
        "-p",
        str(wl.n_prompt),
        "-n",
        str(wl.n_gen),
        "-r",
        str(wl.reps),
        "-b",
        str(eng.batch),
        "-ub",
        str(eng.ubatch or eng.batch),
        "-o",
        "json",
    ]
    if eng.threads:
        argv += ["-t", str(eng.threads)]
    if wl.n_depth:
        argv += ["-d", str(wl.n_depth)]
    if wl.warmup == 0:
        argv.append("--no-warmup")
    opts = eng.options or {}
    for key, flag in (
        ("n_gpu_layers", "-ngl"),
        ("flash_attn", "-fa"),
        ("type_k", "-ctk"),
        ("type_v", "-ctv"),
    ):
        value = opts.get(key)
        if value is not None:
            argv += [flag, str(int(value)) if isinstance(value, bool) else str(value)]
    if opts.get("use_mmap") is not None:
        argv += ["-mmp", "1" if opts["use_mmap"] else "0"]
    return argv
