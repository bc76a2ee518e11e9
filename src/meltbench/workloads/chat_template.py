"""Rendering a model's chat template, as the engines' own chat APIs do.

A Hugging Face ``tokenizer.chat_template`` (the same Jinja text a GGUF carries under
``tokenizer.chat_template``) is rendered the way transformers' ``apply_chat_template``
(``transformers/utils/chat_template_utils.py``, ``_cached_compile_jinja_template``) and
llama-cpp-python's ``Jinja2ChatFormatter`` (``llama_cpp/llama_chat_format.py``) render it:
an ``ImmutableSandboxedEnvironment`` with ``trim_blocks`` and ``lstrip_blocks``, the
``loopcontrols`` extension, a pass-through ``{% generation %}`` tag, a ``tojson`` filter
that does not escape HTML (``json.dumps``, ``ensure_ascii=False``), and the globals
``raise_exception(message)`` and ``strftime_now(format)``; the template sees
``messages``, ``bos_token``, ``eos_token`` and ``add_generation_prompt``.

A model without a chat template gets :data:`FALLBACK_TEMPLATE`, a plain
``System:/User:/Assistant:`` transcript, and a warning that says so.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

__all__ = ["FALLBACK_TEMPLATE", "chat_template_or_fallback", "render_chat"]

#: The template of a model that has none: ``Role: text`` lines, a blank line between
#: messages, ending with ``Assistant:`` when the reply is to follow. Renders, e.g.,
#: ``"System: Be brief.\n\nUser: Hi\n\nAssistant:"``. No BOS text: the caller adds the
#: BOS token where the model wants one.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] | trim }}"
    "{% if not loop.last or add_generation_prompt %}{{ '\\n\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}``: its body, unchanged."""

        tags = {"generation"}  # noqa: RUF012 (jinja's class attribute)

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[GenerationTag, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=16)
def _compiled(template: str) -> Any:
    return _environment().from_string(template)


def render_chat(
    template: str,
    messages: list[dict[str, str]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text of ``messages`` under a Jinja chat template.

    Args:
        template: the template text (``tokenizer.chat_template``).
        messages: ``[{"role": "system" | "user" | "assistant", "content": str}, ...]``.
        bos_token, eos_token: the texts the template sees as ``bos_token``/``eos_token``
            (e.g. ``"<bos>"``, ``"<eos>"``).
        add_generation_prompt: open the assistant's turn at the end (the prompt of a reply).

    Returns:
        the rendered text (compiled templates are cached by their text).

    Raises:
        ValueError: one line: the template does not compile, calls ``raise_exception``
            (e.g. roles that do not alternate), or fails while rendering these messages.
    """
    import jinja2

    try:
        compiled = _compiled(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(
            f"chat template does not compile: {_one_line(exc.message)} (template line {exc.lineno})"
        ) from None
    try:
        return compiled.render(
            messages=messages,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        )
    except jinja2.TemplateError as exc:
        raise ValueError(f"chat template error: {_one_line(exc.message or exc)}") from None
    except Exception as exc:  # a Python error inside the template (a bad + or index)
        raise ValueError(f"chat template failed: {type(exc).__name__}: {_one_line(exc)}") from None


def chat_template_or_fallback(template: str | None) -> tuple[str, str | None]:
    """The model's template, or :data:`FALLBACK_TEMPLATE` when it has none.

    Args:
        template: the model's chat template; None or blank when it has none.

    Returns:
        ``(template, warning)``: ``warning`` is None for the model's own template, else
        one line saying the model has no chat template and the fallback is used.
    """
    if template is not None and template.strip():
        return template, None
    return FALLBACK_TEMPLATE, (
        "the model has no chat template (tokenizer.chat_template): prompts use meltbench's "
        "plain 'System:/User:/Assistant:' fallback, not the format the model was tuned on"
    )
