from schemas import errors


def test_every_leaf_carries_status_and_reason():
    assert errors.BadDeviceToken().status == 400
    assert errors.BadDeviceToken.reason == "BadDeviceToken"
    assert errors.ExpiredProviderToken.status == 403
    assert errors.PayloadTooLarge.status == 413
    assert errors.TooManyProviderTokenUpdates.status == 429
    assert errors.Shutdown.status == 503


def test_unregistered_body_has_millisecond_timestamp():
    err = errors.Unregistered(1_700_000_000_123)
    assert err.status == 410
    assert err.body() == {"reason": "Unregistered", "timestamp": 1_700_000_000_123}


def test_by_reason_maps_apple_strings_back_to_classes():
    assert errors.BY_REASON["Unregistered"] is errors.Unregistered
    assert errors.BY_REASON["TooManyRequests"] is errors.TooManyRequests
    assert errors.BY_REASON["Shutdown"] is errors.Shutdown
