"""Multi-turn conversations from the files users already have.

Two formats, told apart by content (not by the file name):

- **ShareGPT JSON**: a JSON list of objects, each with ``conversations``: a list of
  ``{"from": "human" | "user" | "gpt" | "assistant" | "chatgpt" | "bard" | "system",
  "value": str}`` and an optional ``id``.
- **OpenAI-messages JSONL**: one JSON object a line, each with ``messages``: a list of
  ``{"role": "system" | "user" | "assistant", "content": str}`` and an optional ``id``;
  a ``.json`` file holding a list of such objects (or one such object) is read the same.

Each conversation becomes one :class:`~meltbench.workloads.base.Session` (group
``conversation``) with one :class:`~meltbench.workloads.base.Turn` per user message. The
assistant messages of the file are references and are not replayed: the model's own
replies form the history of the next turn (their count is kept in ``info``). A leading
system message becomes :attr:`Session.system`.

Every problem with the file is a :class:`~meltbench.errors.UsageError` of one line that
names the file and the entry (JSON list, 1-based) or line (JSONL, 1-based).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.workloads.base import OUTPUT_MODES, RequestSet, Session, Turn

__all__ = ["SHAREGPT_ROLES", "load_conversations", "sample_conversations"]

#: ShareGPT ``from`` values and the chat role each stands for
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "system": "system",
}
_OPENAI_ROLES = ("system", "user", "assistant")
_FORMATS_HINT = (
    'give ShareGPT JSON (a list of {"conversations": [{"from", "value"}, ...]}) or '
    'OpenAI-messages JSONL (one {"messages": [{"role", "content"}, ...]} a line)'
)
_SAMPLE = ("data", "conversations.jsonl")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _check_options(
    max_turns: int | None, max_conversations: int | None, max_tokens: int, output: str
) -> None:
    if max_turns is not None and max_turns < 1:
        raise UsageError(f"max_turns must be >= 1, got {max_turns}; omit it for every turn")
    if max_conversations is not None and max_conversations < 1:
        raise UsageError(
            f"max_conversations must be >= 1, got {max_conversations}; omit it for all"
        )
    if max_tokens < 1:
        raise UsageError(f"max_tokens (--n-gen) must be >= 1, got {max_tokens}")
    if output not in OUTPUT_MODES:
        raise UsageError(f"output mode must be one of {', '.join(OUTPUT_MODES)}, got {output!r}")


def _entries(text: str, source: str) -> tuple[str, list[tuple[str, Any]]]:
    """``(format, [(where, object), ...])`` of a file's text; ``where`` is ``entry N`` or
    ``line N`` for messages."""
    stripped = text.strip()
    if not stripped:
        raise UsageError(f"{source}: the file is empty; {_FORMATS_HINT}")
    whole_error: json.JSONDecodeError | None = None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        whole, whole_error = None, exc
    if whole_error is None:
        if isinstance(whole, dict):
            items: list[Any] = [whole]
        elif isinstance(whole, list):
            items = whole
        else:
            raise UsageError(
                f"{source}: the JSON is a {type(whole).__name__}, not a list of "
                f"conversations; {_FORMATS_HINT}"
            )
        if not items:
            raise UsageError(f"{source}: no conversations (an empty list); {_FORMATS_HINT}")
        first = items[0]
        if isinstance(first, dict) and "conversations" in first:
            fmt, key = "sharegpt", "conversations"
        elif isinstance(first, dict) and "messages" in first:
            fmt, key = "openai-jsonl", "messages"
        else:
            raise UsageError(
                f"{source}: entry 1 has neither a 'conversations' (ShareGPT) nor a "
                f"'messages' (OpenAI) key; {_FORMATS_HINT}"
            )
        prefix = "line" if isinstance(whole, dict) else "entry"
        out = []
        for i, item in enumerate(items, start=1):
            if not isinstance(item, dict) or key not in item:
                raise UsageError(f"{source}: {prefix} {i} has no {key!r} key; {_FORMATS_HINT}")
            out.append((f"{prefix} {i}", item))
        return fmt, out
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            if not out and whole_error is not None:
                # the first line already fails: a (pretty-printed) JSON document with an
                # error, or a broken first line: the whole-file position says where
                raise UsageError(
                    f"{source}: not JSON ({_one_line(whole_error.msg)} at line "
                    f"{whole_error.lineno} column {whole_error.colno}); {_FORMATS_HINT}"
                ) from None
            raise UsageError(
                f"{source}: line {lineno} is not JSON ({_one_line(exc.msg)} at column "
                f"{exc.colno}); {_FORMATS_HINT}"
            ) from None
        if not isinstance(item, dict) or "messages" not in item:
            raise UsageError(f"{source}: line {lineno} has no 'messages' key; {_FORMATS_HINT}")
        out.append((f"line {lineno}", item))
    return "openai-jsonl", out


def _messages(fmt: str, item: dict[str, Any], where: str, source: str) -> list[tuple[str, Any]]:
    """``[(role, content), ...]`` of one conversation, roles normalized to
    system/user/assistant."""
    key, role_key, text_key = (
        ("conversations", "from", "value") if fmt == "sharegpt" else ("messages", "role", "content")
    )
    raw = item[key]
    if not isinstance(raw, list):
        raise UsageError(f"{source}: {where}: {key!r} is not a list of messages")
    out = []
    for j, message in enumerate(raw, start=1):
        at = f"{source}: {where}, message {j}"
        if not isinstance(message, dict):
            raise UsageError(f"{at} is not an object with {role_key!r} and {text_key!r}")
        if role_key not in message:
            raise UsageError(f"{at} has no {role_key!r} key")
        name = message[role_key]
        if fmt == "sharegpt":
            role = SHAREGPT_ROLES.get(str(name).lower()) if isinstance(name, str) else None
            known = ", ".join(SHAREGPT_ROLES)
        else:
            role = name if name in _OPENAI_ROLES else None
            known = ", ".join(_OPENAI_ROLES)
        if role is None:
            raise UsageError(f"{at}: unknown {role_key} {name!r} (known: {known})")
        if text_key not in message:
            raise UsageError(f"{at} has no {text_key!r} key")
        content = message[text_key]
        if not isinstance(content, str):
            raise UsageError(
                f"{at}: {text_key} is a {type(content).__name__}, not a string (only "
                "plain-text messages can be replayed)"
            )
        out.append((role, content))
    return out


def _session(
    messages: list[tuple[str, Any]],
    *,
    sid: str,
    where: str,
    source: str,
    max_turns: int | None,
    max_tokens: int,
) -> tuple[Session, dict[str, int]]:
    system = None
    users: list[str] = []
    references = 0
    for j, (role, content) in enumerate(messages, start=1):
        if role == "system":
            if j != 1:
                raise UsageError(
                    f"{source}: {where}, message {j} is a system message after the start; "
                    "only a leading system message can be replayed"
                )
            system = content if content.strip() else None
        elif role == "assistant":
            references += 1
        else:
            if not content.strip():
                raise UsageError(
                    f"{source}: {where}, message {j} is an empty user turn; give it text "
                    "or remove it"
                )
            users.append(content)
    if not users:
        raise UsageError(f"{source}: {where} has no user turn; every conversation needs one")
    kept = users if max_turns is None else users[:max_turns]
    turns = tuple(Turn(user=u, max_tokens=max_tokens) for u in kept)
    counts = {
        "user_turns": len(kept),
        "turns_cut": len(users) - len(kept),
        "reference_replies": references,
        "system_messages": int(system is not None),
    }
    return Session(id=sid, group="conversation", turns=turns, system=system), counts


def _conversations(
    text: str,
    source: str,
    *,
    name: str,
    max_turns: int | None,
    max_conversations: int | None,
    max_tokens: int,
    output: str,
) -> RequestSet:
    _check_options(max_turns, max_conversations, max_tokens, output)
    fmt, entries = _entries(text, source)
    if max_conversations is not None:
        entries = entries[:max_conversations]
    sessions: list[Session] = []
    used: dict[str, int] = {}
    totals = {"user_turns": 0, "turns_cut": 0, "reference_replies": 0, "system_messages": 0}
    for i, (where, item) in enumerate(entries, start=1):
        raw_id = item.get("id")
        sid = str(raw_id) if isinstance(raw_id, str | int) and str(raw_id) else f"conv-{i}"
        used[sid] = used.get(sid, 0) + 1
        if used[sid] > 1:
            sid = f"{sid}.{used[sid]}"
        session, counts = _session(
            _messages(fmt, item, where, source),
            sid=sid,
            where=where,
            source=source,
            max_turns=max_turns,
            max_tokens=max_tokens,
        )
        sessions.append(session)
        for k, v in counts.items():
            totals[k] += v
    info: dict[str, Any] = {
        "source": source,
        "format": fmt,
        "conversations": len(sessions),
        **totals,
        "max_turns": max_turns,
    }
    return RequestSet(
        kind="conversation",
        name=name,
        sessions=tuple(sessions),
        output=output,  # type: ignore[arg-type]
        info=info,
    )


def load_conversations(
    path: str,
    *,
    max_turns: int | None = None,
    max_conversations: int | None = None,
    max_tokens: int = 128,
    output: str = "fixed",
) -> RequestSet:
    """The conversations of a ShareGPT JSON or OpenAI-messages JSONL file.

    Args:
        path: the file; its format is told by its content (see the module docstring).
        max_turns: user turns kept per conversation, at most (the first ones); None: all.
        max_conversations: conversations kept, the first ones (later entries are not
            read or checked); None: all.
        max_tokens: each turn's most output tokens.
        output: ``fixed`` or ``natural`` (:data:`~meltbench.workloads.base.OUTPUT_MODES`).

    Returns:
        kind ``conversation``, name the file's stem; one session a conversation (id the
        entry's ``id``, else ``conv-<i>`` with ``i`` from 1; a repeated id gets ``.2``,
        ``.3``, ...), one turn a user message. ``info``: ``source``, ``format``
        (``sharegpt`` or ``openai-jsonl``), ``conversations``, ``user_turns`` (kept),
        ``turns_cut`` (dropped by ``max_turns``), ``reference_replies`` (assistant
        messages in the file, not replayed), ``system_messages``, ``max_turns``.

    Raises:
        UsageError (one line, naming the file and entry or line): the file is missing or
            unreadable; not JSON or a bad JSON line; no conversations; an entry without
            ``conversations``/``messages`` or a message without its role or text key; an
            unknown role; a non-string content; an empty or whitespace-only user turn; a
            conversation without a user turn; a system message that is not the first;
            bad options.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "not found"
        raise UsageError(f"conversation file {what}: {path}; pass a .json or .jsonl file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read conversation file {path}: {_one_line(exc)}") from None
    return _conversations(
        text,
        str(path),
        name=p.stem,
        max_turns=max_turns,
        max_conversations=max_conversations,
        max_tokens=max_tokens,
        output=output,
    )


def sample_conversations(
    *,
    max_turns: int | None = None,
    max_conversations: int | None = None,
    max_tokens: int = 128,
    output: str = "fixed",
) -> RequestSet:
    """The shipped sample set (``meltbench/workloads/data/conversations.jsonl``, written
    for this project): 4 everyday-assistant conversations of 3 user turns, one with a
    system message. Name ``sample``; arguments as :func:`load_conversations`.

    Raises:
        UsageError: bad options.
    """
    resource = resources.files("meltbench.workloads").joinpath(*_SAMPLE)
    return _conversations(
        resource.read_text(encoding="utf-8"),
        "meltbench:workloads/" + "/".join(_SAMPLE),
        name="sample",
        max_turns=max_turns,
        max_conversations=max_conversations,
        max_tokens=max_tokens,
        output=output,
    )
