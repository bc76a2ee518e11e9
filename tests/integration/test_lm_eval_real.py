"""lm-evaluation-harness on the real default model (Gemma 3 270M Q4_K_M) through llama.cpp.

The local task of tests/fixtures/lm_eval (12 hand-written questions, 4 choices each) runs
offline through the bridge; the accuracy is checked against the argmax of the bridge's own
log-likelihoods, computed here document by document, so lm-eval's request building and
metric are tested on real scores too.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from meltbench.accuracy.base import LogitsSource

pytestmark = pytest.mark.integration

# Plain imports (not importorskip): the test set-up installs lm-eval and llama-cpp-python,
# and a missing one must fail the suite, not skip silently.
from meltbench.accuracy.lm_eval_bridge import make_lm  # noqa: E402
from meltbench.accuracy.lm_eval_tasks import run_tasks, task_metrics  # noqa: E402
from meltbench.accuracy.sources import open_source  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lm_eval"
TASK = "meltbench_local_mc"
DOCS = [
    json.loads(line)
    for line in (FIXTURES / "meltbench_local_mc.jsonl").read_text().splitlines()
    if line.strip()
]


class Counting(LogitsSource):
    """Delegates to a real source, counting score() calls."""

    def __init__(self, inner: LogitsSource) -> None:
        self.inner = inner
        self.engine, self.n_vocab, self.n_ctx = inner.engine, inner.n_vocab, inner.n_ctx
        self.calls = 0

    def tokenize(self, text):
        return self.inner.tokenize(text)

    def bos_token(self):
        return self.inner.bos_token()

    def score(self, tokens, first, k, ref_ids=None):
        self.calls += 1
        return self.inner.score(tokens, first, k, ref_ids)

    def describe(self):
        return self.inner.describe()


@pytest.fixture(scope="module")
def source():
    src = open_source("gemma3-270m-q4_k_m", "llama.cpp", ctx=256)
    yield src
    src.close()


@pytest.fixture
def offline(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        attempts.append(address)
        raise OSError(f"network disabled in tests: {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert attempts == []


def test_local_task_on_default_model(source, offline, record_property):
    counting = Counting(source)
    res = run_tasks(counting, [TASK], include_path=str(FIXTURES))
    task = res[TASK]
    n = len(DOCS)
    assert task["n_samples"] == n  # every document scored ...
    assert counting.calls == sum(len(d["choices"]) for d in DOCS)  # ... every choice once
    for metric in ("acc", "acc_norm"):
        assert 0.0 <= task[metric] <= 1.0
        assert task[f"{metric}_stderr"] is not None and task[f"{metric}_stderr"] >= 0
    flat = task_metrics(res)
    for name in (
        "task_meltbench_local_mc_acc",
        "task_meltbench_local_mc_acc_stderr",
        "task_meltbench_local_mc_acc_norm",
        "task_meltbench_local_mc_acc_norm_stderr",
    ):
        assert name in flat
    record_property("acc", task["acc"])
    record_property("acc_norm", task["acc_norm"])
    print(f"\n{TASK} on gemma3-270m-q4_k_m (llama.cpp): acc={task['acc']:.4f} ", end="")
    print(f"acc_norm={task['acc_norm']:.4f} (n={n})")

    # The same accuracy from the bridge's log-likelihoods, argmax per document.
    lm = make_lm(source)
    correct = 0
    for doc in DOCS:
        scores = lm.loglikelihood_pairs([(doc["question"], " " + c) for c in doc["choices"]])
        lls = [ll for ll, _ in scores]
        assert all(ll < 0 for ll in lls)
        correct += lls.index(max(lls)) == doc["answer"]
    assert task["acc"] == correct / n
    # the model is not guessing at random on questions this easy
    assert task["acc"] > 0.25


class _Request:
    """The part of lm-eval's ``Instance`` the bridge reads."""

    def __init__(self, args):
        self.args = args


def test_generation_with_llama_cpp_detokenizes_and_stops(source):
    assert source.detokenize(source.tokenize("The capital of France is Paris.")) == (
        "The capital of France is Paris."
    )
    lm = make_lm(source, max_gen_toks=8)
    (text,) = lm.generate_until(
        [_Request(("The capital of France is", {"until": ["\n", "."], "max_gen_toks": 8}))]
    )
    assert text.strip()
    assert "\n" not in text and "." not in text
    assert len(source.tokenize(text)) <= 8
