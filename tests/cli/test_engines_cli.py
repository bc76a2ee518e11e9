import subprocess
import sys


def meltbench(*args):
    return subprocess.run(
        [sys.executable, "-m", "meltbench.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_engines_lists_every_engine_with_its_status():
    proc = meltbench("engines")
    assert proc.returncode == 0, proc.stderr
    for name in ("llama.cpp", "transformers", "onnxruntime", "mlx", "openai", "mnn", "executorch"):
        assert name in proc.stdout
    llama_row = next(line for line in proc.stdout.splitlines() if "llama.cpp" in line)
    assert "yes" in llama_row and "gguf" in llama_row


def test_convert_rejects_existing_output(tmp_path):
    proc = meltbench("convert", "gemma3-270m-q4_k_m", "--to", "hf", "--output", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("already exists; choose a new folder")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_install_hints_keep_their_brackets():
    """An install hint such as pip install 'meltbench[litert]' is text, not rich markup."""
    import re

    proc = meltbench("engines")
    assert proc.returncode == 0, proc.stderr
    hints = re.findall(r"pip install '(meltbench[^']*)'", proc.stdout)
    assert hints and all(h.startswith("meltbench[") for h in hints), hints
