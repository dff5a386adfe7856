"""The device session state machine, fed frames and events without sockets."""

from __future__ import annotations

import json

from connection_server import frames as f
from connection_server.session import (
    Authenticate,
    CloseConn,
    Drain,
    FlushAcks,
    IssueToken,
    Phase,
    RevokeToken,
    Send,
    Session,
    topic_allowed,
)
from schemas.notification import Status, StoredNotification, TokenKind

NOW = 1_700_000_000


def row(i: int, priority: int = 10, expiration: int | None = None) -> StoredNotification:
    return StoredNotification(
        id=i,
        apns_id=f"00000000-0000-0000-0000-{i:012d}",
        app_id=1,
        token="ab" * 32,
        topic="com.example.app",
        payload=b'{"aps":{"alert":"hi"},"n":%d}' % i,
        priority=priority,
        push_type="alert",
        expiration=expiration,
        collapse_id=None,
        device_id="dev1",
        kind=TokenKind.LOCAL,
        status=Status.PENDING,
        accepted_at_ms=NOW * 1000,
    )


def hello(**kw: object) -> bytes:
    body = {"type": "hello", "device_id": "dev1", "secret": "s3cret", **kw}
    return json.dumps(body).encode()


def sent(actions: list) -> list[dict]:
    return [json.loads(a.data) for a in actions if isinstance(a, Send)]


def opened(window: int = 4, overflow: int = 0) -> tuple[Session, list]:
    s = Session(window)
    assert s.receive(hello()) == [Authenticate("dev1", "s3cret")]
    return s, s.authenticated("com.example.app", epoch=7, heartbeat=60.0, max_frame=16384, overflow=overflow)


def test_hello_then_welcome_then_drain_request() -> None:
    s, actions = opened(window=4)
    frames = sent(actions)
    assert frames[0]["type"] == "welcome" and frames[0]["epoch"] == 7 and frames[0]["window"] == 4
    assert actions[-1] == Drain(None, 4)
    assert s.phase == Phase.OPEN


def test_overflow_signal_sent_once_after_welcome() -> None:
    _, actions = opened(overflow=3)
    assert [fr["type"] for fr in sent(actions)] == ["welcome", "overflow"]
    assert sent(actions)[1]["dropped"] == 3


def test_first_frame_must_be_hello() -> None:
    s = Session(4)
    actions = s.receive(b'{"type":"ack","ids":[1]}')
    assert actions == [CloseConn(f.Close.BAD_FRAME, "expected hello")]
    assert s.phase == Phase.CLOSING
    assert s.receive(hello()) == []  # nothing after closing


def test_garbage_and_oversized_ack_close_with_bad_frame() -> None:
    s, _ = opened()
    [close] = s.receive(b"{not json")
    assert isinstance(close, CloseConn) and close.code == f.Close.BAD_FRAME
    s, _ = opened()
    too_many = json.dumps({"type": "ack", "ids": list(range(f.MAX_ACK_IDS + 1))})
    [close] = s.receive(too_many)
    assert isinstance(close, CloseConn) and close.code == f.Close.BAD_FRAME
    assert len(close.reason.encode()) <= 123


def test_bad_credential_and_hello_timeout_and_version() -> None:
    s = Session(4)
    s.receive(hello())
    assert s.auth_failed() == [CloseConn(f.Close.BAD_CREDENTIAL, "bad credential")]
    s = Session(4)
    assert s.hello_timeout()[0].code == f.Close.HELLO_TIMEOUT
    s, _ = opened()
    assert s.hello_timeout() == []  # an open session has no hello timer
    s = Session(4)
    assert s.receive(hello(v=3))[0].code == f.Close.UNSUPPORTED_VERSION


def test_drain_window_pages_and_acks_open_it() -> None:
    s, _ = opened(window=2)
    actions = s.drained([row(1), row(2)], limit=2, now_s=NOW)
    assert [fr["id"] for fr in sent(actions)] == [1, 2]
    assert not any(isinstance(a, Drain) for a in actions)  # window full: wait for acks
    actions = s.receive(b'{"type":"ack","ids":[1]}')
    assert actions == [FlushAcks(), Drain((10, 2), 1)]
    actions = s.drained([row(3)], limit=1, now_s=NOW)
    assert [fr["id"] for fr in sent(actions)] == [3]
    s.receive(b'{"type":"ack","ids":[2,3]}')
    actions = s.drained([], limit=2, now_s=NOW)
    assert actions == [] and not s.draining
    assert s.take_acks() == [1, 2, 3]
    assert s.take_acks() == []


def test_push_frame_carries_payload_bytes_unchanged() -> None:
    s, _ = opened()
    [send] = s.push(row(5), now_s=NOW)
    assert isinstance(send, Send)
    assert b'"payload":{"aps":{"alert":"hi"},"n":5}' in send.data
    frame = f.decode_server(send.data)
    assert isinstance(frame, f.Push) and frame.apns_id.endswith("5") and frame.id == 5


def test_duplicates_between_drain_and_push_are_dropped() -> None:
    s, _ = opened(window=4)
    assert len(s.push(row(1), now_s=NOW)) == 1
    assert s.push(row(1), now_s=NOW) == []
    # row 1 is in flight: the drain sends only row 2, and a doorbell for 2 afterwards is dropped
    assert [fr["id"] for fr in sent(s.drained([row(1), row(2)], limit=4, now_s=NOW))] == [2]
    assert s.push(row(2), now_s=NOW) == []
    s.receive(b'{"type":"ack","ids":[1]}')
    # acked but not yet committed: a drain that still sees the row skips it
    assert sent(s.drained([row(1)], limit=4, now_s=NOW)) == []
    s.acks_flushed(s.take_acks())
    assert 1 not in s.inflight


def test_ack_committed_during_a_backlog_read_is_not_pushed_again() -> None:
    s, actions = opened(window=4)
    assert actions[-1] == Drain(None, 4)
    s.drained([], limit=4, now_s=NOW)
    assert len(s.push(row(1), now_s=NOW)) == 1
    s.receive(b'{"type":"ack","ids":[1]}')
    [drain] = s.request_drain()  # a doorbell: the backlog read starts before the ack commits
    assert isinstance(drain, Drain)
    s.acks_flushed(s.take_acks())  # the commit lands while the read is in flight
    # The read ran on a snapshot where row 1 was still pending.
    assert sent(s.drained([row(1)], limit=4, now_s=NOW)) == []
    # Once that read is answered the id is forgotten: the session does not grow.
    assert 1 not in s._unflushed and s._flushed_late is None


def test_late_push_of_a_row_a_drain_already_delivered_is_re_read_not_resent() -> None:
    s, _ = opened(window=4)
    # The connect drain sends row 3; the device acks; the ack is committed.
    assert [fr["id"] for fr in sent(s.drained([row(3)], limit=4, now_s=NOW))] == [3]
    s.receive(b'{"type":"ack","ids":[3]}')
    s.acks_flushed(s.take_acks())
    # Only now does the (slow) router's doorbell for row 3 arrive: nothing in memory
    # remembers row 3, so the session asks the store (which says: delivered).
    actions = s.push(row(3), NOW)
    assert sent(actions) == [] and actions == [Drain(None, 4)]
    assert sent(s.drained([], limit=4, now_s=NOW)) == []
    # A row newer than anything drained still goes out at once.
    assert [fr["id"] for fr in sent(s.push(row(4), NOW))] == [4]


def test_second_doorbell_after_the_ack_committed_is_re_read_not_resent() -> None:
    # A client resent its apns-id while the row was pending: the API rings again, and
    # that doorbell arrives after the first push was acked and the ack committed.
    s, _ = opened(window=4)
    s.drained([], limit=4, now_s=NOW)
    assert [fr["id"] for fr in sent(s.push(row(5), NOW))] == [5]
    s.receive(b'{"type":"ack","ids":[5]}')
    s.acks_flushed(s.take_acks())
    actions = s.push(row(5), NOW)
    assert sent(actions) == [] and actions == [Drain(None, 4)]
    # Out-of-order doorbells only cost a read: an older row still pending comes from the store.
    assert [fr["id"] for fr in sent(s.drained([row(4)], limit=4, now_s=NOW))] == [4]


def test_push_of_a_row_committed_before_the_connection_opened_is_re_read() -> None:
    # An earlier connection of the device may have drained and acked it already.
    s = Session(4)
    s.receive(hello())
    s.authenticated("com.example.app", epoch=8, heartbeat=60.0, max_frame=16384, overflow=0, now_s=NOW + 5)
    s.drained([], limit=4, now_s=NOW + 5)
    actions = s.push(row(9), NOW + 5)  # accepted at NOW, before this connection
    assert sent(actions) == [] and actions == [Drain(None, 4)]


def test_push_beyond_window_becomes_a_drain() -> None:
    s, _ = opened(window=1)
    s.drained([], limit=1, now_s=NOW)
    assert len(sent(s.push(row(1), NOW))) == 1
    assert s.push(row(2), NOW) == []  # window full; remembered as a drain
    assert s.draining
    actions = s.receive(b'{"type":"ack","ids":[1]}')
    assert Drain(None, 1) in actions


def test_redrain_during_outstanding_page_restarts_from_top() -> None:
    s, actions = opened(window=4)
    assert actions[-1] == Drain(None, 4)
    assert s.request_drain() == []  # one outstanding drain at a time
    actions = s.drained([row(1)], limit=4, now_s=NOW)
    assert actions[-1] == Drain(None, 3)


def test_expired_and_asleep_rows_are_not_sent() -> None:
    s, _ = opened(window=8)
    s.drained([], limit=8, now_s=NOW)
    assert s.push(row(1, expiration=NOW - 1), NOW) == []
    assert len(s.push(row(2, expiration=0), NOW)) == 1  # 0 = one attempt, now
    s.receive(b'{"type":"state","awake":false}')
    assert s.push(row(3, priority=1), NOW) == []
    assert len(s.push(row(4, priority=5), NOW)) == 1
    actions = s.receive(b'{"type":"state","awake":true}')
    assert any(isinstance(a, Drain) for a in actions)


def test_register_checks_topic_against_bundle() -> None:
    s, _ = opened()
    assert s.receive(b'{"type":"register","topic":"com.example.app.voip","rid":"r1"}') == [
        IssueToken("r1", "com.example.app.voip", "production")
    ]
    [send] = s.receive(b'{"type":"register","topic":"com.other.app","rid":"r2","environment":"sandbox"}')
    assert sent([send]) == [{"type": "error", "reason": "TopicDisallowed", "rid": "r2", "message": "com.other.app"}]
    assert s.receive(b'{"type":"unregister","token":"abcd","rid":"r3"}') == [RevokeToken("r3", "abcd")]
    assert sent(s.registered("r1", "ab" * 32, "com.example.app.voip", "production"))[0]["type"] == "registered"


def test_topic_allowed_rules() -> None:
    assert topic_allowed("com.a", "com.a")
    assert topic_allowed("com.a.push-type.liveactivity", "com.a")
    assert not topic_allowed("com.ab", "com.a")
    assert not topic_allowed("com.a.anything", "com.a")


def test_kick_closes_only_older_epochs() -> None:
    s, _ = opened()  # epoch 7
    assert s.kick(7) == []
    assert s.kick(8) == [CloseConn(f.Close.REPLACED, "replaced by a newer connection")]


def test_shutdown_sends_reconnect_then_closes_1012() -> None:
    s, _ = opened()
    actions = s.shutdown(1500)
    assert sent(actions) == [{"type": "reconnect", "delay_ms": 1500}]
    assert actions[-1] == CloseConn(1012, "server restart")
    assert s.push(row(1), NOW) == []


def test_failed_ack_flush_is_retried() -> None:
    s, _ = opened()
    s.push(row(1), NOW)
    s.receive(b'{"type":"ack","ids":[1]}')
    ids = s.take_acks()
    assert s.acks_failed(ids) == [FlushAcks()]
    assert s.take_acks() == [1]


def test_session_has_no_instance_dict() -> None:
    s = Session(4)
    assert not hasattr(s, "__dict__")
