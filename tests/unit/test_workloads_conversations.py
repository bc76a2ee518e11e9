"""Conversation files (ShareGPT JSON, OpenAI-messages JSONL) and the shipped sample."""

from __future__ import annotations

import json

import pytest

from meltbench.errors import UsageError
from meltbench.workloads.base import RequestSet, Session, Turn
from meltbench.workloads.conversations import load_conversations, sample_conversations

SHAREGPT = [
    {
        "id": "abc",
        "conversations": [
            {"from": "system", "value": "Be kind."},
            {"from": "human", "value": "Hello"},
            {"from": "gpt", "value": "Hi! How can I help?"},
            {"from": "human", "value": "Tell me a joke"},
            {"from": "chatgpt", "value": "Why did the ..."},
        ],
    },
    {
        "conversations": [
            {"from": "user", "value": "One"},
            {"from": "bard", "value": "Reply"},
            {"from": "HUMAN", "value": "Two"},
            {"from": "assistant", "value": "Reply"},
            {"from": "human", "value": "Three"},
        ]
    },
]

OPENAI = [
    {
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "Which planet is closest to the sun?"},
            {"role": "assistant", "content": "Mercury."},
            {"role": "user", "content": "How long is its year?"},
        ]
    },
    {"id": 7, "messages": [{"role": "user", "content": "Hi"}]},
]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def jsonl(items):
    return "".join(json.dumps(i) + "\n" for i in items)


def test_sharegpt_json(tmp_path):
    path = write(tmp_path, "chats.json", json.dumps(SHAREGPT))
    rs = load_conversations(str(path), max_tokens=32)
    assert (rs.kind, rs.name, rs.output) == ("conversation", "chats", "fixed")
    assert rs.sessions == (
        Session(
            id="abc",
            group="conversation",
            turns=(Turn("Hello", 32), Turn("Tell me a joke", 32)),
            system="Be kind.",
        ),
        Session(
            id="conv-2",
            group="conversation",
            turns=(Turn("One", 32), Turn("Two", 32), Turn("Three", 32)),
        ),
    )
    assert rs.info == {
        "source": str(path),
        "format": "sharegpt",
        "conversations": 2,
        "user_turns": 5,
        "turns_cut": 0,
        "reference_replies": 4,
        "system_messages": 1,
        "max_turns": None,
    }


def test_openai_jsonl_with_blank_lines(tmp_path):
    path = write(tmp_path, "planets.jsonl", jsonl(OPENAI[:1]) + "\n" + jsonl(OPENAI[1:]))
    rs = load_conversations(str(path), output="natural")
    assert rs.label.startswith("conversation:planets@") and rs.output == "natural"
    assert [(s.id, s.system, [t.user for t in s.turns]) for s in rs.sessions] == [
        ("conv-1", "Answer in one sentence.", [
            "Which planet is closest to the sun?", "How long is its year?"]),
        ("7", None, ["Hi"]),
    ]  # fmt: skip
    assert rs.info["format"] == "openai-jsonl" and rs.info["reference_replies"] == 1
    assert all(t.max_tokens == 128 for s in rs.sessions for t in s.turns)


def test_openai_messages_in_a_json_list_and_a_single_object(tmp_path):
    listed = load_conversations(str(write(tmp_path, "a.json", json.dumps(OPENAI))))
    single = load_conversations(str(write(tmp_path, "b.jsonl", json.dumps(OPENAI[0]))))
    assert listed.info["format"] == single.info["format"] == "openai-jsonl"
    assert [s.id for s in listed.sessions] == ["conv-1", "7"]
    assert single.sessions == listed.sessions[:1]


def test_max_turns_and_max_conversations(tmp_path):
    path = write(tmp_path, "chats.json", json.dumps(SHAREGPT))
    rs = load_conversations(str(path), max_turns=1, max_conversations=1)
    assert [(s.id, [t.user for t in s.turns]) for s in rs.sessions] == [("abc", ["Hello"])]
    assert (rs.info["conversations"], rs.info["user_turns"], rs.info["turns_cut"]) == (1, 1, 1)
    assert rs.info["max_turns"] == 1
    assert load_conversations(str(path), max_turns=2).n_requests == 4


def test_repeated_ids_are_made_unique(tmp_path):
    items = [{"id": "x", "messages": [{"role": "user", "content": str(i)}]} for i in range(3)]
    rs = load_conversations(str(write(tmp_path, "dup.jsonl", jsonl(items))))
    assert [s.id for s in rs.sessions] == ["x", "x.2", "x.3"]


def test_later_entries_past_max_conversations_are_not_read(tmp_path):
    text = jsonl(OPENAI[:1]) + jsonl([{"messages": [{"role": "user", "content": " "}]}])
    path = write(tmp_path, "c.jsonl", text)
    assert load_conversations(str(path), max_conversations=1).n_requests == 2
    with pytest.raises(UsageError, match="line 2, message 1 is an empty user turn"):
        load_conversations(str(path))


def test_the_shipped_sample():
    rs = sample_conversations(max_tokens=16)
    assert (rs.kind, rs.name) == ("conversation", "sample")
    assert [s.id for s in rs.sessions] == [
        "bike-trip", "python-keyerror", "buttermilk", "rainbow-for-a-child"]  # fmt: skip
    assert [len(s.turns) for s in rs.sessions] == [3, 3, 3, 3]
    assert [s.system is not None for s in rs.sessions] == [False, True, False, False]
    assert rs.sessions[1].system == (
        "You are a patient programming tutor. Explain in plain words, with little code."
    )
    assert rs.sessions[0].turns[0] == Turn(
        "I want to do a two-day bike trip this weekend, about 60 km each day, staying "
        "somewhere overnight. How should I plan it?",
        16,
    )
    assert rs.info == {
        "source": "meltbench:workloads/data/conversations.jsonl",
        "format": "openai-jsonl",
        "conversations": 4,
        "user_turns": 12,
        "turns_cut": 0,
        "reference_replies": 8,
        "system_messages": 1,
        "max_turns": None,
    }
    assert sample_conversations(max_turns=2).n_requests == 8
    assert RequestSet.from_dict(rs.to_dict()) == rs
    assert sample_conversations(max_tokens=16).version == rs.version


def _entry(messages):
    return jsonl([{"messages": messages}])


@pytest.mark.parametrize(
    ("name", "text", "phrase"),
    [
        ("bad.jsonl", "{not json",
         "not JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        ("bad.jsonl", jsonl(OPENAI[:1]) + "{oops\n", "line 2 is not JSON"),
        ("bad.json", '[\n  {"conversations": []},\n  oops\n]',
         "not JSON (Expecting value at line 3"),
        ("bad.json", "", "the file is empty"),
        ("bad.json", "[]", "no conversations (an empty list)"),
        ("bad.json", '"text"', "the JSON is a str, not a list of conversations"),
        ("bad.json", json.dumps([{"text": "hi"}]), "entry 1 has neither a 'conversations'"),
        ("bad.json", json.dumps([SHAREGPT[0], {"text": 1}]), "entry 2 has no 'conversations' key"),
        ("bad.jsonl", jsonl(OPENAI[:1]) + jsonl([{"text": 1}]), "line 2 has no 'messages' key"),
        ("bad.jsonl", _entry([{"role": "tool", "content": "x"}]), "unknown role 'tool'"),
        ("bad.json", json.dumps([{"conversations": [{"from": "robot", "value": "x"}]}]),
         "entry 1, message 1: unknown from 'robot'"),
        ("bad.jsonl", _entry([{"content": "x"}]), "message 1 has no 'role' key"),
        ("bad.jsonl", _entry([{"role": "user"}]), "message 1 has no 'content' key"),
        ("bad.jsonl", _entry([{"role": "user", "content": " \n\t"}]), "is an empty user turn"),
        ("bad.jsonl", _entry([{"role": "assistant", "content": "hi"}]), "line 1 has no user turn"),
        ("bad.jsonl", _entry([{"role": "system", "content": "s"}]), "line 1 has no user turn"),
        ("bad.jsonl", _entry([{"role": "user", "content": [{"type": "text", "text": "x"}]}]),
         "message 1: content is a list, not a string"),
        ("bad.jsonl",
         _entry([{"role": "user", "content": "a"}, {"role": "system", "content": "s"}]),
         "message 2 is a system message after the start"),
        ("bad.jsonl", jsonl([{"messages": "hi"}]), "'messages' is not a list of messages"),
    ],
)  # fmt: skip
def test_malformed_files_are_one_line_usage_errors(tmp_path, name, text, phrase):
    path = write(tmp_path, name, text)
    with pytest.raises(UsageError) as err:
        load_conversations(str(path))
    message = str(err.value)
    assert phrase in message, message
    assert message.startswith(str(path)) and "\n" not in message


def test_missing_file_and_bad_options(tmp_path):
    with pytest.raises(UsageError) as err:
        load_conversations(str(tmp_path / "nope.jsonl"))
    assert str(err.value) == (
        f"conversation file not found: {tmp_path / 'nope.jsonl'}; pass a .json or .jsonl file"
    )
    path = write(tmp_path, "ok.jsonl", jsonl(OPENAI))
    for kwargs, phrase in [
        ({"max_turns": 0}, "max_turns must be >= 1, got 0"),
        ({"max_conversations": 0}, "max_conversations must be >= 1, got 0"),
        ({"max_tokens": 0}, "max_tokens (--n-gen) must be >= 1, got 0"),
        ({"output": "long"}, "output mode must be one of fixed, natural, got 'long'"),
    ]:
        with pytest.raises(UsageError) as err:
            load_conversations(str(path), **kwargs)
        assert phrase in str(err.value)
