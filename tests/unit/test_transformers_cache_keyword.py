"""cache_keyword: the name a transformers model's forward takes its cache by.

transformers 5.24 renamed ``past_key_values`` and ``cache_params`` to ``cache`` (the old
names stay as deprecated aliases that its decorator maps, but no longer appear in the
signature). Choosing a name the signature lacks sends the cache into ``**kwargs``, where
models ignore it: every forward then starts from an empty cache.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from meltbench.engines.transformers import cache_keyword


def _renamed(fn: Any) -> Any:
    """Like transformers' ``deprecate_kwarg``: maps the old name, keeps the signature."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "past_key_values" in kwargs:
            kwargs["cache"] = kwargs.pop("past_key_values")
        return fn(*args, **kwargs)

    return wrapper


class _New:
    """transformers >= 5.24: ``cache``, the old name through a deprecation wrapper."""

    @_renamed
    def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
        return cache


class _Attention:
    """transformers < 5.24, attention and hybrid models."""

    def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
        return past_key_values


class _Mamba:
    """transformers < 5.24, Mamba models."""

    def forward(self, input_ids=None, cache_params=None, use_cache=None, **kwargs):
        return cache_params


class _NoCache:
    def forward(self, input_ids=None, **kwargs):
        return None


@pytest.mark.parametrize(
    ("model", "expected"),
    [(_New(), "cache"), (_Attention(), "past_key_values"), (_Mamba(), "cache_params")],
)
def test_the_name_the_signature_lists_is_chosen(model: Any, expected: str) -> None:
    name = cache_keyword(model)
    assert name == expected
    assert model.forward(input_ids=None, **{name: "the cache"}) == "the cache"


def test_a_forward_without_a_cache_argument_is_refused() -> None:
    with pytest.raises(TypeError, match=r"_NoCache\.forward takes no cache argument"):
        cache_keyword(_NoCache())
