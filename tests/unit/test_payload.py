"""schemas.payload: the aps structure and the checks shared by the HTTP/2 and REST paths."""

from __future__ import annotations

import pytest

from schemas import errors
from schemas.payload import Alert, Aps, Sound, parse_payload, validate_aps_payload

LIMIT = 4096

ACCEPTED = [
    ("empty-object", b"{}"),
    ("mdm-without-aps", b'{"mdm":"00000000-1111-2222-3333-444444444444"}'),
    ("alert-string", b'{"aps":{"alert":"Hello"}}'),
    ("alert-dict", b'{"aps":{"alert":{"title":"T","subtitle":"S","body":"B","launch-image":"x.png"}}}'),
    ("alert-localized", b'{"aps":{"alert":{"title-loc-key":"K","title-loc-args":["a"],"loc-key":"L","loc-args":[]}}}'),
    ("alert-action-loc-key-null", b'{"aps":{"alert":{"body":"B","action-loc-key":null}}}'),
    ("live-activity-loc-dicts", b'{"aps":{"alert":{"title":{"loc-key":"T","loc-args":["1"]},"sound":"chime.aiff"}}}'),
    ("badge-zero", b'{"aps":{"badge":0}}'),
    ("sound-string", b'{"aps":{"sound":"default"}}'),
    ("sound-critical", b'{"aps":{"sound":{"critical":1,"name":"alarm.caf","volume":0.5}}}'),
    ("background", b'{"aps":{"content-available":1}}'),
    ("flags-off", b'{"aps":{"alert":"x","content-available":0,"mutable-content":0}}'),
    ("mutable", b'{"aps":{"alert":"x","mutable-content":1,"category":"C","thread-id":"T","target-content-id":"w"}}'),
    ("interruption-levels", b'{"aps":{"interruption-level":"time-sensitive","relevance-score":0.75}}'),
    ("relevance-any-double", b'{"aps":{"relevance-score":-12.5,"filter-criteria":"work"}}'),
    (
        "live-activity-start",
        b'{"aps":{"timestamp":1700000000,"event":"start","content-state":{"score":[1,2]},'
        b'"attributes-type":"Match","attributes":{"team":"A"},"alert":{"title":"Go"},"input-push-token":1,'
        b'"stale-date":1700003600,"dismissal-date":1700007200.5}}',
    ),
    ("live-activity-channel", b'{"aps":{"event":"update","timestamp":1,"input-push-channel":"Y2hhbg=="}}'),
    ("widgets", b'{"aps":{"content-changed":true}}'),
    ("safari-url-args", b'{"aps":{"alert":{"title":"t","body":"b"},"url-args":["a","b"]}}'),
    ("unknown-aps-key-tolerated", b'{"aps":{"alert":"x","future-key":{"anything":[1]}}}'),
    ("custom-top-level-keys", b'{"aps":{"alert":"x"},"acme":{"id":7,"tags":["a"],"n":null},"list":[1.5,true]}'),
    ("whitespace", b' \n{ "aps" : { "badge" : 3 } }\t'),
    ("utf8-custom", '{"aps":{"alert":"café ☕"},"emoji":"🍕"}'.encode()),
]

REJECTED = [
    ("not-json", b"hello"),
    ("truncated", b'{"aps":{"alert":"x"}'),
    ("trailing-garbage", b'{"aps":{}} {}'),
    ("array", b'[{"aps":{}}]'),
    ("string", b'"aps"'),
    ("null", b"null"),
    ("nan", b'{"x":NaN}'),
    ("aps-null", b'{"aps":null}'),
    ("aps-string", b'{"aps":"alert"}'),
    ("aps-array", b'{"aps":[]}'),
    ("alert-number", b'{"aps":{"alert":5}}'),
    ("alert-title-number", b'{"aps":{"alert":{"title":5}}}'),
    ("alert-loc-args-not-list", b'{"aps":{"alert":{"loc-key":"K","loc-args":"a"}}}'),
    ("badge-string", b'{"aps":{"badge":"3"}}'),
    ("badge-float", b'{"aps":{"badge":1.5}}'),
    ("badge-bool", b'{"aps":{"badge":true}}'),
    ("sound-number", b'{"aps":{"sound":1}}'),
    ("sound-volume-over-1", b'{"aps":{"sound":{"critical":1,"name":"a","volume":2}}}'),
    ("sound-critical-2", b'{"aps":{"sound":{"critical":2}}}'),
    ("thread-id-number", b'{"aps":{"thread-id":1}}'),
    ("category-list", b'{"aps":{"category":["c"]}}'),
    ("content-available-true", b'{"aps":{"content-available":true}}'),
    ("content-available-2", b'{"aps":{"content-available":2}}'),
    ("mutable-content-string", b'{"aps":{"mutable-content":"1"}}'),
    ("interruption-level-unknown", b'{"aps":{"interruption-level":"urgent"}}'),
    ("relevance-score-string", b'{"aps":{"relevance-score":"high"}}'),
    ("event-unknown", b'{"aps":{"event":"pause"}}'),
    ("timestamp-string", b'{"aps":{"timestamp":"now"}}'),
    ("stale-date-negative", b'{"aps":{"stale-date":-1}}'),
    ("content-state-list", b'{"aps":{"content-state":[1]}}'),
    ("attributes-string", b'{"aps":{"attributes":"x"}}'),
    ("input-push-token-0", b'{"aps":{"input-push-token":0}}'),
    ("content-changed-number", b'{"aps":{"content-changed":1}}'),
    ("url-args-numbers", b'{"aps":{"url-args":[1]}}'),
    ("invalid-utf8-in-aps", b'{"aps":{"alert":"\xff"}}'),
    ("invalid-utf8-in-custom-key", b'{"aps":{},"x":"\xc3\x28"}'),
    ("nested-too-deeply", b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}"),
]


@pytest.mark.parametrize("body", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted_bodies_are_returned_unchanged(body: bytes) -> None:
    assert validate_aps_payload(body, LIMIT) is body


@pytest.mark.parametrize("body", [c[1] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected_bodies_raise_bad_request_payload(body: bytes) -> None:
    with pytest.raises(errors.BadPayload) as info:
        validate_aps_payload(body, 8192)
    assert (info.value.status, info.value.reason) == (400, "BadRequestPayload")


def test_error_detail_names_the_offending_key() -> None:
    with pytest.raises(errors.BadPayload, match=r"\$\.aps\.badge"):
        validate_aps_payload(b'{"aps":{"badge":"x"}}', LIMIT)


def test_empty_body() -> None:
    with pytest.raises(errors.PayloadEmpty) as info:
        validate_aps_payload(b"", LIMIT)
    assert (info.value.status, info.value.reason) == (400, "PayloadEmpty")


def test_limit_is_inclusive() -> None:
    body = b'{"aps":{}}' + b" " * (LIMIT - 10)
    assert validate_aps_payload(body, LIMIT) is body
    with pytest.raises(errors.PayloadTooLarge) as info:
        validate_aps_payload(body + b" ", LIMIT)
    assert (info.value.status, info.value.reason) == (413, "PayloadTooLarge")


def test_size_counts_bytes_not_characters() -> None:
    body = ('{"x":"' + "é" * 2046 + '"}').encode()  # 2054 characters, 4100 bytes
    with pytest.raises(errors.PayloadTooLarge):
        validate_aps_payload(body, LIMIT)


def test_oversized_garbage_is_too_large_not_bad_json() -> None:
    with pytest.raises(errors.PayloadTooLarge):
        validate_aps_payload(b"\x00" * (LIMIT + 1), LIMIT)


def test_parse_payload_decodes_typed_aps() -> None:
    payload = parse_payload(
        b'{"aps":{"alert":{"title":"T","body":"B"},"badge":2,"sound":{"critical":1,"name":"a","volume":1},'
        b'"content-available":1,"interruption-level":"critical"},"custom":1}'
    )
    assert isinstance(payload.aps, Aps)
    assert payload.aps.alert == Alert(title="T", body="B")
    assert payload.aps.badge == 2
    assert payload.aps.sound == Sound(critical=1, name="a", volume=1.0)
    assert payload.aps.content_available == 1
    assert payload.aps.interruption_level == "critical"
