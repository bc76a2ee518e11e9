"""Run a model conversion in a child process, offline, and turn its failure into one line.

Converters (onnxruntime-genai's model builder, MNN's ``llmexport``, optimum-executorch,
litert-torch) import torch and transformers, print a lot and hold the whole model in
memory; none of that belongs in the host process. :func:`run_child` starts
``python -m MODULE JOB_JSON`` with ``HF_HUB_OFFLINE=1`` (only local folders are read),
sends its output to a log file, and reads the status the child wrote to a JSON file;
the child's working directory is its temporary folder, so what a converter writes where it
runs (MNN's ``llmexport`` leaves an ``.export.log``) goes away with it, never into the
user's folder -- paths in the job must therefore be absolute;
:func:`child_main` is the child's side: it runs the conversion and writes that status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError

__all__ = ["child_main", "run_child"]


def run_child(module: str, job: dict[str, Any], failure: str, python: str | None = None) -> None:
    """Run ``python -m module JOB`` and wait for it.

    Args:
        module: the child's module (its ``__main__`` calls :func:`child_main`).
        job: JSON-ready arguments, paths absolute (the child runs in a temporary
            folder); ``status_file`` and ``tmp_dir`` are added.
        failure: the start of the error line, e.g. ``"MNN's llmexport cannot convert X"``.
        python: the interpreter to run (default: this one).

    Raises:
        UsageError: the child failed: ``"{failure}: {error type}: {first line}"``, the
            last log line when the child died without writing a status.
    """
    with tempfile.TemporaryDirectory(prefix="meltbench-build-") as tmp_name:
        tmp = str(Path(tmp_name).resolve())
        status_file = Path(tmp) / "status.json"
        log_file = Path(tmp) / "build.log"
        job = {**job, "status_file": str(status_file), "tmp_dir": tmp}
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        with log_file.open("w") as log:
            proc = subprocess.run(
                [python or sys.executable, "-m", module, json.dumps(job)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
                check=False,
            )
        try:
            status = json.loads(status_file.read_text())
        except (OSError, ValueError):
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            status = {"ok": False, "error_type": f"exit code {proc.returncode}",
                      "message": tail[0]}  # fmt: skip
    if not status.get("ok"):
        message = " ".join(str(status.get("message", "")).split())[:300]
        raise UsageError(f"{failure}: {status.get('error_type')}: {message}")


def child_main(argv: list[str], convert: Callable[[dict[str, Any]], None]) -> int:
    """The child's side: ``convert(job)``, then its status in ``job["status_file"]``.

    Returns:
        The exit code: 0 when ``convert`` returned, 1 when it raised (the traceback goes
        to the log).
    """
    job = json.loads(argv[0])
    status_file = Path(job["status_file"])
    try:
        convert(job)
    except BaseException as exc:
        text = str(exc).strip()
        message = text.splitlines()[0] if text else repr(exc)
        status_file.write_text(
            json.dumps({"ok": False, "error_type": type(exc).__name__, "message": message})
        )
        traceback.print_exc()
        return 1
    status_file.write_text(json.dumps({"ok": True}))
    return 0
