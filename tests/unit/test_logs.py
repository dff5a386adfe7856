import io
import json
import logging

from gateway.logs import JsonFormatter, apns_id, redact_token


def test_redact_token_never_returns_the_whole_token():
    token = "ab" * 32
    red = redact_token(token)
    assert token not in red
    assert red.startswith("abab") and red.endswith("abab")
    assert redact_token("") == "-"


def test_json_formatter_carries_context():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    from gateway.logs import _ContextFilter

    handler.addFilter(_ContextFilter())
    log = logging.getLogger("pushgw.test.json")
    log.addHandler(handler)
    log.propagate = False
    tok = apns_id.set("0e6c1f2a-0000-4000-8000-000000000001")
    try:
        log.warning("hello %s", "world")
    finally:
        apns_id.reset(tok)
    record = json.loads(stream.getvalue())
    assert record["msg"] == "hello world"
    assert record["apns_id"] == "0e6c1f2a-0000-4000-8000-000000000001"
    assert record["level"] == "warning"
