"""Background pushes as shared/APNS.md describes them: priority 5 only,
``aps`` = ``content-available: 1`` only (schemas/background.py).  Pure
validation; the same table runs over the REST and HTTP/2 wires in
tests/integration (test_rest_send.py, test_h2_reasons.py)."""

from __future__ import annotations

import pytest

from schemas.apns import validate_request
from schemas.background import other_keys
from schemas.errors import PushgwError

PATH = "/3/device/" + "ab" * 32
TOPIC = "com.example.app"
SYNC = b'{"aps":{"content-available":1},"sync":"messages"}'

# (case, apns-priority header or None, body, expected reason or None for accepted)
CASES: list[tuple[str, str | None, bytes, str | None]] = [
    ("priority absent means 5", None, SYNC, None),
    ("priority 5", "5", SYNC, None),
    ("undocumented aps key tolerated", "5", b'{"aps":{"content-available":1,"x-acme":2}}', None),
    ("priority 10", "10", SYNC, "BadPriority"),
    ("priority 1", "1", SYNC, "BadPriority"),
    ("no aps", "5", b'{"sync":"messages"}', "InvalidPushType"),
    ("empty aps", "5", b'{"aps":{}}', "InvalidPushType"),
    ("content-available 0", "5", b'{"aps":{"content-available":0}}', "InvalidPushType"),
    ("with alert", "5", b'{"aps":{"content-available":1,"alert":"hi"}}', "InvalidPushType"),
    ("with badge", "5", b'{"aps":{"content-available":1,"badge":3}}', "InvalidPushType"),
    ("with sound", "5", b'{"aps":{"content-available":1,"sound":"default"}}', "InvalidPushType"),
    ("content-available as a string", "5", b'{"aps":{"content-available":"1"}}', "BadRequestPayload"),
]


def _validate(priority: str | None, body: bytes) -> int:
    headers = [("apns-topic", TOPIC), ("apns-push-type", "background")]
    if priority is not None:
        headers.append(("apns-priority", priority))
    parsed, _ = validate_request("POST", PATH, headers, body)
    return parsed.priority


@pytest.mark.parametrize(("case", "priority", "body", "reason"), CASES, ids=[c[0] for c in CASES])
def test_background_rules(case: str, priority: str | None, body: bytes, reason: str | None) -> None:
    if reason is None:
        assert _validate(priority, body) == 5
        return
    with pytest.raises(PushgwError) as info:
        _validate(priority, body)
    assert (info.value.status, info.value.reason) == (400, reason)


# A well-typed value for every documented aps key but content-available, so
# only the background rule can refuse it.
SAMPLE = {
    "alert": '"x"', "badge": "1", "sound": '"default"', "thread-id": '"t"', "category": '"c"',
    "mutable-content": "1", "target-content-id": '"w"', "interruption-level": '"active"',
    "relevance-score": "0.5", "filter-criteria": '"f"', "stale-date": "1", "content-state": "{}",
    "timestamp": "1", "event": '"update"', "dismissal-date": "1", "attributes-type": '"A"', "attributes": "{}",
    "input-push-token": "1", "input-push-channel": '"ch"', "content-changed": "true", "url-args": "[]",
}  # fmt: skip


def test_sample_covers_every_documented_key() -> None:
    assert set(other_keys()) == set(SAMPLE)


@pytest.mark.parametrize("key", sorted(SAMPLE))
def test_every_other_documented_aps_key_is_refused(key: str) -> None:
    body = b'{"aps":{"content-available":1,"%s":%s}}' % (key.encode(), SAMPLE[key].encode())
    with pytest.raises(PushgwError) as info:
        _validate("5", body)
    assert info.value.reason == "InvalidPushType", (key, info.value)
    assert key in str(info.value)
