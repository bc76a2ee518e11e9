"""A converter stand-in for test_child_build: writes a log where it runs, then fails or
succeeds as its job says (``python -m tests.unit.child_writes_cwd JOB``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from meltbench.models.child_build import child_main


def _convert(job: dict[str, Any]) -> None:
    Path(".export.log").write_text("what MNN's llmexport leaves where it runs\n")
    Path(job["out"]).write_text(str(Path.cwd()))
    if job.get("fail"):
        raise ValueError("bad weights\nsecond line")


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], _convert))
