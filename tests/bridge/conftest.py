"""Fixtures: a running strict mock of Apple and credentials it trusts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.bridge.certs import make_p8, make_self_signed
from tests.bridge.mock_apple import MockApple

TEAM = "TEAM123456"
KID = "KEY1234567"


@pytest.fixture
def tls_files(tmp_path):  # type: ignore[no-untyped-def]
    return make_self_signed(tmp_path)


@pytest.fixture
def p8() -> tuple[str, str]:
    return make_p8()


@pytest.fixture
async def apple(tls_files, p8) -> AsyncIterator[MockApple]:  # type: ignore[no-untyped-def]
    mock = MockApple(*tls_files)
    mock.add_key(KID, TEAM, p8[1])
    await mock.start()
    yield mock
    await mock.stop()
