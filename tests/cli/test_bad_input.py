"""Every bad input gives one line on stderr, exit code 2, no traceback, nothing stored."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.helpers import write_tiny_gguf


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meltbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def assert_usage_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.fixture
def truncated_gguf(tmp_path):
    full = write_tiny_gguf(tmp_path / "full.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(full.read_bytes()[:-8])
    return cut


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--model", "/nonexistent/model.gguf"], ["model file not found", "pass an existing"]),
        (["--model", "{tmp}"], ["model path is a directory"]),
        (["--model", "{text}"], ["not a GGUF file", "magic bytes"]),
        (["--model", "{truncated}"], ["GGUF file is truncated"]),
        (["-p", "512", "-n", "128", "-d", "100", "--ctx", "512"], ["740 tokens does not fit"]),
        (["--threads", "0"], ["--threads", "greater than or equal to 1"]),
        (["--threads", "-2"], ["--threads"]),
        (["--reps", "0"], ["--reps", "greater than or equal to 1"]),
        (["--n-prompt", "0"], ["--n-prompt"]),
        (["--n-gen", "x"], ["--n-gen", "invalid int value"]),
        (["--engine", "tensorrt"], ["unknown engine 'tensorrt'", "llama.cpp"]),
        (["--format", "xml"], ["invalid choice: 'xml'"]),
        (["--db", "{tmp}"], ["results database path is a directory"]),
        (["--db", "{tmp}/no/such/dir/r.db"], ["does not exist"]),
        (["--db", "/proc/meltbench.db"], ["results database", "writable path"]),
        (["-o", "warp_speed=9"], ["has no option warp_speed"]),
        (["-o", "novalue"], ["expected KEY=VALUE"]),
        (["--weights", "random", "--model", "llama"], ["cannot build random weights"]),
        (["--dtype", "int4"], ["has no dtype 'int4'"]),
        (["--profile"], ["has no profiler"]),
        (["--weights", "heavy"], ["invalid choice: 'heavy'"]),
        (["--sensors", "rapl,thermometer"], ["--sensors", "unknown sensor 'thermometer'"]),
        (["--sensor-hz", "500"], ["--sensor-hz", "less than or equal to 100"]),
        (["--sensor-hz", "0"], ["--sensor-hz", "greater than 0"]),
        (["--idle", "-1"], ["--idle", "greater than or equal to 0"]),
        (["--sysfs-root", "/nonexistent/sys"], ["--sysfs-root", "is not a directory"]),
        (["--cooldown", "-2"], ["--cooldown", "greater than or equal to 0"]),
        (["--cooldown-margin", "0"], ["--cooldown-margin", "greater than 0"]),
        (["--target", "nosuch", "--targets", "{tmp}/none.yaml"], ["unknown target 'nosuch'"]),
        (["--target", "ftp://host"], ["target"]),
        (["--target", "adb://X", "--engine", "transformers"], ["adb targets run llama.cpp"]),
        (["--target", "adb://X", "--n-depth", "8"], ["--n-depth"]),
        (["--timing", "wallclock"], ["invalid choice: 'wallclock'"]),
        (["--timing", "engine", "--engine", "transformers"], ["has no --timing engine"]),
        (["-o", "flash_attn=sometimes"], ["flash_attn", "on, off or auto"]),
        (["-o", "type_k=q9_9"], ["type_k", "unknown KV cache type"]),
        (["--task", "classify", "--engine", "mlx"], ["engine 'mlx' runs --task encode"]),
        (["--task", "encode", "--seq-len", "0"], ["--seq-len", "greater than or equal to 1"]),
        (["--model", "bert-tiny", "--seq-len", "4096"], ["longer than bert-tiny's 512"]),
        (["--task", "encode", "--engine", "llama.cpp"], ["unknown forward engine 'llama.cpp'"]),
        (["--task", "summarize"], ["invalid choice: 'summarize'"]),
        (["--task", "encode", "--workload", "conversation"], ["--task encode", "--workload"]),
    ],
)
def test_bad_run_input(tmp_path, truncated_gguf, args, fragments):
    text = tmp_path / "notes.gguf"
    text.write_text("just text")
    subs = {"{tmp}": str(tmp_path), "{text}": str(text), "{truncated}": str(truncated_gguf)}
    resolved = []
    for a in args:
        for key, value in subs.items():
            a = a.replace(key, value)
        resolved.append(a)
    db_given = "--db" in resolved
    if not db_given:
        resolved += ["--db", str(tmp_path / "runs.db")]
    proc = run_cli("run", *resolved, cwd=tmp_path)
    assert_usage_error(proc, *fragments)
    assert not (tmp_path / "runs.db").exists()  # nothing stored, not even an empty database


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--duration", "0"], ["--duration must be > 0"]),
        (["--bin", "-1"], ["--bin must be > 0"]),
        (["--reps", "3"], ["drop --reps"]),
        (["--sensors", "bogus"], ["unknown sensor 'bogus'"]),
    ],
)
def test_bad_sustain_input(tmp_path, args, fragments):
    proc = run_cli("sustain", *args, "--db", str(tmp_path / "runs.db"), cwd=tmp_path)
    assert_usage_error(proc, *fragments)
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--threads", "0"], ["--threads", ">= 1"]),
        (["--threads", "one"], ["--threads", "expected numbers"]),
        (["--trials", "0"], ["--trials", ">= 1"]),
        (["--size-mib", "0"], ["--size-mib", ">= 1"]),
        (["--target", "adb://X"], ["adb targets", "MELTBENCH_BANDWIDTH_GBS"]),
    ],
)
def test_bad_bandwidth_input(args, fragments):
    assert_usage_error(run_cli("bandwidth", *args), *fragments)


def test_bad_bandwidth_environment(tmp_path):
    import os

    env = {**os.environ, "MELTBENCH_BANDWIDTH_GBS": "fast"}
    proc = subprocess.run(
        [sys.executable, "-m", "meltbench.cli", "run", "--no-db", "-p", "8", "-n", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert_usage_error(proc, "MELTBENCH_BANDWIDTH_GBS", "number > 0")


def test_bad_target_commands(tmp_path):
    assert_usage_error(run_cli("target"), "missing action")
    assert_usage_error(
        run_cli("target", "setup", "nosuch", "--targets", str(tmp_path / "none.yaml")),
        "unknown target 'nosuch'",
    )
    proc = run_cli("sustain", "--target", "adb://X", "--db", str(tmp_path / "r.db"))
    assert_usage_error(proc, "per-token timestamps")


def test_bad_sensors_input(tmp_path):
    assert_usage_error(run_cli("sensors", "--sysfs-root", str(tmp_path / "no")), "not a directory")
    assert_usage_error(run_cli("sensors", "--sensors", "nope"), "unknown sensor 'nope'")


def test_results_on_missing_db(tmp_path):
    proc = run_cli("results", "list", "--db", str(tmp_path / "none.db"))
    assert_usage_error(proc, "no results database")


def test_results_show_unknown_id(tmp_path):
    from meltbench.results.store import ResultStore

    ResultStore(tmp_path / "r.db").close()
    proc = run_cli("results", "show", "deadbeef", "--db", str(tmp_path / "r.db"))
    assert_usage_error(proc, "no run with id 'deadbeef'")


def test_help_is_light_and_console_script_installed():
    assert shutil.which("meltbench"), "the meltbench console script is not installed"
    proc = subprocess.run(["meltbench", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "run" in proc.stdout
    probe = (
        "import sys, meltbench, meltbench.cli; meltbench.cli.build_parser(); "
        "heavy = [m for m in ('llama_cpp', 'numpy', 'torch', 'pydantic', 'rich', 'gguf', "
        "'matplotlib', 'pandas', 'yaml', 'ray') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"
