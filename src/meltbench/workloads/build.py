"""The request set of a run's workload spec: the one place a spec becomes requests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from meltbench.config import WorkloadSpec
from meltbench.errors import UsageError
from meltbench.workloads.base import RequestSet, Session

__all__ = ["cut_with_counter", "request_set", "resize"]


def request_set(spec: WorkloadSpec) -> RequestSet:
    """Build the requests of a conversation, document or app workload.

    ``spec.n_gen`` is each turn's most output tokens; ``spec.num_requests`` cycles or cuts
    the sessions to that many (:func:`resize`).

    Raises:
        UsageError: a synthetic spec, a missing or malformed file, an unknown task, a
            document workload without a corpus.
    """
    output = spec.output_mode
    if spec.kind == "conversation":
        from meltbench.workloads.conversations import load_conversations, sample_conversations

        if spec.file is None:
            built = sample_conversations(
                max_turns=spec.max_turns, max_tokens=spec.n_gen, output=output
            )
        else:
            built = load_conversations(
                spec.file, max_turns=spec.max_turns, max_tokens=spec.n_gen, output=output
            )
    elif spec.kind == "document":
        from meltbench.workloads.documents import document_tasks

        if spec.file is None:
            raise UsageError(
                "--workload document needs a corpus: --workload-file PATH to WikiText-2's "
                "raw test.txt (or any text with ' = Title = ' article headings)"
            )
        tasks = tuple(t.strip() for t in spec.doc_tasks.split(",") if t.strip())
        built = document_tasks(
            spec.file,
            doc_tokens=spec.doc_tokens,
            tasks=tasks,
            n_docs=spec.n_docs,
            max_tokens=spec.n_gen,
            output=output,
        )
    elif spec.kind == "app":
        from meltbench.workloads.app import app_requests

        built = app_requests(spec.file, max_tokens=spec.n_gen, output=output)
    else:
        raise UsageError(f"workload {spec.kind!r} has no requests (it is token ids)")
    return resize(built, spec.num_requests) if spec.num_requests else built


def resize(requests: RequestSet, n: int) -> RequestSet:
    """The first ``n`` sessions of ``requests``, cycling the set when it has fewer (a
    repeated session's id gets ``#2``, ``#3``, ... appended).

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    base = requests.sessions
    sessions: list[Session] = []
    for i in range(n):
        session = base[i % len(base)]
        lap = i // len(base)
        sessions.append(session if lap == 0 else replace(session, id=f"{session.id}#{lap + 1}"))
    info = {**requests.info, "sessions_in_file": len(base), "num_requests": n}
    return replace(requests, sessions=tuple(sessions), info=info)


def cut_with_counter(count: Callable[[str], int]) -> Callable[[str, int], str]:
    """A document cutter from a token counter alone (a server's or client's tokenizer
    that can count but not decode): the longest whitespace-word prefix of the text whose
    count, less the count of the empty text (BOS), is at most ``n`` tokens (binary
    search, about log2(words) counts).

    Raises (from the returned function):
        ValueError: the text has fewer than ``n`` tokens.
    """

    def cut(text: str, n: int) -> str:
        base = count("")
        words = text.split(" ")
        if count(text) - base < n:
            raise ValueError(f"the document has fewer than {n} tokens")
        lo, hi = 0, len(words)  # count(words[:lo]) <= n < count(words[:hi + 1])
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(" ".join(words[:mid])) - base <= n:
                lo = mid
            else:
                hi = mid - 1
        return " ".join(words[:lo])

    return cut
