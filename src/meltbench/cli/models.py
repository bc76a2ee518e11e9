"""``meltbench engines`` and ``meltbench convert``: what can run, and model formats."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from meltbench.cli.common import stdout_console

__all__ = ["COMMANDS"]


def _cmd_engines(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from meltbench.errors import UsageError
    from meltbench.registry import ENGINES

    table = Table(header_style="bold")
    for col in ("engine", "installed", "models", "dtypes", "profile", "install / notes"):
        table.add_column(col)
    for name in ENGINES.names():
        try:
            cls = ENGINES.load(name)
        except UsageError as exc:
            table.add_row(name, "[red]no[/]", "", "", "", escape(str(exc)))
            continue
        missing = cls.missing_requirements()
        table.add_row(
            name,
            "[green]yes[/]" if not missing else f"[red]no[/] (missing {', '.join(missing)})",
            ", ".join(cls.model_formats),
            ", ".join(sorted(cls.dtypes)) or "-",
            "yes" if cls.supports_profile else "-",
            escape(cls.install_hint or ENGINES.install_hints.get(name, ""))
            if missing
            else escape(cls.description),
        )
    stdout_console().print(table)
    stdout_console().print(_forward_engines_table())
    return 0


def _forward_engines_table() -> Any:
    """The engines of ``--task encode`` / ``--task classify``."""
    from rich.markup import escape
    from rich.table import Table

    from meltbench.errors import UsageError
    from meltbench.registry import FORWARD_ENGINES

    table = Table(header_style="bold", title="forward tasks (--task encode / classify)")
    for col in ("engine", "installed", "tasks", "loads", "install / notes"):
        table.add_column(col)
    for name in FORWARD_ENGINES.names():
        try:
            cls = FORWARD_ENGINES.load(name)
        except UsageError as exc:
            table.add_row(name, "[red]no[/]", "", "", escape(str(exc)))
            continue
        missing = cls.missing_requirements()
        table.add_row(
            name,
            "[green]yes[/]" if not missing else f"[red]no[/] (missing {', '.join(missing)})",
            ", ".join(cls.tasks),
            f"its {cls.export} export" if cls.export else "the weights (safetensors)",
            escape(cls.install_hint if missing else cls.description),
        )
    return table


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from meltbench.models.convert import convert

    out = convert(args.model, args.to, Path(args.output), dtype=args.dtype)
    sys.stderr.write(f"wrote {out}\n")
    return 0


def add_engines_parser(sub: Any) -> None:
    """The ``engines`` subcommand's arguments."""
    sub.add_parser("engines", help="list engines: installed or not, and how to install")


def add_convert_parser(sub: Any) -> None:
    """The ``convert`` subcommand's arguments."""
    conv = sub.add_parser(
        "convert",
        help="convert a model: GGUF -> HF folder, -> ONNX Runtime GenAI, or requantize a GGUF",
    )
    conv.add_argument("model", help="alias, GGUF file, or Hugging Face folder")
    conv.add_argument(
        "--to",
        required=True,
        choices=("hf", "onnx", "mnn", "pte", "litertlm", "gguf"),
        help="target format",
    )
    conv.add_argument(
        "--output",
        required=True,
        help="hf, onnx, mnn: the folder to create; pte, litertlm, gguf: the file to write "
        "(must not exist)",
    )
    conv.add_argument(
        "--dtype",
        help="hf: bfloat16 (default)/float32; onnx: int4/fp32; mnn: int4/int8; "
        "pte: float32/8da4w; litertlm: dynamic_int8/float32; gguf: Q4_0, Q8_0, ...",
    )


COMMANDS = {
    "engines": (add_engines_parser, _cmd_engines),
    "convert": (add_convert_parser, _cmd_convert),
}
"""Subcommand -> (add its parser, handle it)."""
