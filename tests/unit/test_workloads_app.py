"""The app workload: sensor readings in, a JSON answer out, parsed and checked."""

from __future__ import annotations

import json

import pytest

from meltbench.errors import UsageError
from meltbench.workloads.app import ACTIVITIES, LOCATIONS, app_requests, parse_answer

HOME = {"location": "home", "activity": "sleeping"}


def test_the_shipped_readings():
    rs = app_requests()
    assert (rs.kind, rs.name, rs.output) == ("app", "autolife-sensors", "natural")
    assert [s.id for s in rs.sessions] == [
        "ep-1-night", "ep-2-desk", "ep-3-lunch-walk", "ep-4-morning-run", "ep-5-train",
        "ep-6-treadmill"]  # fmt: skip
    assert [tuple(s.turns[0].expected.values()) for s in rs.sessions] == [
        ("home", "sleeping"), ("office", "sitting"), ("street", "walking"), ("park", "running"),
        ("transit", "commuting"), ("gym", "running")]  # fmt: skip
    assert {s.group for s in rs.sessions} == {"app"}
    assert all(len(s.turns) == 1 and s.turns[0].max_tokens == 96 for s in rs.sessions)
    system = rs.sessions[0].system
    assert system is not None and "ONLY a JSON object" in system
    assert "home, office, street, park, transit, gym" in system
    assert "sitting, walking, running, commuting, sleeping" in system
    user = rs.sessions[0].turns[0].user
    assert user.splitlines()[1] == (
        '[{"time":"03:10","gps":{"lat":52.37412,"lon":4.88961,"speed_mps":0.0},'
        '"accel_mps2":{"mean":9.81,"std":0.01},"steps_per_min":0,"wifi_aps":7,"light_lux":0.4},'
        '{"time":"03:11","gps":{"lat":52.37412,"lon":4.88961,"speed_mps":0.0},'
        '"accel_mps2":{"mean":9.81,"std":0.02},"steps_per_min":0,"wifi_aps":7,"light_lux":0.3},'
        '{"time":"03:12","gps":"no fix","accel_mps2":{"mean":9.8,"std":0.04},'
        '"steps_per_min":0,"wifi_aps":7,"light_lux":0.4}]'
    )
    # the episode's description (the answer in words) never reaches the model
    assert all("bedside" not in s.turns[0].user for s in rs.sessions)
    assert rs.info == {
        "source": "meltbench:workloads/data/sensor_readings.json",
        "episodes": 6,
        "locations": list(LOCATIONS),
        "activities": list(ACTIVITIES),
    }
    assert app_requests(max_tokens=8, output="fixed").output == "fixed"


def test_a_file_of_my_own_with_its_own_values(tmp_path):
    data = {
        "allowed": {"location": ["lab"], "activity": ["typing"]},
        "episodes": [
            {"samples": [{"t": 1}], "expected": {"location": "lab", "activity": "typing"}}
        ],
    }
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    rs = app_requests(str(path))
    assert rs.name == "mine" and [s.id for s in rs.sessions] == ["ep-1"]
    assert rs.sessions[0].turns[0].expected == {"location": "lab", "activity": "typing"}
    assert '"location", one of lab; and "activity", one of typing.' in rs.sessions[0].system


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("{oops",
         "not JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        ("[]", 'expected a JSON object with "episodes": [...]'),
        ('{"episodes": []}', '"episodes" must be a non-empty list'),
        ('{"episodes": [3]}', "episode 1 is not an object"),
        ('{"episodes": [{"id": "a", "expected": {}}]}',
         'episode 1 (a): "samples" must be a non-empty'),
        ('{"episodes": [{"id": "a", "samples": [{}]}]}', 'episode 1 (a) has no "expected"'),
        ('{"episodes": [{"id": "a", "samples": [{}], '
         '"expected": {"location": "moon", "activity": "sitting"}}]}',
         "episode 1 (a): expected location 'moon' is not one of home, office"),
        ('{"episodes": [{"id": "a", "samples": [{}], "expected": {"location": "home"}}]}',
         "expected activity None is not one of sitting"),
        ('{"allowed": {"location": []}, "episodes": []}',
         "allowed.location must be a non-empty list"),
        ('{"allowed": [], "episodes": []}', '"allowed" must be an object'),
        ('{"episodes": [{"id": "a", "samples": [{}], '
         '"expected": {"location": "home", "activity": "sitting"}}, '
         '{"id": "a", "samples": [{}], "expected": {"location": "home", "activity": "sitting"}}]}',
         "episode 2: id 'a' is not a unique, non-empty string"),
    ],
)  # fmt: skip
def test_malformed_readings_are_one_line_usage_errors(tmp_path, text, phrase):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        app_requests(str(path))
    message = str(err.value)
    assert phrase in message, message
    assert message.startswith(str(path)) and "\n" not in message


def test_missing_file_and_bad_options(tmp_path):
    with pytest.raises(UsageError, match=r"sensor readings file not found: .*nope\.json"):
        app_requests(str(tmp_path / "nope.json"))
    with pytest.raises(UsageError, match=r"max_tokens \(--n-gen\) must be >= 1, got 0"):
        app_requests(max_tokens=0)
    with pytest.raises(UsageError, match="output mode must be one of fixed, natural"):
        app_requests(output="long")


def test_fenced_json():
    text = 'Here you go:\n```json\n{"location": "Home ", "activity": "SLEEPING"}\n```'
    assert parse_answer(text, HOME) == {
        "parsed": True,
        "answer": {"location": "Home ", "activity": "SLEEPING"},
        "correct": True,
        "error": None,
    }


def test_prose_then_json_with_braces_in_strings():
    text = (
        'I think {maybe} this: {"location": "park", "activity": "running", "why": "fast {steps}"}.'
    )
    assert parse_answer(text, {"location": "park", "activity": "running"}) == {
        "parsed": True,
        "answer": {"location": "park", "activity": "running", "why": "fast {steps}"},
        "correct": True,
        "error": None,
    }


def test_broken_json():
    assert parse_answer('{"location": "home", "activity": ', HOME) == {
        "parsed": False, "answer": None, "correct": False, "error": "no JSON object in the reply",
    }  # fmt: skip
    assert parse_answer("The owner is at home, asleep.", None) == {
        "parsed": False, "answer": None, "correct": None, "error": "no JSON object in the reply",
    }  # fmt: skip


def test_a_broken_object_around_a_good_one():
    text = '{"answer": oops, "inner": {"location": "gym", "activity": "running"}}'
    assert parse_answer(text, {"location": "gym", "activity": "running"})["answer"] == {
        "location": "gym",
        "activity": "running",
    }


def test_missing_key():
    assert parse_answer('{"location": "home"}', HOME) == {
        "parsed": False,
        "answer": {"location": "home"},
        "correct": False,
        "error": "the JSON object has no 'activity' key",
    }
    assert parse_answer('{"location": 3, "activity": "sitting"}', None) == {
        "parsed": False,
        "answer": {"location": 3, "activity": "sitting"},
        "correct": None,
        "error": "'location' is a int, not a string",
    }


def test_wrong_value():
    assert parse_answer('{"location": "office", "activity": "sleeping"}', HOME) == {
        "parsed": True,
        "answer": {"location": "office", "activity": "sleeping"},
        "correct": False,
        "error": None,
    }
    # nothing expected: parsed, not judged
    assert parse_answer('{"location": "office", "activity": "sitting"}', None)["correct"] is None
