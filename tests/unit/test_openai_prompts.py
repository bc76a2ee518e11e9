"""Prompts of an exact length for HTTP servers: counters, calibration, checks, tokenizers."""

from __future__ import annotations

import json

import pytest

from meltbench.engines.openai_prompts import (
    WORDS,
    ClientTokenizer,
    ServerTokenizer,
    UsageTokenizer,
    calibrate_words,
    check_text_prompt,
    choose_counter,
    open_client_tokenizer,
    words_text,
)


def whitespace(bos: int = 1, template: int = 0):
    """A tokenizer that reads each word as one token, plus BOS and a template's tokens."""
    return lambda text: bos + template + len(text.split())


def test_words_text_maps_ids_to_words():
    assert words_text([0, 1, len(WORDS) + 2]) == "the of and"


def test_calibrate_words_gives_the_overhead():
    assert calibrate_words(whitespace(bos=1)) == 1
    assert calibrate_words(whitespace(bos=1, template=4)) == 5
    wrapped = calibrate_words(lambda t: len(t.split()), wrap=lambda w: f"USER: {w} ASSISTANT:")
    assert wrapped == 2


def test_calibrate_words_refuses_a_tokenizer_that_splits_words():
    with pytest.raises(ValueError, match=r"\(129 tokens for 64 words\)"):
        calibrate_words(lambda t: 1 + 2 * len(t.split()))


def test_check_text_prompt_by_the_counter_and_by_the_servers_usage():
    client = ClientTokenizer(None, "test", lambda t: [0] * (1 + len(t.split())), [1], 10)  # type: ignore[arg-type]
    text = "the of and"  # 4 tokens with BOS
    assert check_text_prompt(client, text, 4, 4) is None
    assert check_text_prompt(client, text, None, 4) is None  # no usage: the counter's word
    assert "became 4 tokens (client tokenizer), not 5" in check_text_prompt(client, text, 5, 5)
    assert "server counted 5 prompt tokens, not 4" in check_text_prompt(client, text, 5, 4)
    usage = UsageTokenizer(lambda t: None)
    assert check_text_prompt(usage, text, 4, 4) is None  # usage is never re-asked
    assert "no usage.prompt_tokens in the stream" in check_text_prompt(usage, text, None, 4)


def test_usage_and_server_counters():
    assert UsageTokenizer(lambda t: 7).count("x") == 7
    with pytest.raises(ValueError, match=r"no usage\.prompt_tokens"):
        UsageTokenizer(lambda t: None).count("x")
    assert ServerTokenizer(lambda t: {"tokens": [1, 2, 3]}, "u").count("x") == 3
    with pytest.raises(ValueError, match="no 'tokens' list"):
        ServerTokenizer(lambda t: {"ids": []}, "u").count("x")


def test_choose_counter_skips_missing_routes_and_propagates_the_rest():
    class Route:
        kind = "server"

        def __init__(self, exc=None):
            self.exc = exc

        def count(self, text):
            if self.exc:
                raise self.exc
            return 2

    missing = Route(LookupError("404"))
    ok = Route()
    skip_lookup = lambda c, e: isinstance(e, LookupError)  # noqa: E731
    assert choose_counter([missing, ok], skip_lookup) is ok
    assert choose_counter([missing], skip_lookup) is None
    with pytest.raises(RuntimeError):
        choose_counter([Route(RuntimeError("down")), ok], skip_lookup)


def test_hf_tokenizer_folder_counts_with_bos_and_finds_special_eos(tmp_path):
    import tokenizers  # meltbench[openai]
    from tokenizers import models, pre_tokenizers, processors

    vocab = {"<bos>": 0, "<eos>": 1, "<end_of_turn>": 2, "</s>": 3, "the": 4, "of": 5}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="</s>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<bos>", "<eos>", "<end_of_turn>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 0)]
    )
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [1]}))
    client = open_client_tokenizer(str(tmp_path))
    assert client.library == "tokenizers" and client.kind == "client"
    assert client.count("the of the") == 4  # BOS + 3 words
    assert client.eos_ids == [1, 2]  # "</s>" is a plain token here: never banned
    assert client.n_vocab == 6


def test_gguf_tokenizer_reads_the_real_vocabulary():
    from meltbench.models.resolve import resolve_model

    gguf = resolve_model("gemma3-270m-q4_k_m", formats=("gguf",)).path
    client = open_client_tokenizer(str(gguf))
    assert client.library == "llama.cpp" and client.n_vocab == 262144
    assert client.count("Hello world, this is") == 6  # [2, 9259, 1902, 236764, 672, 563]
    assert client.eos_ids == [1, 106]
    assert calibrate_words(client.count) == 1  # every prompt word is one Gemma token


def test_no_tokenizer_at_the_path(tmp_path):
    with pytest.raises(ValueError, match="no tokenizer at"):
        open_client_tokenizer(str(tmp_path))
