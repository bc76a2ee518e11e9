"""llama-bench's list syntax for parameter values on the command line.

``128,512,2048``  a list; ``128-8192*2``  128, 256, ..., 8192 (multiply by 2);
``1-4+1``  1, 2, 3, 4 (add 1); ``1-4`` same as ``1-4+1``. Items combine with commas:
``64,128-1024*2``. This is the syntax of llama.cpp's ``llama-bench`` (its README,
"Syntax": ``-p 128,256`` and ranges ``first-last+step`` / ``first-last*mult``).
"""

from __future__ import annotations

import re

from meltbench.errors import UsageError

__all__ = ["parse_int_list", "parse_str_list"]

_RANGE = re.compile(r"(\d+)-(\d+)(?:([*+])(\d+))?")
_MAX_VALUES = 10_000


def parse_int_list(text: str, name: str = "value") -> list[int]:
    """Expand a llama-bench list of integers, keeping order and dropping repeats.

    Raises:
        UsageError: malformed item, a range whose end is below its start, a step of 0,
            a multiplier below 2, or more than 10,000 values.
    """
    values: list[int] = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            raise UsageError(f"{name}: empty item in {text!r}; write e.g. 128,512 or 128-2048*2")
        if item.isdigit():
            values.append(int(item))
            continue
        m = _RANGE.fullmatch(item)
        if not m:
            raise UsageError(
                f"{name}: cannot read {item!r}; use N, N,M, first-last+step or first-last*mult"
            )
        first, last = int(m.group(1)), int(m.group(2))
        op, step = m.group(3) or "+", int(m.group(4) or 1)
        if last < first:
            raise UsageError(f"{name}: range {item!r} ends before it starts")
        if (op == "+" and step < 1) or (op == "*" and step < 2):
            raise UsageError(
                f"{name}: range {item!r} needs a step >= 1 (+) or a multiplier >= 2 (*)"
            )
        v = first
        while v <= last:
            values.append(v)
            if len(values) > _MAX_VALUES:
                raise UsageError(f"{name}: {text!r} expands to more than {_MAX_VALUES} values")
            v = v + step if op == "+" else v * step
            if v == 0:  # 0*k never grows
                break
    return list(dict.fromkeys(values))


def parse_str_list(text: str) -> list[str]:
    """Split a comma list of names (``llama.cpp,transformers``), dropping blanks/repeats."""
    return list(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
