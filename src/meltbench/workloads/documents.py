"""Document tasks: a small model reads a document of a given length and summarises it,
answers a question about it, or suggests follow-ups (SlimLM's document-assistance tasks:
"SlimLM: An Efficient Small Language Model for On-Device Document Assistance").

The documents are articles of a WikiText-2-style corpus (the raw ``test.txt``: a line
`` = Title = `` opens an article, `` = = Section = = `` a section within it). A request
set holds each document as text, generously long; where the model runs, the text is cut
to exactly ``doc_tokens`` tokens of the model's own tokenizer (:func:`cut_to_tokens`), so
the same set measures every model at the same document length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.workloads.base import DOCUMENT_SLOT, OUTPUT_MODES, RequestSet, Session, Turn

__all__ = ["TASKS", "cut_to_tokens", "document_tasks", "wikitext_articles"]

#: task name -> the user prompt; :data:`DOCUMENT_SLOT` is where the document goes. The
#: instruction comes first and differs from the first word, so two tasks on the same
#: document share no prompt prefix for a KV cache to reuse (each is prefilled in full).
TASKS: dict[str, str] = {
    "summarise": (
        "Summarise the following document in three or four sentences, keeping only its "
        f"main points.\n\nDocument:\n{DOCUMENT_SLOT}"
    ),
    "qa": (
        "Answer a question about the following document: what is its main subject, and "
        f"what is one fact the document states about it?\n\nDocument:\n{DOCUMENT_SLOT}"
    ),
    "suggest": (
        "Suggest three follow-up questions a reader of the following document might ask, "
        f"and one short title for it, as a numbered list.\n\nDocument:\n{DOCUMENT_SLOT}"
    ),
}

# a top-level heading: " = Title = " (a section is " = = Section = = ")
_HEADING = re.compile(r"^ ?= (?!= )(.*\S) = ?$")


def wikitext_articles(path: str) -> list[tuple[str, str]]:
    """The articles of a WikiText-2 raw file, in file order.

    An article starts at a top-level heading line `` = Title = `` followed by a blank
    line (as every article heading of WikiText is; this leaves out the few formula
    lines of the form `` = x = `` inside articles) and runs to the next one. Section
    headings stay in the body.

    Args:
        path: e.g. WikiText-2's raw ``test.txt``.

    Returns:
        ``[(title, body), ...]``, bodies stripped of leading and trailing whitespace;
        articles with an empty body are left out.

    Raises:
        UsageError: the file is missing or unreadable, or holds no article.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(
            f"corpus not found: {path}; pass WikiText-2's raw test.txt (or any text with "
            "' = Title = ' article headings)"
        )
    try:
        lines = p.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read corpus {path}: {' '.join(str(exc).split())}") from None
    articles: list[tuple[str, str]] = []
    title: str | None = None
    body: list[str] = []
    for i, line in enumerate(lines):
        match = _HEADING.match(line)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if match and not nxt.strip():
            if title is not None and "\n".join(body).strip():
                articles.append((title, "\n".join(body).strip()))
            title, body = match.group(1), []
        elif title is not None:
            body.append(line)
    if title is not None and "\n".join(body).strip():
        articles.append((title, "\n".join(body).strip()))
    if not articles:
        raise UsageError(
            f"no article in {path}: expected lines ' = Title = ' followed by a blank line, "
            "as in WikiText-2's raw test.txt"
        )
    return articles


def _corpus_name(p: Path) -> str:
    if p.name == "test.txt" and p.parent.name.startswith("wikitext-2"):
        return "wikitext-2"
    return p.stem


def document_tasks(
    path: str,
    *,
    doc_tokens: int,
    tasks: Sequence[str] = ("summarise", "qa", "suggest"),
    n_docs: int = 2,
    max_tokens: int = 64,
    output: str = "fixed",
    chars_per_token_guess: float = 6.0,
) -> RequestSet:
    """Document tasks over the first documents of a WikiText-2-style corpus.

    A document is the first article, in file order, at least ``doc_tokens *
    chars_per_token_guess * 1.5`` characters long (the text is ``title``, a blank line,
    the body); a shorter article is joined (a blank line between) with the articles that
    follow it until the text is that long. The next document starts after the last
    article used. Deterministic: the same file gives the same documents.

    Args:
        path: the corpus (:func:`wikitext_articles`).
        doc_tokens: each document's length where the model runs, tokens of its tokenizer.
        tasks: names in :data:`TASKS`, in order.
        n_docs: documents per task.
        max_tokens: each reply's most output tokens.
        output: ``fixed`` or ``natural``.
        chars_per_token_guess: characters per token assumed for the minimum length (an
            over-estimate; the margin of 1.5 on top keeps every document longer than
            ``doc_tokens`` tokens for usual tokenizers, 3-5 characters a token).

    Returns:
        kind ``document``, name ``wikitext-2`` for a ``test.txt`` in a ``wikitext-2*``
        folder, else the file's stem; one session a (document, task), documents outer,
        id ``doc-<i>-<task>`` (``i`` from 1), group ``<task>@<doc_tokens>``, one turn
        (``user`` = :data:`TASKS` [task], ``document`` the text, ``document_tokens`` =
        ``doc_tokens``). ``info``: ``source``, ``doc_tokens``, ``tasks``, ``n_docs``,
        ``min_chars``, ``documents`` (each one's article ``titles`` and ``chars``).

    Raises:
        UsageError: an unknown task (the known ones listed), no task, ``doc_tokens < 1``,
            ``n_docs < 1``, bad ``max_tokens`` or ``output``, a missing file or one
            without articles, or a corpus with fewer than ``n_docs`` long enough
            documents.
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise UsageError(
            f"unknown document task {unknown[0]!r}; known: {', '.join(TASKS)} (--doc-tasks)"
        )
    if not tasks:
        raise UsageError(f"no document task given; choose from {', '.join(TASKS)}")
    if doc_tokens < 1:
        raise UsageError(f"--doc-tokens must be >= 1, got {doc_tokens}")
    if n_docs < 1:
        raise UsageError(f"--n-docs must be >= 1, got {n_docs}")
    if max_tokens < 1:
        raise UsageError(f"max_tokens (--n-gen) must be >= 1, got {max_tokens}")
    if output not in OUTPUT_MODES:
        raise UsageError(f"output mode must be one of {', '.join(OUTPUT_MODES)}, got {output!r}")
    if not chars_per_token_guess > 0:
        raise ValueError(f"chars_per_token_guess must be > 0, got {chars_per_token_guess}")
    articles = wikitext_articles(path)
    need = int(doc_tokens * chars_per_token_guess * 1.5)
    docs: list[tuple[str, list[str]]] = []
    parts: list[str] = []
    titles: list[str] = []
    for title, body in articles:
        parts.append(f"{title}\n\n{body}")
        titles.append(title)
        text = "\n\n".join(parts)
        if len(text) >= need:
            docs.append((text, titles))
            parts, titles = [], []
            if len(docs) == n_docs:
                break
    if len(docs) < n_docs:
        raise UsageError(
            f"corpus too short: {path} gives {len(docs)} documents of >= {need} characters "
            f"({doc_tokens} tokens), --n-docs asks for {n_docs}; lower --n-docs or "
            "--doc-tokens, or use a longer corpus"
        )
    sessions = tuple(
        Session(
            id=f"doc-{i}-{task}",
            group=f"{task}@{doc_tokens}",
            turns=(
                Turn(
                    user=TASKS[task],
                    max_tokens=max_tokens,
                    document=text,
                    document_tokens=doc_tokens,
                ),
            ),
        )
        for i, (text, _) in enumerate(docs, start=1)
        for task in tasks
    )
    info: dict[str, Any] = {
        "source": str(path),
        "doc_tokens": doc_tokens,
        "tasks": list(tasks),
        "n_docs": n_docs,
        "min_chars": need,
        "documents": [{"titles": list(t), "chars": len(text)} for text, t in docs],
    }
    return RequestSet(
        kind="document",
        name=_corpus_name(Path(path)),
        sessions=sessions,
        output=output,  # type: ignore[arg-type]
        info=info,
    )


def cut_to_tokens(
    text: str,
    n: int,
    tokenize: Callable[[str], list[int]],
    detokenize: Callable[[list[int]], str],
) -> tuple[str, int]:
    """The text of the first ``n`` tokens of ``text``: a prefix of ``text`` itself.

    First ``detokenize(tokenize(text)[:n])``; it is taken when it is a prefix of
    ``text`` and re-tokenizes to exactly ``n`` tokens. Otherwise (the detokenizer does
    not give the text back: a special token written in the text, as WikiText's literal
    ``<unk>``, which a tokenizer that parses special tokens reads as one token and a
    detokenizer that skips them drops; normalized spaces) the longest prefix of ``text``
    that tokenizes to at most ``n`` tokens, by bisection on its length in characters
    (about log2(len(text)) tokenizations). That prefix may be a token or two short of
    ``n``: one more character can add two tokens, or tokens at the cut merge
    differently on their own. The second value is the count it tokenizes to, the
    length to report.

    Args:
        text: the document.
        n: tokens to keep, >= 1.
        tokenize: text -> token ids, without special tokens added (no BOS).
        detokenize: token ids -> text.

    Returns:
        ``(cut_text, len(tokenize(cut_text)))``; ``cut_text`` is ``text[:m]`` for some
        ``m`` and its count is at most ``n``.

    Raises:
        ValueError: ``n < 1``, or the text has fewer than ``n`` tokens.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 token, got {n}")
    ids = tokenize(text)
    if len(ids) < n:
        raise ValueError(f"the document has {len(ids)} tokens, fewer than {n}")
    if len(ids) == n:
        return text, n
    guess = detokenize(list(ids[:n]))
    if text.startswith(guess) and len(tokenize(guess)) == n:
        return guess, n
    lo, hi = 0, len(text)  # tokens(text[:lo]) <= n < tokens(text[:hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(tokenize(text[:mid])) <= n:
            lo = mid
        else:
            hi = mid
    cut = text[:lo]
    return cut, len(tokenize(cut))
