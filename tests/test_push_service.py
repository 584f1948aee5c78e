"""The local push service used by the Web Push tests is real: pywebpush talks to it over HTTP.

These tests pin down what it accepts and rejects (and so what the app must send), and document
what pywebpush 2.5 actually puts on the wire.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid, Vapid01
from py_vapid.utils import b64urlencode
from pywebpush import WebPusher, WebPushException, webpush

from tests.push_service import (
    MAX_BODY_BYTES,
    PushService,
    Subscription,
    b64url_decode,
)

CONTACT = "mailto:alerts@besik.example"
PAYLOAD = {"title": "New report AST-0001", "body": "Almaty, PC1", "url": "/reports/1"}


@dataclass(frozen=True)
class VapidKey:
    """An application server key pair as the app stores it: a PEM file and its public key."""

    pem_path: str
    public_key: str


def make_vapid_key(directory: Path, name: str = "vapid") -> VapidKey:
    """Generate a VAPID key pair with py_vapid and save the private key as PEM."""
    vapid = Vapid()
    vapid.generate_keys()
    path = directory / f"{name}.pem"
    vapid.save_key(str(path))
    public = vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return VapidKey(pem_path=str(path), public_key=b64urlencode(public))


@pytest.fixture
def vapid_key(tmp_path: Path) -> VapidKey:
    return make_vapid_key(tmp_path)


@pytest.fixture
def push(vapid_key: VapidKey) -> Iterator[PushService]:
    with PushService() as service:
        service.expect_vapid_public_key(vapid_key.public_key)
        yield service


def send(
    subscription_info: dict[str, Any],
    key: VapidKey | Vapid01,
    payload: dict[str, Any] | str = PAYLOAD,
    claims: dict[str, str | int] | None = None,
    **options: Any,
) -> requests.Response:
    """Send like the app will: fresh claims dict, explicit ttl and timeout, Urgency high."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    options.setdefault("headers", {"Urgency": "high"})
    response = webpush(
        subscription_info=subscription_info,
        data=data,
        vapid_private_key=key.pem_path if isinstance(key, VapidKey) else key,
        vapid_claims={"sub": CONTACT} if claims is None else claims,
        ttl=options.pop("ttl", 60),
        timeout=5,
        **options,
    )
    assert isinstance(response, requests.Response)
    return response


def rejection(call: Any) -> WebPushException:
    """Run ``call`` and return the WebPushException it must raise."""
    with pytest.raises(WebPushException) as excinfo:
        call()
    return excinfo.value


def json_of_length(size: int) -> str:
    """A JSON object whose serialization is exactly ``size`` bytes."""
    text = json.dumps({"x": "a" * (size - 9)})
    assert len(text) == size
    return text


# -- the subscription looks like a browser's ----------------------------------------------------


def test_subscription_json_has_the_browser_shape(push: PushService) -> None:
    sub = push.new_subscription()
    data = sub.as_json()
    assert set(data) == {"endpoint", "expirationTime", "keys"}
    assert set(data["keys"]) == {"p256dh", "auth"}
    assert data["expirationTime"] is None
    assert data["endpoint"].startswith(f"http://{push.host}/push/")
    assert "=" not in data["keys"]["p256dh"] + data["keys"]["auth"]
    point = b64url_decode(data["keys"]["p256dh"])
    assert len(point) == 65 and point[0] == 0x04
    assert len(b64url_decode(data["keys"]["auth"])) == 16
    assert push.new_subscription().endpoint != sub.endpoint


def test_host_is_loopback_with_a_real_port(push: PushService) -> None:
    host, port = push.host.split(":")
    assert host == "127.0.0.1" and 0 < int(port) < 65536
    assert push.origin == f"http://{push.host}"


# -- a correct push is verified, decrypted and recorded ------------------------------------------


def test_pywebpush_delivery_is_verified_and_decrypted(
    push: PushService, vapid_key: VapidKey
) -> None:
    sub = push.new_subscription()
    response = send(sub.as_json(), vapid_key)
    assert response.status_code == 201
    assert response.headers["Location"].startswith(push.origin)
    [delivery] = push.wait_for(1, subscription=sub)
    assert delivery.verified and delivery.status == 201 and delivery.reason is None
    assert delivery.payload == PAYLOAD
    assert delivery.endpoint_id == sub.endpoint_id
    assert delivery.claims is not None
    assert delivery.claims["aud"] == push.origin
    assert push.host.split(":")[1] in delivery.claims["aud"]
    assert delivery.claims["sub"] == CONTACT
    assert time.time() < delivery.claims["exp"] <= time.time() + 24 * 3600
    assert delivery.ttl == 60 and delivery.urgency == "high" and delivery.topic is None
    assert delivery.content_encoding == "aes128gcm"
    assert delivery.vapid_key == vapid_key.public_key
    assert delivery.arrived_at <= time.time()
    assert delivery.arrived_monotonic <= time.monotonic()
    assert push.received() == push.requests == [delivery]


def test_pywebpush_sends_rfc8292_vapid_scheme(push: PushService, vapid_key: VapidKey) -> None:
    """pywebpush 2.5 uses py_vapid's Vapid02: ``vapid t=<jwt>,k=<key>``, no Crypto-Key."""
    sub = push.new_subscription()
    send(sub.as_json(), vapid_key)
    [delivery] = push.received()
    authorization = delivery.headers["authorization"]
    assert authorization.startswith("vapid t=")
    assert f",k={vapid_key.public_key}" in authorization
    assert "crypto-key" not in delivery.headers
    assert delivery.headers["ttl"] == "60"
    assert delivery.headers["content-encoding"] == "aes128gcm"


def test_topic_is_recorded(push: PushService, vapid_key: VapidKey) -> None:
    sub = push.new_subscription()
    send(sub.as_json(), vapid_key, headers={"Urgency": "normal", "Topic": "report-17"})
    [delivery] = push.received(sub)
    assert (delivery.urgency, delivery.topic) == ("normal", "report-17")


def test_largest_payload_fits_and_one_more_byte_is_413(
    push: PushService, vapid_key: VapidKey
) -> None:
    sub = push.new_subscription()
    send(sub.as_json(), vapid_key, payload=json_of_length(3993))
    assert push.received(sub)[0].body_size == MAX_BODY_BYTES
    error = rejection(lambda: send(sub.as_json(), vapid_key, payload=json_of_length(3994)))
    assert error.status_code == 413
    assert len(push.received(sub)) == 1


# -- what a push service refuses ----------------------------------------------------------------


def test_another_vapid_key_is_rejected(
    push: PushService, vapid_key: VapidKey, tmp_path: Path
) -> None:
    sub = push.new_subscription()
    other = make_vapid_key(tmp_path, "other")
    error = rejection(lambda: send(sub.as_json(), other))
    assert error.status_code in (401, 403)
    [request] = push.requests
    assert not request.verified and request.payload is None
    assert "not the expected application server key" in (request.reason or "")
    assert push.received() == []


def test_body_encrypted_for_another_subscription_is_rejected(
    push: PushService, vapid_key: VapidKey
) -> None:
    sub, stranger = push.new_subscription(), push.new_subscription()
    crossed = {**sub.as_json(), "keys": stranger.as_json()["keys"]}
    error = rejection(lambda: send(crossed, vapid_key))
    assert error.status_code == 400
    [request] = push.requests
    assert not request.verified
    assert "cannot decrypt" in (request.reason or "")
    assert push.received() == []


def test_tampered_body_is_rejected(push: PushService, vapid_key: VapidKey) -> None:
    sub = push.new_subscription()
    vapid = Vapid.from_file(vapid_key.pem_path)
    headers = vapid.sign({"sub": CONTACT, "aud": push.origin})
    body = bytearray(WebPusher(sub.as_json()).encode(json.dumps(PAYLOAD).encode())["body"])
    body[-1] ^= 0x01
    headers |= {"TTL": "60", "Content-Encoding": "aes128gcm"}
    with requests.post(sub.endpoint, data=bytes(body), headers=headers, timeout=5) as response:
        assert response.status_code == 400
    assert "cannot decrypt" in (push.requests[0].reason or "")


def test_legacy_webpush_scheme_is_rejected(push: PushService, vapid_key: VapidKey) -> None:
    """pywebpush only sends ``WebPush <jwt>`` + Crypto-Key if handed a Vapid01 instance."""
    sub = push.new_subscription()
    legacy = Vapid01.from_file(vapid_key.pem_path)
    error = rejection(lambda: send(sub.as_json(), legacy))
    assert error.status_code == 401
    [request] = push.requests
    assert request.headers["authorization"].startswith("WebPush ")
    assert request.headers["crypto-key"].startswith("p256ecdsa=")


def test_exp_more_than_24_hours_ahead_is_rejected(
    push: PushService, vapid_key: VapidKey
) -> None:
    sub = push.new_subscription()
    claims: dict[str, str | int] = {"sub": CONTACT, "exp": int(time.time()) + 25 * 3600}
    assert rejection(lambda: send(sub.as_json(), vapid_key, claims=claims)).status_code == 403
    assert "24 h" in (push.requests[0].reason or "")


def test_unsigned_request_is_401_and_unknown_endpoint_404(push: PushService) -> None:
    sub = push.new_subscription()
    headers = {"TTL": "0", "Content-Encoding": "aes128gcm"}
    with requests.post(sub.endpoint, data=b"x", headers=headers, timeout=5) as response:
        assert response.status_code == 401
    unknown = f"{push.origin}/push/nobody"
    with requests.post(unknown, data=b"x", headers=headers, timeout=5) as response:
        assert response.status_code == 404
    assert [r.status for r in push.requests] == [401, 404]


def test_missing_ttl_is_rejected(push: PushService, vapid_key: VapidKey) -> None:
    sub = push.new_subscription()
    headers = Vapid.from_file(vapid_key.pem_path).sign({"sub": CONTACT, "aud": push.origin})
    headers["Content-Encoding"] = "aes128gcm"
    with requests.post(sub.endpoint, data=b"x", headers=headers, timeout=5) as response:
        assert response.status_code == 400
    assert "TTL" in (push.requests[0].reason or "")


def test_reused_claims_dict_is_rejected_by_the_next_origin(
    vapid_key: VapidKey,
) -> None:
    """PLATFORM.md trap: pywebpush writes ``aud`` into the claims dict it is given."""
    with PushService(vapid_key.public_key) as first, PushService(vapid_key.public_key) as second:
        claims: dict[str, str | int] = {"sub": CONTACT}
        send(first.new_subscription().as_json(), vapid_key, claims=claims)
        assert claims["aud"] == first.origin
        target = second.new_subscription()
        error = rejection(lambda: send(target.as_json(), vapid_key, claims=claims))
        assert error.status_code == 403
        [request] = second.requests
        assert request.claims is not None and request.claims["aud"] == first.origin
        assert "aud" in (request.reason or "")
        send(target.as_json(), vapid_key)  # a fresh dict per call is the fix
        assert len(second.received(target)) == 1


def test_no_expected_key_rejects_everything(vapid_key: VapidKey) -> None:
    with PushService() as service:
        sub = service.new_subscription()
        assert rejection(lambda: send(sub.as_json(), vapid_key)).status_code == 403
        assert "expect_vapid_public_key" in (service.requests[0].reason or "")


def test_expected_key_must_be_a_p256_point() -> None:
    with pytest.raises(ValueError):
        PushService("not-a-key")


# -- scripted answers ---------------------------------------------------------------------------


def test_scripted_410_means_gone(push: PushService, vapid_key: VapidKey) -> None:
    sub = push.new_subscription()
    push.answer(sub, 410)
    error = rejection(lambda: send(sub.as_json(), vapid_key))
    assert error.response.status_code == 410
    [request] = push.requests
    assert request.verified and request.status == 410 and request.payload == PAYLOAD
    assert push.received() == []


def test_scripted_429_carries_retry_after(push: PushService, vapid_key: VapidKey) -> None:
    sub = push.new_subscription()
    push.answer(sub, 429, retry_after=2)
    error = rejection(lambda: send(sub.as_json(), vapid_key))
    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "2"
    assert error.retry_after == "2"


def test_scripted_answers_are_per_endpoint_then_201(
    push: PushService, vapid_key: VapidKey
) -> None:
    flaky, healthy = push.new_subscription(), push.new_subscription()
    push.answer(flaky, 500, 500)
    for _ in range(2):
        assert rejection(lambda: send(flaky.as_json(), vapid_key)).status_code == 500
    assert send(healthy.as_json(), vapid_key).status_code == 201
    assert send(flaky.as_json(), vapid_key).status_code == 201
    assert [r.status for r in push.requests] == [500, 500, 201, 201]
    assert len(push.received(flaky)) == len(push.received(healthy)) == 1


# -- waiting ------------------------------------------------------------------------------------


def test_wait_for_collects_concurrent_deliveries(push: PushService, vapid_key: VapidKey) -> None:
    subs = [push.new_subscription() for _ in range(8)]
    threads = [
        threading.Thread(target=send, args=(sub.as_json(), vapid_key, {"n": n}))
        for n, sub in enumerate(subs)
    ]
    for thread in threads:
        thread.start()
    deliveries = push.wait_for(8, timeout=10)
    for thread in threads:
        thread.join()
    assert sorted(d.payload["n"] for d in deliveries if d.payload) == list(range(8))
    assert [d.payload for d in push.wait_for(1, subscription=subs[3])] == [{"n": 3}]


def test_wait_for_times_out_with_what_did_arrive(
    push: PushService, vapid_key: VapidKey, tmp_path: Path
) -> None:
    sub = push.new_subscription()
    rejection(lambda: send(sub.as_json(), make_vapid_key(tmp_path, "other")))
    started = time.monotonic()
    with pytest.raises(AssertionError) as excinfo:
        push.wait_for(1, timeout=0.2, subscription=sub)
    assert 0.2 <= time.monotonic() - started < 5
    message = str(excinfo.value)
    assert "expected 1 accepted push deliveries" in message
    assert "got 0" in message
    assert "403 rejected" in message and "not the expected application server key" in message


def test_subscription_decrypts_what_pywebpush_encrypts(push: PushService) -> None:
    sub: Subscription = push.new_subscription()
    body = WebPusher(sub.as_json()).encode(b"hello")["body"]
    assert sub.decrypt(body) == b"hello"


def test_forged_signature_with_the_expected_key_is_rejected(
    push: PushService, vapid_key: VapidKey, tmp_path: Path
) -> None:
    """A JWT signed by another key but claiming ``k=<expected key>`` fails ES256 verification."""
    sub = push.new_subscription()
    forger = Vapid.from_file(make_vapid_key(tmp_path, "forger").pem_path)
    token = forger.sign({"sub": CONTACT, "aud": push.origin})["Authorization"].split(",k=")[0]
    headers = {"Authorization": f"{token},k={vapid_key.public_key}", "TTL": "60",
               "Content-Encoding": "aes128gcm"}
    body = WebPusher(sub.as_json()).encode(json.dumps(PAYLOAD).encode())["body"]
    with requests.post(sub.endpoint, data=body, headers=headers, timeout=5) as response:
        assert response.status_code == 403
    assert "signature does not verify" in (push.requests[0].reason or "")
