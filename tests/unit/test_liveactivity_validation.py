"""Live Activity pushes validated as shared/APNS.md section 7 says
(schemas/liveactivity.py): topic suffix, event, content-state, timestamp,
stale-date, dismissal-date, priority 5 or 10.  Pure validation; the REST
wire runs a few of the same cases in tests/integration/test_rest_send.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.apns import validate_request
from schemas.errors import PushgwError

PATH = "/3/device/" + "ab" * 32
TOPIC = "com.example.app.push-type.liveactivity"
UPDATE: dict[str, Any] = {"event": "update", "timestamp": 1_700_000_000, "content-state": {"score": 1}}
START: dict[str, Any] = {
    "event": "start", "timestamp": 1_700_000_000, "content-state": {"score": 0},
    "attributes-type": "MatchAttributes", "attributes": {"home": "A"}, "alert": {"title": "Kick-off"},
}  # fmt: skip


def _without(aps: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in aps.items() if k != key}


# (case, topic, apns-priority, aps, expected reason or None for accepted)
CASES: list[tuple[str, str, str | None, dict[str, Any], str | None]] = [
    ("update", TOPIC, "10", UPDATE, None),
    ("update at priority 5", TOPIC, "5", UPDATE, None),
    ("priority absent means 10", TOPIC, None, UPDATE, None),
    ("start", TOPIC, "10", START, None),
    ("end with a dismissal date", TOPIC, "10", UPDATE | {"event": "end", "dismissal-date": 1_700_003_600}, None),
    (
        "stale date and fractional timestamp",
        TOPIC,
        "10",
        UPDATE | {"stale-date": 1_700_000_600, "timestamp": 1.5},
        None,
    ),
    ("priority 1", TOPIC, "1", UPDATE, "BadPriority"),
    ("bare bundle topic", "com.example.app", "10", UPDATE, "BadTopic"),
    ("other suffix", "com.example.app.voip", "10", UPDATE, "BadTopic"),
    ("no event", TOPIC, "10", _without(UPDATE, "event"), "BadRequestPayload"),
    ("unknown event", TOPIC, "10", UPDATE | {"event": "pause"}, "BadRequestPayload"),
    ("no timestamp", TOPIC, "10", _without(UPDATE, "timestamp"), "BadRequestPayload"),
    ("timestamp as text", TOPIC, "10", UPDATE | {"timestamp": "now"}, "BadRequestPayload"),
    ("negative timestamp", TOPIC, "10", UPDATE | {"timestamp": -1}, "BadRequestPayload"),
    ("no content-state", TOPIC, "10", _without(UPDATE, "content-state"), "BadRequestPayload"),
    ("content-state not an object", TOPIC, "10", UPDATE | {"content-state": [1]}, "BadRequestPayload"),
    ("stale-date as text", TOPIC, "10", UPDATE | {"stale-date": "later"}, "BadRequestPayload"),
    ("dismissal-date on an update", TOPIC, "10", UPDATE | {"dismissal-date": 1_700_003_600}, "BadRequestPayload"),
    ("start without attributes", TOPIC, "10", _without(START, "attributes"), "BadRequestPayload"),
    ("start without attributes-type", TOPIC, "10", _without(START, "attributes-type"), "BadRequestPayload"),
    ("start without alert", TOPIC, "10", _without(START, "alert"), "BadRequestPayload"),
]


@pytest.mark.parametrize(("case", "topic", "priority", "aps", "reason"), CASES, ids=[c[0] for c in CASES])
def test_live_activity_rules(
    case: str, topic: str, priority: str | None, aps: dict[str, Any], reason: str | None
) -> None:
    headers = [("apns-topic", topic), ("apns-push-type", "liveactivity")]
    if priority is not None:
        headers.append(("apns-priority", priority))
    body = json.dumps({"aps": aps}).encode()
    if reason is None:
        parsed, _ = validate_request("POST", PATH, headers, body)
        assert parsed.push_type == "liveactivity" and parsed.priority == int(priority or 10)
        return
    with pytest.raises(PushgwError) as info:
        validate_request("POST", PATH, headers, body)
    assert (info.value.status, info.value.reason) == (400, reason)
