"""Table-driven tests of schemas.apns: every request-side APNs reason, valid cases, the check order."""

from __future__ import annotations

import pytest
from _pytest.mark import ParameterSet

from schemas import errors
from schemas.apns import ApnsHeaders, validate_headers, validate_payload, validate_request
from schemas.push_types import PAYLOAD_LIMIT, TOPIC_SUFFIX, base_topic, topic_for

TOKEN = "0123456789abcdef" * 4
PATH = "/3/device/" + TOKEN
BODY = b'{"aps":{"alert":"hello"}}'
UUID = "5a1e4c5b-3d2f-4a3c-9b8e-7f6d5c4b3a21"
TOPIC = "com.example.app"


def hdrs(**overrides: str | None) -> list[tuple[str, str]]:
    """A valid header list; keyword ``apns_topic="x"`` sets apns-topic, ``None`` removes it."""
    base: dict[str, str | None] = {"apns-topic": TOPIC, "apns-push-type": "alert", "authorization": "bearer j.w.t"}
    base.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return [(name, value) for name, value in base.items() if value is not None]


def case(
    name: str,
    status: int,
    reason: str,
    error: type[errors.PushgwError],
    *,
    method: str = "POST",
    path: str = PATH,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = BODY,
) -> ParameterSet:
    return pytest.param(method, path, hdrs() if headers is None else headers, body, error, status, reason, id=name)


E = errors
REJECTED = [
    case("collapse-id-65-bytes", 400, "BadCollapseId", E.BadCollapseId, headers=hdrs(apns_collapse_id="c" * 65)),
    case("collapse-id-multibyte", 400, "BadCollapseId", E.BadCollapseId, headers=hdrs(apns_collapse_id="é" * 33)),
    case("token-odd-length", 400, "BadDeviceToken", E.BadDeviceToken, path=PATH + "a"),
    case("token-not-hex", 400, "BadDeviceToken", E.BadDeviceToken, path="/3/device/" + "zz" * 32),
    case("token-too-long", 400, "BadDeviceToken", E.BadDeviceToken, path="/3/device/" + "ab" * 101),
    case("token-trailing-slash", 400, "BadDeviceToken", E.BadDeviceToken, path=PATH + "/"),
    case("token-query", 400, "BadDeviceToken", E.BadDeviceToken, path=PATH + "?x=1"),
    case("token-non-ascii-digits", 400, "BadDeviceToken", E.BadDeviceToken, path="/3/device/" + "\u0661\u0662" * 32),
    case("expiration-negative", 400, "BadExpirationDate", E.BadExpirationDate, headers=hdrs(apns_expiration="-1")),
    case("expiration-word", 400, "BadExpirationDate", E.BadExpirationDate, headers=hdrs(apns_expiration="tomorrow")),
    case("expiration-float", 400, "BadExpirationDate", E.BadExpirationDate, headers=hdrs(apns_expiration="1.5")),
    case("expiration-plus-sign", 400, "BadExpirationDate", E.BadExpirationDate, headers=hdrs(apns_expiration="+5")),
    case("expiration-empty", 400, "BadExpirationDate", E.BadExpirationDate, headers=hdrs(apns_expiration="")),
    case(
        "expiration-non-ascii-digits",
        400,
        "BadExpirationDate",
        E.BadExpirationDate,
        headers=hdrs(apns_expiration="\u0661\u0667"),
    ),
    case(
        "expiration-over-int64", 400, "BadExpirationDate", E.BadExpirationDate, headers=hdrs(apns_expiration=str(2**63))
    ),
    case("message-id-not-uuid", 400, "BadMessageId", E.BadMessageId, headers=hdrs(apns_id="not-a-uuid")),
    case("message-id-no-dashes", 400, "BadMessageId", E.BadMessageId, headers=hdrs(apns_id=UUID.replace("-", ""))),
    case("message-id-empty", 400, "BadMessageId", E.BadMessageId, headers=hdrs(apns_id="")),
    case("priority-7", 400, "BadPriority", E.BadPriority, headers=hdrs(apns_priority="7")),
    case("priority-leading-zero", 400, "BadPriority", E.BadPriority, headers=hdrs(apns_priority="05")),
    case(
        "priority-background-10",
        400,
        "BadPriority",
        E.BadPriority,
        headers=hdrs(apns_push_type="background", apns_priority="10"),
    ),
    case("topic-bad-characters", 400, "BadTopic", E.BadTopic, headers=hdrs(apns_topic="com.example/app")),
    case("topic-empty-segment", 400, "BadTopic", E.BadTopic, headers=hdrs(apns_topic="com..app")),
    case("topic-too-long", 400, "BadTopic", E.BadTopic, headers=hdrs(apns_topic="a" * 256)),
    case("topic-voip-without-suffix", 400, "BadTopic", E.BadTopic, headers=hdrs(apns_push_type="voip")),
    case(
        "topic-suffix-only",
        400,
        "BadTopic",
        E.BadTopic,
        headers=hdrs(apns_push_type="complication", apns_topic=".complication"),
    ),
    case("duplicate-topic", 400, "DuplicateHeaders", E.DuplicateHeaders, headers=[*hdrs(), ("apns-topic", TOPIC)]),
    case(
        "duplicate-other-header",
        400,
        "DuplicateHeaders",
        E.DuplicateHeaders,
        headers=[*hdrs(), ("x-custom", "1"), ("x-custom", "2")],
    ),
    case("push-type-unknown", 400, "InvalidPushType", E.InvalidPushType, headers=hdrs(apns_push_type="sms")),
    case("push-type-wrong-case", 400, "InvalidPushType", E.InvalidPushType, headers=hdrs(apns_push_type="Alert")),
    case("push-type-empty", 400, "InvalidPushType", E.InvalidPushType, headers=hdrs(apns_push_type="")),
    case("missing-device-token", 400, "MissingDeviceToken", E.MissingDeviceToken, path="/3/device/"),
    case("missing-topic", 400, "MissingTopic", E.MissingTopic, headers=hdrs(apns_topic=None)),
    case("empty-topic", 400, "MissingTopic", E.MissingTopic, headers=hdrs(apns_topic="")),
    case("payload-empty", 400, "PayloadEmpty", E.PayloadEmpty, body=b""),
    case("deliver-at-word", 400, "BadRequestParams", E.BadRequestParams, headers=hdrs(pushgw_deliver_at="soon")),
    case("deliver-at-negative", 400, "BadRequestParams", E.BadRequestParams, headers=hdrs(pushgw_deliver_at="-5")),
    case("deliver-at-underscore", 400, "BadRequestParams", E.BadRequestParams, headers=hdrs(pushgw_deliver_at="1_0")),
    case("bad-path-broadcast-api", 404, "BadPath", E.BadPath, path="/4/broadcasts/apps/com.example.app"),
    case("bad-path-no-slash", 404, "BadPath", E.BadPath, path="/3/device"),
    case("bad-path-root", 404, "BadPath", E.BadPath, path="/"),
    case("method-get", 405, "MethodNotAllowed", E.MethodNotAllowed, method="GET"),
    case("method-lowercase-post", 405, "MethodNotAllowed", E.MethodNotAllowed, method="post"),
    case("payload-4097", 413, "PayloadTooLarge", E.PayloadTooLarge, body=b" " * 4097),
    case(
        "payload-voip-5121",
        413,
        "PayloadTooLarge",
        E.PayloadTooLarge,
        headers=hdrs(apns_push_type="voip", apns_topic=TOPIC + ".voip"),
        body=b" " * 5121,
    ),
    case("payload-not-json", 400, "BadRequestPayload", E.BadPayload, body=b"hello"),
    case("payload-array", 400, "BadRequestPayload", E.BadPayload, body=b"[1]"),
    case("payload-aps-string", 400, "BadRequestPayload", E.BadPayload, body=b'{"aps":"hi"}'),
    case("payload-badge-string", 400, "BadRequestPayload", E.BadPayload, body=b'{"aps":{"badge":"1"}}'),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "error", "status", "reason"), REJECTED)
def test_rejected_with_exact_status_and_reason(
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    error: type[errors.PushgwError],
    status: int,
    reason: str,
) -> None:
    with pytest.raises(errors.PushgwError) as info:
        validate_request(method, path, headers, body)
    assert type(info.value) is error
    assert (info.value.status, info.value.reason) == (status, reason)


def test_table_covers_every_request_side_reason() -> None:
    reasons = {param.values[-1] for param in REJECTED}
    assert reasons >= {
        "BadCollapseId", "BadDeviceToken", "BadExpirationDate", "BadMessageId", "BadPriority", "BadTopic",
        "DuplicateHeaders", "InvalidPushType", "MissingDeviceToken", "MissingTopic", "PayloadEmpty", "BadPath",
        "MethodNotAllowed", "PayloadTooLarge", "BadRequestPayload", "BadRequestParams",
    }  # fmt: skip


# --- valid requests ----------------------------------------------------------


@pytest.mark.parametrize("push_type", sorted(TOPIC_SUFFIX))
def test_every_push_type_with_its_topic_suffix(push_type: str) -> None:
    topic = TOPIC + TOPIC_SUFFIX[push_type]
    priority = "5" if push_type == "background" else "10"
    # A Live Activity body must carry event, timestamp and content-state (schemas/liveactivity.py).
    # A background body is content-available only (schemas/background.py).
    sent = {
        "liveactivity": b'{"aps":{"event":"update","timestamp":1700000000,"content-state":{}}}',
        "background": b'{"aps":{"content-available":1}}',
    }.get(push_type, BODY)
    parsed, body = validate_request(
        "POST", PATH, hdrs(apns_push_type=push_type, apns_topic=topic, apns_priority=priority), sent
    )
    assert (parsed.push_type, parsed.topic, parsed.priority) == (push_type, topic, int(priority))
    assert base_topic(parsed.topic, parsed.push_type) == TOPIC
    assert topic_for(TOPIC, push_type) == topic
    assert body is sent


def test_minimal_request_gets_apple_defaults() -> None:
    parsed = validate_headers("POST", PATH, [("apns-topic", TOPIC)])
    assert parsed == ApnsHeaders(
        token=TOKEN, topic=TOPIC, apns_id=None, priority=10, push_type="alert", expiration=None,
        collapse_id=None, authorization=None, deliver_at_ms=None,
    )  # fmt: skip


def test_all_headers_are_parsed() -> None:
    parsed = validate_headers(
        "POST",
        PATH,
        hdrs(apns_id=UUID, apns_priority="5", apns_expiration="1700000000", apns_collapse_id="score",
             pushgw_deliver_at="1700000000123"),
    )  # fmt: skip
    assert parsed.apns_id == UUID
    assert parsed.priority == 5
    assert parsed.expiration == 1_700_000_000
    assert parsed.collapse_id == "score"
    assert parsed.authorization == "bearer j.w.t"
    assert parsed.deliver_at_ms == 1_700_000_000_123


def test_uppercase_token_is_normalised_to_lowercase() -> None:
    assert validate_headers("POST", PATH.upper().replace("/3/DEVICE/", "/3/device/"), hdrs()).token == TOKEN


def test_given_apns_id_is_lowercased() -> None:
    assert validate_headers("POST", PATH, hdrs(apns_id=UUID.upper())).apns_id == UUID


@pytest.mark.parametrize("size", [2, 64, 108, 160, 200])
def test_tokens_of_any_even_length_up_to_200_hex(size: int) -> None:
    token = "a" * size
    assert validate_headers("POST", "/3/device/" + token, hdrs()).token == token


def test_expiration_zero_means_one_attempt_and_is_kept() -> None:
    assert validate_headers("POST", PATH, hdrs(apns_expiration="0")).expiration == 0


def test_collapse_id_of_exactly_64_utf8_bytes() -> None:
    collapse_id = "é" * 32  # 64 bytes, 32 characters
    assert validate_headers("POST", PATH, hdrs(apns_collapse_id=collapse_id)).collapse_id == collapse_id


def test_empty_collapse_id_counts_as_absent() -> None:
    assert validate_headers("POST", PATH, hdrs(apns_collapse_id="")).collapse_id is None


def test_background_defaults_to_priority_5_and_refuses_1() -> None:
    assert validate_headers("POST", PATH, hdrs(apns_push_type="background")).priority == 5
    with pytest.raises(E.BadPriority):
        validate_headers("POST", PATH, hdrs(apns_push_type="background", apns_priority="1"))


def test_alert_topic_may_end_like_a_suffix() -> None:
    # A VoIP app called com.acme.voip sends alerts to exactly that topic.
    assert validate_headers("POST", PATH, hdrs(apns_topic="com.acme.voip")).topic == "com.acme.voip"


def test_voip_limit_is_5120_and_alert_limit_4096() -> None:
    voip = validate_headers("POST", PATH, hdrs(apns_push_type="voip", apns_topic=TOPIC + ".voip"))
    alert = validate_headers("POST", PATH, hdrs())
    body_5120 = b'{"aps":{}}' + b" " * (5120 - 10)
    body_4096 = body_5120[:10] + body_5120[-4086:]
    assert PAYLOAD_LIMIT["voip"] == 5120
    assert validate_payload(voip, body_5120) is body_5120
    assert validate_payload(alert, body_4096) is body_4096
    with pytest.raises(errors.PayloadTooLarge):
        validate_payload(alert, body_4096 + b" ")


def test_body_is_returned_unchanged_not_reencoded() -> None:
    body = b' { "aps" : {"alert":"caf\\u00e9"} , "custom" : [1, 2.50, null] } '
    assert validate_request("POST", PATH, hdrs(), body)[1] is body


# --- order of the checks (module docstring) ----------------------------------

ORDER = [
    # every request below has several faults; the first in the documented order wins
    ("duplicate-before-message-id", "GET", "/x", [("apns-id", "x"), ("apns-id", "y")], errors.DuplicateHeaders),
    ("message-id-before-method", "GET", "/x", [("apns-id", "x")], errors.BadMessageId),
    ("method-before-topic", "GET", "/x", [], errors.MethodNotAllowed),
    ("topic-before-collapse-id", "POST", "/x", [("apns-collapse-id", "c" * 99)], errors.MissingTopic),
    ("collapse-before-priority", "POST", "/x", hdrs(apns_collapse_id="c" * 99, apns_priority="3"),
     errors.BadCollapseId),
    ("priority-before-push-type", "POST", "/x", hdrs(apns_priority="3", apns_push_type="x"), errors.BadPriority),
    ("push-type-before-path", "POST", "/x", hdrs(apns_push_type="x"), errors.InvalidPushType),
    ("suffix-before-path", "POST", "/x", hdrs(apns_push_type="voip"), errors.BadTopic),
    ("path-before-expiration", "POST", "/x", hdrs(apns_expiration="x"), errors.BadPath),
    ("expiration-before-deliver-at", "POST", PATH, hdrs(apns_expiration="x", pushgw_deliver_at="x"),
     errors.BadExpirationDate),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "headers", "error"), [case[1:] for case in ORDER], ids=[case[0] for case in ORDER]
)
def test_validation_order(
    method: str, path: str, headers: list[tuple[str, str]], error: type[errors.PushgwError]
) -> None:
    with pytest.raises(errors.PushgwError) as info:
        validate_headers(method, path, headers)
    assert type(info.value) is error


def test_header_errors_come_before_payload_errors() -> None:
    with pytest.raises(errors.BadDeviceToken):
        validate_request("POST", "/3/device/xyz", hdrs(), b"")


def test_size_is_checked_before_json() -> None:
    headers = validate_headers("POST", PATH, hdrs())
    with pytest.raises(errors.PayloadTooLarge):
        validate_payload(headers, b"x" * 5000)


# --- push type helpers -------------------------------------------------------


def test_base_topic_rejects_a_topic_without_the_required_suffix() -> None:
    with pytest.raises(errors.BadTopic):
        base_topic(TOPIC, "voip")
    with pytest.raises(errors.BadTopic):
        base_topic(".voip", "voip")
    with pytest.raises(errors.InvalidPushType):
        base_topic(TOPIC, "sms")


def test_base_topic_keeps_suffixless_topics() -> None:
    assert base_topic("com.acme.voip", "alert") == "com.acme.voip"
    assert base_topic("com.apple.mgmt.External.1234", "mdm") == "com.apple.mgmt.External.1234"
    assert base_topic("com.acme.app.push-type.liveactivity", "liveactivity") == "com.acme.app"


def test_apns_headers_is_frozen() -> None:
    parsed = validate_headers("POST", PATH, hdrs())
    with pytest.raises(AttributeError):
        parsed.token = "00"  # type: ignore[misc]
