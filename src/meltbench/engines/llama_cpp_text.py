"""Text methods of the llama.cpp engine: tokenizer, chat template, end of generation and
KV prefix reuse, through llama.cpp's C API (as llama-server uses them).

Prefix reuse follows llama-server (``tools/server/server-context.cpp``): the cache keeps
the longest common prefix of what it holds and the new prompt
(``llama_memory_seq_rm(mem, 0, n, -1)``), and a sliding-window-attention model (Gemma 3:
``llama_model_n_swa`` > 0) whose oldest kept position is past ``n - n_swa`` cannot reuse
it (the window's cells were evicted), so the prompt is processed in full.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

__all__ = ["BUILTIN_TEMPLATES", "LlamaCppText"]

#: llama.cpp built-in template (``llama_chat_apply_template`` names, llama.cpp's
#: ``src/llama-chat.cpp``) for a GGUF ``general.architecture`` whose file carries no
#: ``tokenizer.chat_template``; other architectures get ``chatml``, llama-server's default.
BUILTIN_TEMPLATES = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3n": "gemma",
    "qwen2": "chatml",
    "qwen3": "chatml",
    "phi3": "phi3",
    "llama4": "llama4",
    "granite": "granite",
    "exaone": "exaone3",
}


class LlamaCppText:
    """Mixin of :class:`meltbench.engines.llama_cpp.LlamaCppEngine` (``_lib``, ``_model``,
    ``_ctx`` set by its ``load``)."""

    _lib: Any
    _model: Any
    _ctx: Any
    supports_text = True

    def _vocab(self) -> Any:
        return self._lib.llama_model_get_vocab(self._model)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (``llama_tokenize``, ``add_special=False``,
        ``parse_special=True``: template markup becomes special tokens).

        Raises:
            RuntimeError: llama_tokenize failed.
        """
        lib, data = self._lib, text.encode("utf-8")
        n_max = len(data) + 8
        buf = (lib.llama_token * n_max)()
        n = lib.llama_tokenize(self._vocab(), data, len(data), buf, n_max, False, True)
        if n < 0:  # the buffer was too small: -n is the size needed
            n_max = -n
            buf = (lib.llama_token * n_max)()
            n = lib.llama_tokenize(self._vocab(), data, len(data), buf, n_max, False, True)
        if n < 0:
            raise RuntimeError(f"llama_tokenize failed ({n}) on {len(data)} bytes")
        return list(buf[:n])

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of ``tokens`` (``llama_token_to_piece`` without special tokens), decoded
        as UTF-8 once at the end so multi-byte characters split over tokens survive."""
        lib, vocab = self._lib, self._vocab()
        buf = ctypes.create_string_buffer(256)
        out = bytearray()
        for token in tokens:
            n = lib.llama_token_to_piece(vocab, int(token), buf, len(buf), 0, False)
            if n < 0:
                big = ctypes.create_string_buffer(-n)
                n = lib.llama_token_to_piece(vocab, int(token), big, len(big), 0, False)
                out += big.raw[:n]
            else:
                out += buf.raw[:n]
        return out.decode("utf-8", errors="replace")

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = self._lib.llama_vocab_get_text(self._vocab(), token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def chat_template(self) -> tuple[str | None, str, str]:
        """The GGUF's ``tokenizer.chat_template`` (``llama_model_chat_template``) and the
        texts of BOS and EOS."""
        lib = self._lib
        raw = lib.llama_model_chat_template(self._model, None)
        template = raw.decode("utf-8", errors="replace") if raw else None
        vocab = self._vocab()
        bos = self._token_text(int(lib.llama_vocab_bos(vocab)))
        eos = self._token_text(int(lib.llama_vocab_eos(vocab)))
        return template, bos, eos

    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(256)
        n = self._lib.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else None

    def apply_chat_template(
        self, messages: Sequence[dict[str, str]]
    ) -> tuple[str, str, str | None]:
        """The GGUF's own Jinja template when it has one; else llama.cpp's built-in
        template for the model's ``general.architecture`` (``llama_chat_apply_template``,
        :data:`BUILTIN_TEMPLATES`), else ``chatml`` (llama-server's default), with a
        warning that names the choice.

        Raises:
            ValueError: the template failed on these messages (one line).
        """
        template, _bos, _eos = self.chat_template()
        if template is not None:
            return super().apply_chat_template(messages)  # type: ignore[misc]
        lib = self._lib
        arch = self._meta("general.architecture") or "unknown"
        name = BUILTIN_TEMPLATES.get(arch, "chatml")
        keep = [(m["role"].encode(), m["content"].encode()) for m in messages]
        chat = (lib.llama_chat_message * len(keep))(
            *[lib.llama_chat_message(role=r, content=c) for r, c in keep]
        )
        size = 4 * sum(len(c) + len(r) for r, c in keep) + 1024
        buf = ctypes.create_string_buffer(size)
        n = lib.llama_chat_apply_template(name.encode(), chat, len(keep), True, buf, size)
        if n > size:
            buf = ctypes.create_string_buffer(n + 1)
            n = lib.llama_chat_apply_template(name.encode(), chat, len(keep), True, buf, n + 1)
        if n < 0:
            raise ValueError(f"llama.cpp's built-in chat template {name!r} failed ({n})")
        warning = (
            f"the model has no chat template (tokenizer.chat_template); used llama.cpp's "
            f"built-in {name!r} template for architecture {arch!r}"
        )
        return buf.raw[:n].decode("utf-8", errors="replace"), f"llama.cpp:{name}", warning

    def is_end_of_generation(self, token: int) -> bool:
        """``llama_vocab_is_eog``: EOS, EOT and the model's other end-of-generation ids."""
        return bool(self._lib.llama_vocab_is_eog(self._vocab(), int(token)))

    def keep_prefix(self, n: int) -> bool:
        """Drop cached positions ``>= n`` (``llama_memory_seq_rm``); False when llama.cpp
        refuses or a sliding window no longer holds the cells position ``n`` needs."""
        lib = self._lib
        mem = lib.llama_get_memory(self._ctx)
        if n == 0:
            lib.llama_memory_clear(mem, True)
            return True
        if not lib.llama_memory_seq_rm(mem, 0, n, -1):
            return False
        if int(lib.llama_memory_seq_pos_max(mem, 0)) != n - 1:
            return False
        n_swa = int(lib.llama_model_n_swa(self._model))
        pos_min = int(lib.llama_memory_seq_pos_min(mem, 0))
        if pos_min < 0:
            return False
        return not (n_swa > 0 and pos_min > max(0, n - n_swa))
