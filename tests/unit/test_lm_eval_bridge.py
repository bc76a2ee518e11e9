"""The lm-evaluation-harness bridge on a fake LogitsSource whose scores are known by hand.

The fake is character-level (token id = code point, BOS = 1) and "believes" one answer per
question: after ``question + " " + answer[:j]`` it predicts ``answer[j]``. Its per-position
nll values are dyadic (0.125, 0.5, 4, 5) so that every sum below is exact in float64:

- the believed next character: nll 0.125 (any other character there: 4.0);
- where it believes nothing: nll 0.5 for its argmax ``"\\n"``, 5.0 for any other token.

Everything runs offline: HF offline mode is forced and any socket connection fails.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from meltbench.accuracy import lm_eval_bridge as bridge
from meltbench.accuracy import lm_eval_tasks as tasks
from meltbench.accuracy.base import LogitsSource, RowScores
from meltbench.errors import UsageError

pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lm_eval"
JSONL = FIXTURES / "meltbench_local_mc.jsonl"
TASK = "meltbench_local_mc"

BOS = 1
HIT, MISS, FREE_ARGMAX, FREE = 0.125, 4.0, 0.5, 5.0
NEWLINE = ord("\n")


class OracleSource(LogitsSource):
    """Character-level fake with one believed answer per question (see module docstring)."""

    engine = "fake"
    n_vocab = 256

    def __init__(self, beliefs: dict[str, str], n_ctx: int = 512) -> None:
        self.beliefs = beliefs
        self.n_ctx = n_ctx
        self.calls: list[tuple[list[int], int]] = []

    def tokenize(self, text: str) -> list[int]:
        ids = [ord(c) for c in text]
        assert all(1 < i < self.n_vocab for i in ids), text
        return ids

    def detokenize(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    def bos_token(self) -> int | None:
        return BOS

    def _believed_next(self, prefix: str) -> str | None:
        for question, answer in self.beliefs.items():
            at = prefix.rfind(question)
            if at < 0:
                continue
            typed, target = prefix[at + len(question) :], " " + answer
            if len(typed) < len(target) and target.startswith(typed):
                return target[len(typed)]
        return None

    def score(self, tokens, first, k, ref_ids=None) -> RowScores:
        if len(tokens) > self.n_ctx or not 0 <= first <= len(tokens) - 2:
            raise ValueError(f"bad window: {len(tokens)} tokens, first={first}")
        self.calls.append((list(tokens), first))
        nll, top = [], []
        for i in range(first, len(tokens) - 1):
            believed = self._believed_next(
                self.detokenize([t for t in tokens[: i + 1] if t != BOS])
            )
            nxt = tokens[i + 1]
            if believed is None:
                top.append(NEWLINE)
                nll.append(FREE_ARGMAX if nxt == NEWLINE else FREE)
            else:
                top.append(ord(believed))
                nll.append(HIT if nxt == ord(believed) else MISS)
        top_ids = np.array(top, dtype=np.int32).reshape(-1, 1)
        return RowScores(nll=np.array(nll), topk_ids=top_ids, topk_logprobs=-np.array(nll)[:, None])


class NoTextSource(OracleSource):
    detokenize = None  # a source that cannot decode text


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network: HF offline mode on (env and the flags read at import), sockets refused."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        attempts.append(address)
        raise OSError(f"network disabled in tests: {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert attempts == [], f"something tried the network: {attempts}"


def ll_requests(*pairs):
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


FRANCE = "The capital of France is"


def test_loglikelihood_by_hand():
    lm = bridge.make_lm(OracleSource({FRANCE: "Paris"}))
    got = lm.loglikelihood(
        ll_requests(
            (FRANCE, " Paris"),  # 6 believed characters: 6 * 0.125
            (FRANCE, " Berlin"),  # " " hit, "B" miss, "erlin" unbelieved: 0.125 + 4 + 5 * 5
            (FRANCE + " ", "Paris"),  # trailing space moves to the continuation
            ("", "ab"),  # empty context: scored after BOS alone
            ("", "\n\n"),  # ... the fake's argmax twice
        )
    )
    assert got == [(-0.75, True), (-29.125, False), (-0.75, True), (-10.0, False), (-1.0, True)]


def test_loglikelihood_windows():
    source = OracleSource({FRANCE: "Paris"})
    lm = bridge.make_lm(source)
    lm.loglikelihood(ll_requests((FRANCE, " Paris")))
    ((window, first),) = source.calls
    assert window == [BOS, *source.tokenize(FRANCE + " Paris")]
    assert first == len(FRANCE)  # the position holding the last context character


def test_loglikelihood_truncates_from_the_left(caplog):
    source = OracleSource({"Hi": "yo"}, n_ctx=16)
    lm = bridge.make_lm(source)
    assert lm.loglikelihood(ll_requests(("a" * 20 + "Hi", " yo"))) == [(-0.375, True)]
    ((window, first),) = source.calls
    assert len(window) == 16 and window[-5:] == source.tokenize("Hi yo") and first == 12
    assert "truncated from the left" in caplog.text


def test_continuation_longer_than_the_window_is_refused():
    lm = bridge.make_lm(OracleSource({}, n_ctx=16))
    with pytest.raises(UsageError, match="does not fit the model's window of 16"):
        lm.loglikelihood(ll_requests(("Q", "x" * 16)))


def test_encode_pair_follows_lm_eval():
    vocab = {" P": 200, "is": 201}

    def tokenize(text):  # greedy longest match: two merged pairs, else characters
        ids, i = [], 0
        while i < len(text):
            if text[i : i + 2] in vocab:
                ids.append(vocab[text[i : i + 2]])
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids

    # the trailing space joins the continuation, where " P" merges
    assert bridge.encode_pair(tokenize, "x is ", "Paris") == (
        [ord("x"), ord(" "), 201],
        [200, ord("a"), ord("r"), 201],
    )
    # a merge across the boundary shortens the whole: no continuation tokens are left
    assert bridge.encode_pair(tokenize, "x i", "s") == ([ord("x"), ord(" "), ord("i")], [])


def test_loglikelihood_rolling_predicts_every_token_once():
    source = OracleSource({}, n_ctx=8)
    lm = bridge.make_lm(source)
    text = "abcdefghijklmnopqrst"
    (got,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    assert got == -5.0 * len(text)
    assert source.calls[0][0][0] == BOS and source.calls[0][1] == 0
    predicted = []
    for window, first in source.calls:
        assert len(window) <= 8
        predicted += window[first + 1 :]
    assert predicted == source.tokenize(text)


def test_generate_until_greedy():
    lm = bridge.make_lm(OracleSource({FRANCE: "Paris"}))
    reqs = [
        Instance("generate_until", {}, (FRANCE, {"until": ["\n"], "max_gen_toks": 20}), 0),
        Instance("generate_until", {}, (FRANCE, {"until": ["\n"], "max_gen_toks": 3}), 1),
        Instance("generate_until", {}, (FRANCE, {"until": "ri"}), 2),
    ]
    assert lm.generate_until(reqs) == [" Paris", " Pa", " Pa"]


def test_generate_until_needs_text_decoding():
    lm = bridge.make_lm(NoTextSource({}))
    with pytest.raises(UsageError, match="no detokenize"):
        lm.generate_until([Instance("generate_until", {}, ("Q", {"until": ["\n"]}), 0)])


def test_meltbench_lm_is_an_lm_eval_model():
    from lm_eval.api.model import LM

    assert issubclass(bridge.MeltbenchLM, LM)
    assert isinstance(bridge.make_lm(OracleSource({})), bridge.MeltbenchLM)


def test_missing_lm_eval_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    bridge._lm_class.cache_clear()
    try:
        with pytest.raises(UsageError, match=r"pip install 'meltbench\[eval\]'"):
            bridge.make_lm(OracleSource({}))
        with pytest.raises(UsageError, match="lm-evaluation-harness"):
            tasks.run_tasks(OracleSource({}), [TASK], include_path=str(FIXTURES))
    finally:
        bridge._lm_class.cache_clear()


# ----------------------------------------------------------------------------- tasks

WRONG = {1, 4, 9}  # documents where the fake believes a wrong choice


def docs():
    return [json.loads(line) for line in JSONL.read_text().splitlines() if line.strip()]


def believing_source(n_ctx=512):
    beliefs = {}
    for i, doc in enumerate(docs()):
        pick = (doc["answer"] + 1) % len(doc["choices"]) if i in WRONG else doc["answer"]
        beliefs[doc["question"]] = doc["choices"][pick]
    return OracleSource(beliefs, n_ctx=n_ctx)


def test_run_tasks_local_task_exact_accuracy():
    n = len(docs())
    assert n == 12
    source = believing_source()
    res = tasks.run_tasks(source, [TASK], include_path=str(FIXTURES))
    expected = (n - len(WRONG)) / n  # 0.75
    assert res[TASK]["acc"] == expected
    assert res[TASK]["acc_norm"] == expected
    assert res[TASK]["acc_stderr"] == pytest.approx(np.std([1] * 9 + [0] * 3, ddof=1) / n**0.5)
    assert res[TASK]["n_samples"] == n and res[TASK]["n_shot"] == 0
    assert len(source.calls) == 4 * n  # one score() per (document, choice)
    assert res["tasks"] == [TASK] and res["limit"] is None and res["num_fewshot"] is None
    assert res["lm_eval_version"]
    json.dumps(res)  # JSON-ready

    flat = tasks.task_metrics(res)
    assert flat["task_meltbench_local_mc_acc"] == expected
    assert flat["task_meltbench_local_mc_acc_norm"] == expected
    assert "task_meltbench_local_mc_acc_stderr" in flat
    assert flat["task_meltbench_local_mc_n_samples"] == n
    assert all(isinstance(v, float) for v in flat.values())


def test_run_tasks_limit_and_fewshot():
    source = believing_source()
    res = tasks.run_tasks(source, [TASK], include_path=str(FIXTURES), limit=4, num_fewshot=1)
    # documents 0-3, of which document 1 is believed wrong
    assert res[TASK]["acc"] == 0.75 and res[TASK]["n_samples"] == 4
    assert res[TASK]["n_shot"] == 1 and res["num_fewshot"] == 1 and res["limit"] == 4
    # one-shot prompts hold two question/answer pairs
    window, _ = source.calls[0]
    assert source.detokenize(window[1:]).count(" is ") >= 1 and len(window) > 40


def test_run_tasks_json_dataset_with_absolute_path(tmp_path):
    """The other way to write a local task: `dataset_path: json` + an absolute data_files."""
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "local_json.yaml").write_text(
        f"include: {FIXTURES / 'meltbench_local_mc.yaml'}\n"
        "task: meltbench_local_json\n"
        "custom_dataset: null\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        f"  data_files: {{test: {JSONL}}}\n"
        f"  cache_dir: {tmp_path / 'hf_cache'}\n"
    )
    res = tasks.run_tasks(believing_source(), ["meltbench_local_json"], include_path=str(task_dir))
    assert res["meltbench_local_json"]["acc"] == 0.75


@pytest.fixture
def one_task_index(monkeypatch):
    """Build lm-eval's full task index (seconds) once for the tests that need it."""
    import lm_eval.tasks

    real, built = lm_eval.tasks.TaskManager, {}

    def cached(include_path=None, include_defaults=True, **kw):
        key = (str(include_path), include_defaults)
        if key not in built:
            built[key] = real(include_path=include_path, include_defaults=include_defaults, **kw)
        return built[key]

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", cached)


def test_run_tasks_errors(one_task_index, tmp_path):
    source = believing_source()
    with pytest.raises(UsageError, match="unknown lm-eval task 'meltbench_local_mx'") as exc:
        tasks.run_tasks(source, ["meltbench_local_mx"], include_path=str(FIXTURES))
    assert "did you mean meltbench_local_mc" in str(exc.value)
    with pytest.raises(UsageError) as exc:
        tasks.run_tasks(source, ["arc_easy"], include_path=str(FIXTURES))
    assert str(exc.value) == (
        "task arc_easy needs its dataset from the Hugging Face hub, which is not reachable; "
        "download it once online (HF_DATASETS_CACHE) or pass --task-path with a local task"
    )
    with pytest.raises(UsageError, match="not a directory"):
        tasks.run_tasks(source, [TASK], include_path=str(tmp_path / "missing"))
    with pytest.raises(UsageError, match="no task given"):
        tasks.run_tasks(source, [])
    with pytest.raises(UsageError, match="limit"):
        tasks.run_tasks(source, [TASK], include_path=str(FIXTURES), limit=0)
    assert source.calls == []


def test_generation_task_refused_without_text_decoding(tmp_path):
    (tmp_path / "gen.yaml").write_text(
        f"include: {FIXTURES / 'meltbench_local_mc.yaml'}\n"
        "task: meltbench_local_gen\n"
        "output_type: generate_until\n"
        "doc_to_target: '{{choices[answer]}}'\n"
        "doc_to_choice: null\n"
        'generation_kwargs: {until: ["\\n"], max_gen_toks: 10}\n'
        "metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true,\n"
        "  regexes_to_ignore: [' ']}]\n"  # the model answers ' Paris' to the target 'Paris'
    )
    with pytest.raises(UsageError, match="task meltbench_local_gen generates text"):
        tasks.run_tasks(NoTextSource({}), ["meltbench_local_gen"], include_path=str(tmp_path))
    # and with a source that decodes, the same task runs through generate_until
    res = tasks.run_tasks(believing_source(), ["meltbench_local_gen"], include_path=str(tmp_path))
    assert res["meltbench_local_gen"]["exact_match"] == 0.75


def test_compact_and_flatten_names():
    raw = {
        "results": {
            "gsm8k": {
                "alias": "gsm8k",
                "exact_match,strict-match": 0.5,
                "exact_match_stderr,strict-match": 0.1,
                "exact_match,flexible-extract": 0.625,
                "exact_match_stderr,flexible-extract": "N/A",
            }
        },
        "n-samples": {"gsm8k": {"original": 1319, "effective": 8}},
        "n-shot": {"gsm8k": 5},
    }
    res = tasks.compact_results(raw, tasks=["gsm8k"], limit=8)
    assert res["gsm8k"] == {
        "exact_match_strict-match": 0.5,
        "exact_match_strict-match_stderr": 0.1,
        "exact_match_flexible-extract": 0.625,
        "exact_match_flexible-extract_stderr": None,
        "n_samples": 8,
        "n_shot": 5,
    }
    assert tasks.task_metrics(raw) == {
        "task_gsm8k_exact_match_strict_match": 0.5,
        "task_gsm8k_exact_match_strict_match_stderr": 0.1,
        "task_gsm8k_exact_match_flexible_extract": 0.625,
        "task_gsm8k_n_samples": 8.0,
        "task_gsm8k_n_shot": 5.0,
    }
