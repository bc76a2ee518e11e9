"""Document tasks over a WikiText-2-style corpus, and the cut to exact token counts."""

from __future__ import annotations

import pytest

from meltbench.errors import UsageError
from meltbench.workloads.base import DOCUMENT_SLOT, Turn
from meltbench.workloads.documents import (
    TASKS,
    cut_to_tokens,
    document_tasks,
    wikitext_articles,
)
from tests.helpers import wikitext_test_path

# WikiText-2 raw layout: " = Title = " between blank " " lines, " = = Section = = "
# inside, and a formula line " = x = " inside an article (not a heading: no blank after)
CORPUS = (
    " \n = Alpha = \n \n Alpha is a letter . \n \n = = Usage = = \n \n It is used a lot . \n"
    " = 1 <unk> and <unk> C = \n 1 <unk> . More text . \n \n"
    " \n = Beta = \n \n Beta is short . \n \n"
    " \n = Empty = \n \n \n"
    " \n = Gamma = \n \n Gamma is the third letter of the Greek alphabet . \n \n"
)
ALPHA = (
    "Alpha is a letter . \n \n = = Usage = = \n \n It is used a lot . \n"
    " = 1 <unk> and <unk> C = \n 1 <unk> . More text ."
)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS)
    return path


def test_articles_split_on_top_level_headings(corpus):
    assert wikitext_articles(str(corpus)) == [
        ("Alpha", ALPHA),
        ("Beta", "Beta is short ."),
        ("Gamma", "Gamma is the third letter of the Greek alphabet ."),
    ]


def test_documents_join_short_articles_until_long_enough(corpus):
    # need = int(4 * 2.0 * 1.5) = 12 characters
    rs = document_tasks(str(corpus), doc_tokens=4, tasks=("qa", "summarise"), n_docs=3,
                        max_tokens=8, chars_per_token_guess=2.0)  # fmt: skip
    alpha, beta, gamma = (f"{t}\n\n{b}" for t, b in wikitext_articles(str(corpus)))
    assert (rs.kind, rs.name, rs.output) == ("document", "corpus", "fixed")
    assert [(s.id, s.group, s.system) for s in rs.sessions] == [
        ("doc-1-qa", "qa@4", None), ("doc-1-summarise", "summarise@4", None),
        ("doc-2-qa", "qa@4", None), ("doc-2-summarise", "summarise@4", None),
        ("doc-3-qa", "qa@4", None), ("doc-3-summarise", "summarise@4", None),
    ]  # fmt: skip
    assert rs.sessions[0].turns == (Turn(TASKS["qa"], 8, None, alpha, 4),)
    assert [s.turns[0].document for s in rs.sessions[::2]] == [alpha, beta, gamma]
    assert rs.info == {
        "source": str(corpus),
        "doc_tokens": 4,
        "tasks": ["qa", "summarise"],
        "n_docs": 3,
        "min_chars": 12,
        "documents": [
            {"titles": ["Alpha"], "chars": len(alpha)},
            {"titles": ["Beta"], "chars": 21},
            {"titles": ["Gamma"], "chars": len(gamma)},
        ],
    }
    # with a higher bar Beta (21 characters) is too short alone and takes Gamma along
    rs = document_tasks(str(corpus), doc_tokens=2, tasks=("qa",), n_docs=2,
                        chars_per_token_guess=10.0)  # fmt: skip
    assert rs.info["min_chars"] == 30
    assert [d["titles"] for d in rs.info["documents"]] == [["Alpha"], ["Beta", "Gamma"]]
    assert rs.sessions[1].turns[0].document == f"{beta}\n\n{gamma}"


def test_every_task_prompt_holds_the_document_slot_once():
    assert list(TASKS) == ["summarise", "qa", "suggest"]
    for prompt in TASKS.values():
        assert prompt.count(DOCUMENT_SLOT) == 1 and prompt.endswith(f"Document:\n{DOCUMENT_SLOT}")
    # different first words: no shared prefix between tasks on one document
    assert len({p.split()[0] for p in TASKS.values()}) == 3


def test_the_wikitext_2_name(tmp_path):
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    (folder / "test.txt").write_text(CORPUS)
    rs = document_tasks(str(folder / "test.txt"), doc_tokens=1, n_docs=1)
    assert rs.name == "wikitext-2" and rs.label.startswith("document:wikitext-2@")
    assert [s.id for s in rs.sessions] == ["doc-1-summarise", "doc-1-qa", "doc-1-suggest"]


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"tasks": ("summarise", "translate")},
         "unknown document task 'translate'; known: summarise, qa, suggest"),
        ({"tasks": ()}, "no document task given"),
        ({"doc_tokens": 0}, "--doc-tokens must be >= 1, got 0"),
        ({"n_docs": 0}, "--n-docs must be >= 1, got 0"),
        ({"n_docs": 4, "doc_tokens": 1}, "corpus too short"),
        ({"doc_tokens": 1000},
         "gives 0 documents of >= 9000 characters (1000 tokens), --n-docs asks for 2"),
        ({"output": "long"}, "output mode must be one of fixed, natural"),
    ],
)  # fmt: skip
def test_bad_document_options(corpus, kwargs, phrase):
    args = {"doc_tokens": 2, **kwargs}
    with pytest.raises(UsageError) as err:
        document_tasks(str(corpus), **args)
    assert phrase in str(err.value) and "\n" not in str(err.value)


def test_missing_corpus_and_a_file_without_articles(tmp_path):
    with pytest.raises(UsageError, match=r"corpus not found: .*nope\.txt"):
        wikitext_articles(str(tmp_path / "nope.txt"))
    plain = tmp_path / "plain.txt"
    plain.write_text("just text\n = = Section = = \n \n")
    with pytest.raises(UsageError) as err:
        document_tasks(str(plain), doc_tokens=1)
    assert str(err.value).startswith(f"no article in {plain}: expected lines ' = Title = '")


VOCAB: dict[str, int] = {}


def tokenize(text: str) -> list[int]:
    return [VOCAB.setdefault(w, len(VOCAB)) for w in text.split()]


def words(ids: list[int]) -> list[str]:
    inverse = {i: w for w, i in VOCAB.items()}
    return [inverse[i] for i in ids]


def test_cut_to_tokens_with_a_word_tokenizer():
    text = "the cat sat on the mat"
    assert cut_to_tokens(text, 3, tokenize, lambda ids: " ".join(words(ids))) == ("the cat sat", 3)
    assert cut_to_tokens(text, 6, tokenize, lambda ids: " ".join(words(ids))) == (text, 6)
    # a detokenizer that does not give the text back: the longest prefix of <= n tokens
    assert cut_to_tokens(text, 2, tokenize, lambda ids: "".join(words(ids))) == ("the cat ", 2)


def test_cut_to_tokens_keeps_special_tokens_written_in_the_text():
    # as llama.cpp reads WikiText's literal "<unk>" (one special token) and skips it when
    # detokenizing: cutting the detokenized text would lose every <unk>
    def detokenize(ids):
        return " ".join(w for w in words(ids) if w != "<unk>")

    text = "a <unk> b <unk> c d"
    assert cut_to_tokens(text, 4, tokenize, detokenize) == ("a <unk> b <unk> ", 4)
    # before the first <unk> the detokenized text is the prefix: taken as it is
    assert cut_to_tokens(text, 1, tokenize, detokenize) == ("a", 1)


def test_cut_to_tokens_errors():
    with pytest.raises(ValueError, match=r"^the document has 2 tokens, fewer than 3$"):
        cut_to_tokens("two words", 3, tokenize, lambda ids: " ".join(words(ids)))
    with pytest.raises(ValueError, match=r"^n must be >= 1 token, got 0$"):
        cut_to_tokens("two words", 0, tokenize, lambda ids: " ".join(words(ids)))


def test_the_real_wikitext_2_test_split():
    path = wikitext_test_path()
    articles = wikitext_articles(str(path))
    assert len(articles) == 60  # WikiText-2's test split: 60 articles
    assert [t for t, _ in articles[:3]] == [
        "Robert <unk>",
        "Du Fu",
        "Kiss You ( One Direction song )",
    ]
    assert articles[0][1].startswith("Robert <unk> is an English film , television and theatre")
    rs = document_tasks(str(path), doc_tokens=1024, n_docs=2)
    assert rs.name == "wikitext-2"
    assert [d["titles"] for d in rs.info["documents"]] == [
        ["Robert <unk>", "Du Fu"], ["Kiss You ( One Direction song )"]]  # fmt: skip
    assert rs.info["min_chars"] == 9216 and rs.n_requests == 6
