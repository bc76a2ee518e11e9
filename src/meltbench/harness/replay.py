"""Replaying a request workload in the worker: conversations turn by turn, document
tasks, the app -- on the engine's own tokenizer and chat template, with KV prefix reuse.

For each turn of a session (:class:`meltbench.workloads.base.Session`) the worker:

1. builds the messages: the system message, every earlier user turn with the model's own
   reply to it, and this user turn (a document turn gets its document cut to exactly
   ``document_tokens`` tokens first, untimed: that is building the workload);
2. ``t_start_ns``; renders the chat template and tokenizes (``prepare``);
3. with prefix reuse (the default) keeps the longest common prefix of the KV cache and
   the new prompt (:meth:`Engine.keep_prefix`; at least one prompt token is always
   processed), else empties the cache; ``n_cached`` is what was kept;
4. ``t_sent_ns``; streams the reply: ``fixed`` output generates exactly ``max_tokens``
   (end-of-generation ignored, like ``ignore_eos``), ``natural`` stops at the first
   end-of-generation token (which is counted in ``n_output``: its decode step was paid);
5. detokenizes the reply (``t_end_ns`` after it) and emits one ``request`` event.

Every session starts from an empty history; with prefix reuse its first turn may still
reuse the previous session's KV where prompts share a prefix (the template's opening,
a shared system message), as a server's prompt cache would.

A turn that raises (a prompt longer than the context, a template error) is recorded with
``ok`` False and its error, and the rest of its session is skipped; the other sessions go
on. Warmup requests (``warmup`` of them) replay the first turn of the first session,
untimed (``kind: warmup``), before the timed passes, and the KV cache is emptied after
them; ``reps`` passes replay the whole set.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

from meltbench.engines.base import Engine
from meltbench.workloads.base import DOCUMENT_SLOT, RequestSet, Session, Turn

__all__ = ["common_prefix", "replay_requests"]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class _Replayer:
    def __init__(self, engine: Engine, requests: RequestSet, prefix_reuse: bool) -> None:
        self.engine = engine
        self.requests = requests
        self.prefix_reuse = prefix_reuse
        self.natural = requests.output == "natural"
        self.cached: list[int] = []  # the tokens in the KV cache, in order
        self.bos = engine.bos_token()
        self.template: dict[str, Any] = {}
        self.documents: dict[tuple[str, int], tuple[str, int]] = {}

    def _document(self, turn: Turn) -> tuple[str, int | None]:
        if turn.document is None:
            return turn.user, None
        from meltbench.workloads.documents import cut_to_tokens

        n = int(turn.document_tokens or 0)
        key = (turn.document, n)
        if key not in self.documents:
            self.documents[key] = cut_to_tokens(
                turn.document, n, self.engine.tokenize, self.engine.detokenize
            )
        text, n_doc = self.documents[key]
        return turn.user.replace(DOCUMENT_SLOT, text), n_doc

    def _prompt(self, messages: list[dict[str, str]]) -> list[int]:
        text, source, warning = self.engine.apply_chat_template(messages)
        if not self.template:
            self.template = {"source": source, "warning": warning}
        ids = self.engine.tokenize(text)
        if self.bos is not None and (not ids or ids[0] != self.bos):
            ids = [self.bos, *ids]
        return ids

    def turn(self, session: Session, index: int, history: list[dict[str, str]]) -> dict:
        engine, turn = self.engine, session.turns[index]
        user, n_document = self._document(turn)
        messages = [*history, {"role": "user", "content": user}]
        record: dict[str, Any] = {
            "session": session.id,
            "turn": index,
            "group": session.group,
            "ok": False,
            "error": None,
            "n_document": n_document,
        }
        gc.collect()
        gc.disable()
        try:
            clock = time.perf_counter_ns
            t_start = clock()
            ids = self._prompt(messages)
            n_ctx = engine.settings.n_ctx
            if len(ids) + turn.max_tokens > n_ctx:
                raise ValueError(
                    f"the prompt ({len(ids)} tokens) plus max_tokens ({turn.max_tokens}) "
                    f"does not fit in ctx = {n_ctx}; raise --ctx"
                )
            keep = 0
            if self.prefix_reuse:
                keep = min(common_prefix(self.cached, ids), len(ids) - 1)
                if not engine.keep_prefix(keep):
                    keep = 0
            if keep == 0:
                engine.reset()
            self.cached = list(ids[:keep])
            engine.reset_counters()
            token_ns: list[int] = []
            tokens: list[int] = []
            stop = "length"
            t_sent = clock()
            for token in engine.stream(ids[keep:], turn.max_tokens):
                token_ns.append(clock())
                tokens.append(token)
                if self.natural and engine.is_end_of_generation(token):
                    stop = "eos"
                    break
            reply = tokens[:-1] if stop == "eos" else tokens
            text = engine.detokenize(reply)
            t_end = clock()
        except Exception as exc:  # recorded; the session stops here
            self.cached = []
            record["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"[:300]
            return record
        finally:
            gc.enable()
        # in the cache: the prompt and every generated token but the last (never decoded)
        self.cached = [*ids, *tokens[:-1]]
        record.update(
            ok=True,
            t_start_ns=t_start,
            t_sent_ns=t_sent,
            token_ns=token_ns,
            t_end_ns=t_end,
            n_input=len(ids),
            n_cached=keep,
            n_output=len(tokens),
            stop=stop,
            text=text,
            counts="engine",
            counters=engine.counters(),
        )
        return record

    def session(self, session: Session, emit: Callable[[dict], None], extra: dict) -> None:
        history: list[dict[str, str]] = []
        if session.system:
            history.append({"role": "system", "content": session.system})
        for index in range(len(session.turns)):
            record = self.turn(session, index, history)
            emit({**record, **extra})
            if not record["ok"]:
                return
            user, _ = self._document(session.turns[index])
            history += [
                {"role": "user", "content": user},
                {"role": "assistant", "content": record["text"]},
            ]


def replay_requests(
    engine: Engine,
    requests: RequestSet,
    *,
    warmup: int,
    reps: int,
    prefix_reuse: bool,
    emit: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Replay ``requests`` on a loaded engine; ``emit`` gets one record per turn.

    Args:
        engine: loaded, with ``supports_text``.
        requests: the request set.
        warmup: untimed replays of the first turn of the first session.
        reps: timed passes over the whole set (``rep`` in each record: 0, 1, ...).
        prefix_reuse: keep the KV cache's common prefix between requests.
        emit: called with each record (``kind``, ``rep``, ``session``, ``turn``,
            ``group``, ``ok``, ``error``, ``t_start_ns``, ``t_sent_ns``, ``token_ns``,
            ``t_end_ns``, ``n_input``, ``n_cached``, ``n_output``, ``n_document``,
            ``stop``, ``text``, ``counts``, ``counters``).

    Returns:
        ``{"template": {"source", "warning"}}``: the chat template used.
    """
    replayer = _Replayer(engine, requests, prefix_reuse)
    first = requests.sessions[0]
    for i in range(warmup):
        warm = Session(id=first.id, group=first.group, turns=first.turns[:1], system=first.system)
        replayer.session(warm, emit, {"kind": "warmup", "rep": i})
    engine.reset()  # the timed passes reuse nothing of the warmup
    replayer.cached = []
    for rep in range(reps):
        for session in requests.sessions:
            replayer.session(session, emit, {"kind": "timed", "rep": rep})
    return {"template": replayer.template}
