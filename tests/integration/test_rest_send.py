"""REST sends against a real Core (SQLite and PostgreSQL): every reason
string, idempotency, batch with mixed results, user and channel fan-out,
notification status, cross-app isolation.  Every response is checked against
/openapi.json by ``Rest.call``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.integration.test_rest_fixtures import Rest, rest_fixture  # noqa: F401  (fixture)

TOPIC = "com.example.alpha"
ALERT = {"aps": {"alert": "hi"}}


def _send(token: str, **fields: Any) -> dict[str, Any]:
    return {"token": token, "topic": TOPIC, "payload": ALERT} | fields


async def test_send_then_status(rest: Rest) -> None:
    device_id, token = await rest.device_with_token()
    status, body = await rest.call("POST", "/api/v1/send", _send(token, priority=5, collapse_id="c1"))
    assert status == 200 and body["status"] == "pending" and body["duplicate"] is False
    uuid.UUID(body["apns_id"])
    backlog = await rest.core.store.backlog(device_id, 10)
    assert [(n.apns_id, json.loads(n.payload), n.priority) for n in backlog] == [(body["apns_id"], ALERT, 5)]
    status, st = await rest.call("GET", f"/api/v1/notifications/{body['apns_id']}")
    assert status == 200
    assert (st["apns_id"], st["token"], st["status"]) == (body["apns_id"], token, "pending")
    assert "accepted" in [e["event"] for e in st["timeline"]]


async def test_payload_is_stored_byte_for_byte(rest: Rest) -> None:
    device_id, token = await rest.device_with_token()
    raw = b'{"token":"%s","topic":"%s","payload":{ "aps" : {"alert":"\\u00e9"},  "k":[1, 2] }}' % (
        token.encode(),
        TOPIC.encode(),
    )
    status, _ = await rest.call("POST", "/api/v1/send", data=raw)
    assert status == 200
    (stored,) = await rest.core.store.backlog(device_id, 10)
    assert stored.payload == b'{ "aps" : {"alert":"\\u00e9"},  "k":[1, 2] }'


async def test_idempotent_resend(rest: Rest) -> None:
    device_id, token = await rest.device_with_token()
    apns_id = str(uuid.uuid4())
    first = await rest.call("POST", "/api/v1/send", _send(token, apns_id=apns_id.upper()))
    second = await rest.call("POST", "/api/v1/send", _send(token, apns_id=apns_id, payload={"aps": {"badge": 2}}))
    assert first == (200, {"apns_id": apns_id, "status": "pending", "duplicate": False})
    assert second == (200, {"apns_id": apns_id, "status": "pending", "duplicate": True})
    backlog = await rest.core.store.backlog(device_id, 10)
    assert [json.loads(n.payload) for n in backlog] == [ALERT]  # stored once, the original


async def test_resend_after_unregister_returns_original_result(rest: Rest) -> None:
    _, token = await rest.device_with_token()
    apns_id = str(uuid.uuid4())
    assert (await rest.call("POST", "/api/v1/send", _send(token, apns_id=apns_id)))[0] == 200
    assert (await rest.call("DELETE", f"/api/v1/tokens/{token}"))[0] == 204
    again = await rest.call("POST", "/api/v1/send", _send(token, apns_id=apns_id))
    assert again == (200, {"apns_id": apns_id, "status": "pending", "duplicate": True})
    status, body = await rest.call("POST", "/api/v1/send", _send(token, apns_id=str(uuid.uuid4())))
    assert (status, body["reason"]) == (410, "Unregistered")
    other = str(uuid.uuid4())
    status, batch = await rest.call(
        "POST", "/api/v1/send/batch", {"notifications": [_send(token, apns_id=apns_id), _send(token, apns_id=other)]}
    )
    assert status == 200
    assert batch["results"][0] == {"code": 200, "index": 0, "apns_id": apns_id, "status": "pending", "duplicate": True}
    assert (batch["results"][1]["code"], batch["results"][1]["reason"]) == (410, "Unregistered")
    assert (batch["accepted"], batch["failed"]) == (1, 1)


LA_TOPIC = TOPIC + ".push-type.liveactivity"
LA_UPDATE = {"aps": {"event": "update", "timestamp": 1, "content-state": {}}}
LA_NO_STAMP = {"aps": {"event": "update", "content-state": {}}}

# (fields to merge into a valid send, expected status, expected reason)
REASONS: list[tuple[dict[str, Any], int, str]] = [
    ({"collapse_id": "x" * 65}, 400, "BadCollapseId"),
    ({"token": "zz"}, 400, "BadDeviceToken"),
    ({"token": "ab" * 32}, 400, "BadDeviceToken"),  # well-formed but unknown
    ({"expiration": -1}, 400, "BadExpirationDate"),
    ({"expiration": "soon"}, 400, "BadExpirationDate"),
    ({"apns_id": "not-a-uuid"}, 400, "BadMessageId"),
    ({"priority": 7}, 400, "BadPriority"),
    ({"priority": 10, "push_type": "background", "payload": {"aps": {"content-available": 1}}}, 400, "BadPriority"),
    ({"priority": 1, "push_type": "background", "payload": {"aps": {"content-available": 1}}}, 400, "BadPriority"),
    ({"push_type": "background", "payload": {"sync": 1}}, 400, "InvalidPushType"),
    ({"push_type": "liveactivity", "topic": LA_TOPIC, "priority": 1, "payload": LA_UPDATE}, 400, "BadPriority"),
    ({"push_type": "liveactivity", "topic": LA_TOPIC, "payload": LA_NO_STAMP}, 400, "BadRequestPayload"),
    ({"push_type": "liveactivity", "payload": LA_UPDATE}, 400, "BadTopic"),  # bare bundle topic
    ({"push_type": "background", "payload": {"aps": {"content-available": 1, "alert": "x"}}}, 400, "InvalidPushType"),
    ({"topic": "com.example alpha"}, 400, "BadTopic"),
    ({"push_type": "voip"}, 400, "BadTopic"),  # voip needs the .voip suffix
    ({"push_type": "Alert"}, 400, "InvalidPushType"),
    ({"token": ""}, 400, "MissingDeviceToken"),
    ({"token": None}, 400, "BadDeviceToken"),
    ({"topic": ""}, 400, "MissingTopic"),
    ({"topic": "com.example.beta"}, 400, "TopicDisallowed"),
    ({"payload": {"aps": {"alert": "x" * 5000}}}, 413, "PayloadTooLarge"),
    ({"payload": [1, 2]}, 400, "BadRequestPayload"),
    ({"payload": {"aps": {"badge": "one"}}}, 400, "BadRequestPayload"),
    ({"deliver_at_ms": -5}, 400, "BadRequestParams"),
    ({"colour": "red"}, 400, "BadRequestParams"),
]


@pytest.mark.parametrize(("fields", "status", "reason"), REASONS, ids=[f"{r[2]}-{i}" for i, r in enumerate(REASONS)])
async def test_reason_strings(rest: Rest, fields: dict[str, Any], status: int, reason: str) -> None:
    _, token = await rest.device_with_token()
    got = await rest.call("POST", "/api/v1/send", _send(token) | fields)
    assert got == (status, {"reason": reason})


@pytest.mark.parametrize(
    ("missing", "reason"), [("token", "MissingDeviceToken"), ("topic", "MissingTopic"), ("payload", "PayloadEmpty")]
)
async def test_missing_fields(rest: Rest, missing: str, reason: str) -> None:
    _, token = await rest.device_with_token()
    body = _send(token)
    del body[missing]
    assert await rest.call("POST", "/api/v1/send", body) == (400, {"reason": reason})


async def test_token_not_for_topic(rest: Rest) -> None:
    device_id, _ = await rest.device_with_token()
    _, voip = await rest.call("POST", f"/api/v1/devices/{device_id}/tokens", {"topic": TOPIC + ".voip"})
    # A VoIP token pushed on the app's alert topic.
    got = await rest.call("POST", "/api/v1/send", _send(voip["token"]))
    assert got == (400, {"reason": "DeviceTokenNotForTopic"})


async def test_malformed_json(rest: Rest) -> None:
    assert await rest.call("POST", "/api/v1/send", data=b'{"token": ') == (400, {"reason": "BadRequestPayload"})


async def test_voip_topic_and_larger_limit(rest: Rest) -> None:
    device_id, _ = await rest.device_with_token()
    _, tok = await rest.call("POST", f"/api/v1/devices/{device_id}/tokens", {"topic": TOPIC + ".voip"})
    payload = {"aps": {}, "data": "x" * 4500}  # over 4096, under VoIP's 5120
    fields = {"topic": TOPIC + ".voip", "push_type": "voip", "payload": payload}
    status, body = await rest.call("POST", "/api/v1/send", _send(tok["token"], **fields))
    assert status == 200, body


async def test_batch_mixed_results(rest: Rest) -> None:
    device_id, token = await rest.device_with_token()
    _, dead = await rest.device_with_token()
    await rest.call("DELETE", f"/api/v1/tokens/{dead}")
    dup = str(uuid.uuid4())
    assert (await rest.call("POST", "/api/v1/send", _send(token, apns_id=dup)))[0] == 200
    items: list[Any] = [
        _send(token),
        _send(token, priority=3),
        _send("cd" * 32),
        _send(dead),
        _send(token, apns_id=dup),
        {"nonsense": True},
        _send(token, payload={"aps": {"badge": 1}}),
    ]
    status, body = await rest.call("POST", "/api/v1/send/batch", {"notifications": items})
    assert status == 200
    res = body["results"]
    assert [r["index"] for r in res] == list(range(7))
    assert [r["code"] for r in res] == [200, 400, 400, 410, 200, 400, 200]
    assert [r.get("reason") for r in res] == [
        None,
        "BadPriority",
        "BadDeviceToken",
        "Unregistered",
        None,
        "BadRequestParams",
        None,
    ]
    assert res[3]["timestamp"] > 0
    assert res[4] == {"code": 200, "index": 4, "apns_id": dup, "status": "pending", "duplicate": True}
    assert (body["accepted"], body["failed"]) == (3, 4)
    assert len(await rest.core.store.backlog(device_id, 100)) == 3  # dup stored once


async def test_batch_limits(rest: Rest) -> None:
    _, token = await rest.device_with_token()
    too_many = {"notifications": [_send(token)] * 501}
    assert await rest.call("POST", "/api/v1/send/batch", too_many) == (400, {"reason": "BadRequestParams"})
    assert await rest.call("POST", "/api/v1/send/batch", {"notifications": []}) == (
        400,
        {"reason": "BadRequestParams"},
    )
    status, body = await rest.call("POST", "/api/v1/send/batch", {"notifications": [_send(token)] * 500})
    assert status == 200 and body["accepted"] == 500


async def test_send_to_user(rest: Rest) -> None:
    dev1, t1 = await rest.device_with_token(user_id="alice")
    _, t2 = await rest.device_with_token(user_id="alice")
    _, t3 = await rest.device_with_token(user_id="alice")
    _, other = await rest.device_with_token(user_id="bob")
    await rest.call("DELETE", f"/api/v1/tokens/{t3}")
    status, body = await rest.call("POST", "/api/v1/send/user", {"user_id": "alice", "payload": ALERT})
    assert status == 200
    by_token = {r["token"]: r for r in body["results"]}
    assert set(by_token) <= {t1, t2, t3} and {t1, t2} <= set(by_token)
    assert by_token[t1]["code"] == by_token[t2]["code"] == 200
    if t3 in by_token:  # a store may or may not list inactive tokens; never accepted
        assert by_token[t3]["reason"] == "Unregistered"
    assert body["accepted"] == 2
    assert len(await rest.core.store.backlog(dev1, 10)) == 1
    status, body = await rest.call("POST", "/api/v1/send/user", {"user_id": "nobody", "payload": ALERT})
    assert (status, body["accepted"], body["results"]) == (200, 0, [])
    assert other not in by_token


async def test_send_to_channel(rest: Rest) -> None:
    toks = [(await rest.device_with_token())[1] for _ in range(3)]
    for t in toks:
        await rest.call("PUT", f"/api/v1/tokens/{t}/subscriptions/sports")
    await rest.call("DELETE", f"/api/v1/tokens/{toks[2]}/subscriptions/sports")
    _, b_token = await rest.device_with_token(rest.b)
    await rest.call("PUT", f"/api/v1/tokens/{b_token}/subscriptions/sports", key=rest.b.key)
    status, body = await rest.call("POST", "/api/v1/send/topic", {"channel": "sports", "payload": ALERT})
    assert status == 200
    assert body == {"channel": "sports", "matched": 2, "accepted": 2, "failed": 0, "reasons": {}}
    # A VoIP token joins; an explicit alert topic does not fit it.
    device_id, _ = await rest.device_with_token()
    _, voip = await rest.call("POST", f"/api/v1/devices/{device_id}/tokens", {"topic": TOPIC + ".voip"})
    await rest.call("PUT", f"/api/v1/tokens/{voip['token']}/subscriptions/sports")
    fan_out = {"channel": "sports", "payload": ALERT, "topic": TOPIC}
    status, body = await rest.call("POST", "/api/v1/send/topic", fan_out)
    assert status == 200
    assert body == {
        "channel": "sports",
        "matched": 3,
        "accepted": 2,
        "failed": 1,
        "reasons": {"DeviceTokenNotForTopic": 1},
    }
    assert await rest.core.store.backlog(device_id, 10) == []


async def test_status_unknown_and_malformed(rest: Rest) -> None:
    assert await rest.call("GET", f"/api/v1/notifications/{uuid.uuid4()}") == (404, {"reason": "NotFound"})
    assert await rest.call("GET", "/api/v1/notifications/xyz") == (400, {"reason": "BadMessageId"})


async def test_cross_app_isolation(rest: Rest) -> None:
    a, b = rest.a, rest.b
    device_id, token = await rest.device_with_token(a)
    _, sent = await rest.call("POST", "/api/v1/send", _send(token))
    nf = (404, {"reason": "NotFound"})
    assert await rest.call("GET", f"/api/v1/devices/{device_id}", key=b.key) == nf
    assert await rest.call("DELETE", f"/api/v1/devices/{device_id}", key=b.key) == nf
    assert await rest.call("POST", f"/api/v1/devices/{device_id}/tokens", {"topic": b.bundle}, key=b.key) == nf
    assert await rest.call("DELETE", f"/api/v1/tokens/{token}", key=b.key) == nf
    assert await rest.call("PUT", f"/api/v1/tokens/{token}/subscriptions/x", key=b.key) == nf
    assert await rest.call("GET", f"/api/v1/notifications/{sent['apns_id']}", key=b.key) == nf
    # Pushing: B's own topic to A's token, or A's topic with B's key.
    assert await rest.call("POST", "/api/v1/send", _send(token, topic=b.bundle), key=b.key) == (
        400,
        {"reason": "DeviceTokenNotForTopic"},
    )
    assert await rest.call("POST", "/api/v1/send", _send(token), key=b.key) == (400, {"reason": "TopicDisallowed"})
    status, body = await rest.call(
        "POST", "/api/v1/send/batch", {"notifications": [_send(token, topic=b.bundle)]}, key=b.key
    )
    assert status == 200 and body["accepted"] == 0
    assert body["results"][0]["reason"] == "DeviceTokenNotForTopic"
    # B cannot take over A's token as an APNs token either.
    assert await rest.call("POST", "/api/v1/tokens/apns", {"token": token, "topic": b.bundle}, key=b.key) == (
        400,
        {"reason": "TopicDisallowed"},
    )
    # Everything of A is untouched.
    assert (await rest.call("GET", f"/api/v1/devices/{device_id}"))[1]["tokens"][0]["active"] is True
    assert len(await rest.core.store.backlog(device_id, 10)) == 1
