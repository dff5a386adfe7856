"""Generated apns-ids are lowercase random UUIDs, as Apple's."""

from __future__ import annotations

import uuid

from provider_api.submit import new_apns_id


def test_new_apns_id_is_a_lowercase_version4_uuid() -> None:
    ids = [new_apns_id() for _ in range(1000)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical, lowercase, dashed
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert len(set(ids)) == len(ids)
