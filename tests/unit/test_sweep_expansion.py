import pytest

from meltbench.errors import UsageError
from meltbench.sweep.experiment import (
    Point,
    expand,
    load_experiment,
    order_points,
    parse_experiment,
    parse_size,
)
from meltbench.sweep.listsyntax import parse_int_list, parse_str_list


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("128", [128]),
        ("128,512,2048", [128, 512, 2048]),
        ("128-8192*2", [128, 256, 512, 1024, 2048, 4096, 8192]),
        ("1-4+1", [1, 2, 3, 4]),
        ("1-4", [1, 2, 3, 4]),
        ("0-10+5", [0, 5, 10]),
        ("100-300*2", [100, 200]),
        ("64,128-512*2,64", [64, 128, 256, 512]),
    ],
)
def test_llama_bench_list_syntax(text, values):
    assert parse_int_list(text) == values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12a", "cannot read '12a'"),
        ("8-4", "ends before it starts"),
        ("1-8*1", "multiplier >= 2"),
        ("1-8+0", "step >= 1"),
        ("1,,2", "empty item"),
        ("1-100000+1", "more than 10000 values"),
    ],
)
def test_bad_lists(text, message):
    with pytest.raises(UsageError, match=message):
        parse_int_list(text, "-p")


def test_str_list():
    assert parse_str_list("llama.cpp, transformers,,llama.cpp") == ["llama.cpp", "transformers"]


def test_cross_product_exclude_include_exact_points():
    exp = parse_experiment(
        {
            "engine": ["llama.cpp", "transformers"],
            "n_prompt": "128-512*2",
            "n_gen": 16,
            "exclude": [{"engine": "transformers", "n_prompt": [256, 512]}],
            "include": [{"engine": "mlx", "n_prompt": 64}],
        },
        "x.yaml",
        {},
    )
    params = [p.params for p in expand(exp)]
    assert params == [
        {"engine": "llama.cpp", "n_prompt": 128, "n_gen": 16},
        {"engine": "llama.cpp", "n_prompt": 256, "n_gen": 16},
        {"engine": "llama.cpp", "n_prompt": 512, "n_gen": 16},
        {"engine": "transformers", "n_prompt": 128, "n_gen": 16},
        {"engine": "mlx", "n_prompt": 64, "n_gen": 16},
    ]


def test_no_axes_is_one_default_point():
    assert [p.params for p in expand(parse_experiment({}, "x", {}))] == [{}]


def test_point_keys_are_stable_and_order_independent():
    a = Point.of({"n_prompt": 128, "engine": "llama.cpp"})
    b = Point.of({"engine": "llama.cpp", "n_prompt": 128})
    assert a.key == b.key and len(a.key) == 16
    assert a.key != Point.of({"engine": "llama.cpp", "n_prompt": 256}).key


def test_ordering_groups_points_of_one_model():
    exp = parse_experiment(
        {"n_prompt": [1, 2], "model": ["a.gguf", "b.gguf"]}, "x", {}
    )  # expansion: model varies slowest already; shuffle to test grouping
    points = expand(exp)
    shuffled = [points[0], points[2], points[1], points[3]]
    ordered = order_points(shuffled)
    assert [p.params["model"] for p in ordered] == ["a.gguf", "a.gguf", "b.gguf", "b.gguf"]
    assert [p.params["n_prompt"] for p in ordered] == [1, 2, 1, 2]


def test_yaml_errors_name_file_line_and_field(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("name: t\nn_prompt: [128, 512]\nthreads: 1-4+1\nn_gen: [16, big]\n")
    with pytest.raises(UsageError) as exc:
        load_experiment(f)
    assert str(exc.value).startswith(f"{f}:4: n_gen.1: ")
    f.write_text("name: t\nn_promt: 128\n")
    with pytest.raises(UsageError, match=r"exp\.yaml:2: n_promt: unknown field"):
        load_experiment(f)
    f.write_text("name: t\nn_prompt: [128\n")
    with pytest.raises(UsageError, match=r"exp\.yaml:\d+: invalid YAML"):
        load_experiment(f)
    f.write_text("exclude:\n  - {engine: mlx, speed: 3}\n")
    with pytest.raises(UsageError, match=r"exp\.yaml:2: exclude\.0\.speed: unknown parameter"):
        load_experiment(f)
    with pytest.raises(UsageError, match="cannot read experiment file"):
        load_experiment(tmp_path / "missing.yaml")


def test_yaml_settings(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text(
        "name: ctx\nn_prompt: 128-1024*2\nmemory_limit: 2GiB\ncooldown_s: 5\n"
        "search:\n  max_context: {lo: 1024, hi: 65536}\n"
    )
    exp = load_experiment(f)
    assert exp.name == "ctx"
    assert exp.axes["n_prompt"] == [128, 256, 512, 1024]
    assert exp.settings["memory_limit_bytes"] == 2 * 2**30
    assert exp.settings["cooldown_s"] == 5.0
    assert exp.settings["search"] == {"lo": 1024, "hi": 65536, "multiple_of": 256, "max_probes": 12}
    assert len(exp.text_sha256) == 64


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1024, 1024),
        ("512MiB", 512 * 2**20),
        ("2GiB", 2 * 2**30),
        ("1.5GB", 1_500_000_000),
        ("100", 100),
    ],
)
def test_parse_size(value, expected):
    assert parse_size(value) == expected


def test_parse_size_rejects():
    with pytest.raises(UsageError, match="is not a size"):
        parse_size("lots")
