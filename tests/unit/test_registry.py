import pytest

from meltbench.engines.llama_cpp import parse_system_info
from meltbench.errors import UsageError
from meltbench.registry import ENGINES, Registry


def test_builtin_engine_and_spellings():
    assert "llama.cpp" in ENGINES.names()
    for spelling in ("llama.cpp", "llama_cpp", "LlamaCpp", "llama-cpp"):
        assert ENGINES.canonical(spelling) == "llama.cpp"


def test_unknown_engine_lists_choices():
    choices = r"executorch, llama\.cpp, mlx, mnn, onnxruntime, openai, transformers$"
    with pytest.raises(UsageError, match=r"unknown engine 'vllm'; choose one of: " + choices):
        ENGINES.canonical("vllm")


def test_missing_library_gives_install_hint():
    reg = Registry(
        kind="engine",
        group="meltbench.test-nothing",
        builtins={"ghost": "meltbench_ghost_module_that_does_not_exist:Engine"},
        install_hints={"ghost": "pip install ghost"},
    )
    with pytest.raises(UsageError, match=r"not available .* pip install ghost"):
        reg.load("ghost")


def test_engine_class_is_lazy_and_checks_requirements():
    cls = ENGINES.load("llama.cpp")
    assert cls.name == "llama.cpp"
    assert cls.unknown_options({"n_gpu_layers": 1, "warp_speed": 9}) == ["warp_speed"]
    assert isinstance(cls.missing_requirements(), list)


def test_parse_system_info():
    text = "CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 0 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
    assert parse_system_info(text) == {
        "CPU": {"SSE3": 1, "AVX2": 1, "AMX_INT8": 0, "LLAMAFILE": 1, "OPENMP": 1, "REPACK": 1}
    }
    two = "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : AVX2 = 1 | "
    assert parse_system_info(two) == {"CUDA": {"ARCHS": 890, "USE_GRAPHS": 1}, "CPU": {"AVX2": 1}}
