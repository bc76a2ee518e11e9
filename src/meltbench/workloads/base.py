"""The one interface of request workloads: sessions of turns, named and versioned.

Synthetic pp/tg (:mod:`meltbench.workloads.synthetic`) stays the default workload of a
run. Every other workload -- a conversation set, document tasks, the app end to end --
is a :class:`RequestSet`: sessions (a conversation, a document task, one app query), each
a sequence of user turns replayed in order, the model's own replies kept as the
history of the next turn. Each turn is one request, measured on its own.

A request set travels to the worker (and to a remote target) as plain JSON
(:meth:`RequestSet.to_dict`), so it is built on the host and replayed where the model
runs. Its ``version`` is a hash of that JSON: two runs with the same ``name@version``
replayed exactly the same requests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["DOCUMENT_SLOT", "OUTPUT_MODES", "RequestSet", "Session", "Turn"]

#: the placeholder a turn's ``user`` text holds where its document goes
DOCUMENT_SLOT = "{document}"

#: ``fixed``: every turn generates exactly ``max_tokens`` (end-of-sequence ignored, as
#: ``ignore_eos`` does on servers); ``natural``: a turn stops at end-of-sequence or at
#: ``max_tokens``, whichever comes first.
OUTPUT_MODES = ("fixed", "natural")


@dataclass(frozen=True)
class Turn:
    """One user turn, one request.

    Attributes:
        user: the user message. When ``document`` is set it holds :data:`DOCUMENT_SLOT`
            once, replaced by the document cut to ``document_tokens`` tokens.
        max_tokens: the most tokens to generate (exactly this many in ``fixed`` mode).
        expected: what a right answer holds (the app workload: a dict of fields), or None.
        document: text to cut to exactly ``document_tokens`` tokens of the model's own
            tokenizer, where the model runs (document tasks); None for none.
        document_tokens: length of the cut document, tokens.
    """

    user: str
    max_tokens: int
    expected: Any = None
    document: str | None = None
    document_tokens: int | None = None


@dataclass(frozen=True)
class Session:
    """Turns replayed in order on one conversation history.

    Attributes:
        id: unique within the set (``conv-3``, ``doc-2-qa``).
        group: what the tables group by besides the turn index (``conversation``,
            ``summarise@1024``, ``app``).
        turns: at least one.
        system: the system message, or None.
    """

    id: str
    group: str
    turns: tuple[Turn, ...]
    system: str | None = None


@dataclass(frozen=True)
class RequestSet:
    """A named, versioned set of sessions.

    Attributes:
        kind: ``conversation``, ``document`` or ``app``.
        name: where it came from (``sample``, a file name, ``wikitext-2``).
        sessions: at least one.
        output: ``fixed`` or ``natural`` (:data:`OUTPUT_MODES`).
        info: facts about how it was built (source path, task, document length, ...).
    """

    kind: Literal["conversation", "document", "app"]
    name: str
    sessions: tuple[Session, ...]
    output: Literal["fixed", "natural"] = "fixed"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """First 12 hex digits of the SHA-256 of the sessions and output mode (JSON)."""
        body = {"sessions": self.to_dict()["sessions"], "output": self.output}
        blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def label(self) -> str:
        """``kind:name@version``, the run's ``test`` label."""
        return f"{self.kind}:{self.name}@{self.version}"

    @property
    def n_requests(self) -> int:
        """Turns over all sessions."""
        return sum(len(s.turns) for s in self.sessions)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the worker's job, the stored run)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "output": self.output,
            "info": dict(self.info),
            "sessions": [
                {
                    "id": s.id,
                    "group": s.group,
                    "system": s.system,
                    "turns": [asdict(t) for t in s.turns],
                }
                for s in self.sessions
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestSet:
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError, TypeError: on a malformed dict.
        """
        sessions = tuple(
            Session(
                id=s["id"],
                group=s["group"],
                system=s.get("system"),
                turns=tuple(Turn(**t) for t in s["turns"]),
            )
            for s in data["sessions"]
        )
        return cls(
            kind=data["kind"],
            name=data["name"],
            sessions=sessions,
            output=data.get("output", "fixed"),
            info=dict(data.get("info") or {}),
        )
