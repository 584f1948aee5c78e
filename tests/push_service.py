"""A real local Web Push service for tests (RFC 8030 push, RFC 8291 encryption, RFC 8292 VAPID).

Nothing is mocked: the app (through pywebpush) makes real HTTP requests to a
``ThreadingHTTPServer`` on 127.0.0.1. For every POST the service checks what a real push
service checks — the ``Authorization: vapid t=<JWT>, k=<key>`` header (ES256 signature, the
expected application server key, ``aud``/``exp``/``sub`` claims), ``TTL``, ``Urgency``,
``Topic``, ``Content-Encoding: aes128gcm`` and the 4096-byte body limit — and then does what
the browser would: decrypts the body with the subscription's private key and auth secret and
parses the JSON. Every request is recorded as a :class:`PushRequest`.

Typical use::

    with PushService() as push:
        push.expect_vapid_public_key(app_vapid_public_key)
        sub = push.new_subscription()
        push.answer(sub, 500)                 # the next request gets a 500, then 201s
        push.storm(sub, 503)                  # every request gets a 503 until calm(sub)
        push.storm(sub, 429, retry_after=3)   # ... or a 429 asking to wait 3 s
        push.stall(sub, 5)                    # answers to sub come 5 s late (a timeout)
        ... register sub.as_json() with the app, trigger a notification ...
        [delivery] = push.wait_for(1, subscription=sub)
        assert delivery.payload["title"] == "..."

Status codes for rejected requests: 401 no (or a non-``vapid``) Authorization, 403 invalid
VAPID (bad signature, wrong key, bad claims), 400 bad headers or undecryptable/non-JSON body,
411 no Content-Length, 413 body over 4096 bytes, 404 unknown endpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAX_BODY_BYTES = 4096
MAX_HOLD_SECONDS = 60
"""Largest encrypted body a push service accepts (RFC 8030 §7.2); larger gets 413."""

MAX_JWT_LIFETIME_SECONDS = 24 * 60 * 60
"""RFC 8292 §2: ``exp`` MUST NOT be more than 24 hours from the time of the request."""

URGENCIES = frozenset({"very-low", "low", "normal", "high"})
TOPIC_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
PUSH_PATH_PREFIX = "/push/"
MAX_READ_BYTES = 1024 * 1024


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (the encoding Web Push uses for keys and JWT parts)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strictly decode unpadded (or padded) base64url; raises ``ValueError`` on bad input."""
    stripped = text.rstrip("=")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64url: {exc}") from exc


def load_p256_public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    """Load an uncompressed P-256 point (65 bytes, 0x04 || X || Y); ``ValueError`` if not one."""
    if len(raw) != 65 or raw[0] != 0x04:
        raise ValueError(f"not an uncompressed P-256 point ({len(raw)} bytes)")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def uncompressed_point(key: ec.EllipticCurvePublicKey) -> bytes:
    """The 65-byte uncompressed encoding of a P-256 public key."""
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


@dataclass(frozen=True, eq=False)
class Subscription:
    """A synthetic browser push subscription: a P-256 key pair and a 16-byte auth secret."""

    endpoint_id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes

    @classmethod
    def generate(cls, origin: str) -> Subscription:
        """A fresh subscription whose endpoint is ``<origin>/push/<random id>``."""
        endpoint_id = secrets.token_urlsafe(16)
        return cls(
            endpoint_id=endpoint_id,
            endpoint=f"{origin}{PUSH_PATH_PREFIX}{endpoint_id}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=secrets.token_bytes(16),
        )

    @property
    def p256dh(self) -> str:
        """The public key as the browser exposes it: base64url uncompressed point, no padding."""
        return b64url_encode(uncompressed_point(self.private_key.public_key()))

    @property
    def auth(self) -> str:
        """The auth secret as the browser exposes it: base64url, no padding."""
        return b64url_encode(self.auth_secret)

    def as_json(self) -> dict[str, Any]:
        """Exactly the shape of the browser's ``PushSubscription.toJSON()``."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }

    def decrypt(self, body: bytes) -> bytes:
        """Decrypt an ``aes128gcm`` push body as the browser would (raises on failure)."""
        plaintext: bytes = http_ece.decrypt(
            body,
            private_key=self.private_key,
            auth_secret=self.auth_secret,
            version="aes128gcm",
        )
        return plaintext


@dataclass(frozen=True)
class PushRequest:
    """One request the push service received, whether accepted or not."""

    endpoint_id: str
    status: int
    verified: bool
    reason: str | None
    ttl: int | None
    urgency: str | None
    topic: str | None
    content_encoding: str | None
    claims: dict[str, Any] | None
    vapid_key: str | None
    payload: dict[str, Any] | None
    body_size: int
    headers: dict[str, str]
    arrived_monotonic: float
    arrived_at: float

    @property
    def accepted(self) -> bool:
        """Verified and answered ``201 Created``: a delivery the browser would show."""
        return self.verified and self.status == 201


@dataclass
class _Inspection:
    """What verification learned about a request so far (recorded even on rejection)."""

    endpoint_id: str
    headers: dict[str, str]
    body_size: int
    ttl: int | None = None
    urgency: str | None = None
    topic: str | None = None
    content_encoding: str | None = None
    claims: dict[str, Any] | None = None
    vapid_key: str | None = None
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Answer:
    """The HTTP response the handler writes."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _Rejected(Exception):
    """Verification failed: answer ``status`` and record ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def _parse_vapid_authorization(value: str | None) -> tuple[str, str]:
    """Split ``vapid t=<jwt>, k=<key>`` into ``(jwt, key)``; 401/403 if absent or malformed."""
    if not value:
        raise _Rejected(401, "missing Authorization header")
    scheme, _, params = value.strip().partition(" ")
    if scheme.lower() == "webpush":
        raise _Rejected(
            401, "legacy 'WebPush <jwt>' + Crypto-Key scheme (VAPID draft-01); "
            "RFC 8292 'vapid t=<jwt>, k=<key>' required")
    if scheme.lower() != "vapid":
        raise _Rejected(401, f"Authorization scheme {scheme!r} is not 'vapid'")
    parts: dict[str, str] = {}
    for item in params.split(","):
        name, sep, val = item.strip().partition("=")
        if sep:
            parts[name.strip().lower()] = val.strip()
    if not parts.get("t") or not parts.get("k"):
        raise _Rejected(403, f"vapid Authorization lacks t= or k=: {value!r}")
    return parts["t"], parts["k"]


def _verify_es256_jwt(token: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """Check an ES256 JWT signature (JOSE raw r||s) and return its claims; 403 if invalid."""
    pieces = token.split(".")
    if len(pieces) != 3:
        raise _Rejected(403, "JWT does not have three parts")
    try:
        header = json.loads(b64url_decode(pieces[0]))
        claims = json.loads(b64url_decode(pieces[1]))
        signature = b64url_decode(pieces[2])
    except ValueError as exc:
        raise _Rejected(403, f"JWT is not base64url JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise _Rejected(403, f"JWT alg is not ES256: {header!r}")
    if len(signature) != 64:
        raise _Rejected(403, f"ES256 signature must be 64 bytes, got {len(signature)}")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    signed = f"{pieces[0]}.{pieces[1]}".encode("ascii")
    try:
        public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise _Rejected(403, "JWT signature does not verify with the k= key") from exc
    if not isinstance(claims, dict):
        raise _Rejected(403, "JWT claims are not a JSON object")
    return claims


def _check_claims(claims: dict[str, Any], origin: str, now: float) -> None:
    """RFC 8292 §2: ``aud`` is the endpoint origin, ``exp`` within 24 h, ``sub`` a contact."""
    if claims.get("aud") != origin:
        raise _Rejected(403, f"JWT aud {claims.get('aud')!r} != endpoint origin {origin!r}")
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise _Rejected(403, f"JWT exp {exp!r} is not an integer")
    if exp <= now:
        raise _Rejected(403, f"JWT expired (exp {exp} <= now {int(now)})")
    if exp > now + MAX_JWT_LIFETIME_SECONDS:
        raise _Rejected(403, f"JWT exp {exp} is more than 24 h ahead of now {int(now)}")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
        raise _Rejected(403, f"JWT sub {sub!r} is not a mailto: or https: contact")


def _check_push_headers(headers: dict[str, str], inspection: _Inspection) -> None:
    """RFC 8030 TTL/Urgency/Topic and RFC 8291 Content-Encoding; 400 if wrong."""
    ttl = headers.get("ttl")
    if ttl is None or not ttl.strip().isdigit():
        raise _Rejected(400, f"TTL header missing or not a non-negative integer: {ttl!r}")
    inspection.ttl = int(ttl)
    urgency = headers.get("urgency")
    inspection.urgency = urgency
    if urgency is not None and urgency not in URGENCIES:
        raise _Rejected(400, f"Urgency {urgency!r} not one of {sorted(URGENCIES)}")
    topic = headers.get("topic")
    inspection.topic = topic
    if topic is not None and not TOPIC_PATTERN.fullmatch(topic):
        raise _Rejected(400, f"Topic {topic!r} is not 1-32 base64url characters")
    encoding = headers.get("content-encoding")
    inspection.content_encoding = encoding
    if encoding is None or encoding.strip().lower() != "aes128gcm":
        raise _Rejected(400, f"Content-Encoding {encoding!r} is not aes128gcm")


def _decrypt_payload(subscription: Subscription, body: bytes) -> dict[str, Any]:
    """Decrypt and parse the body as the service worker would; 413/400 if impossible."""
    if len(body) > MAX_BODY_BYTES:
        raise _Rejected(413, f"body is {len(body)} bytes, more than {MAX_BODY_BYTES}")
    if not body:
        raise _Rejected(400, "empty body: no payload to show")
    try:
        plaintext = subscription.decrypt(body)
    except Exception as exc:  # http_ece raises ECEException, struct.error, ValueError...
        raise _Rejected(400, f"cannot decrypt body for this subscription: {exc!r}") from exc
    try:
        payload = json.loads(plaintext)
    except ValueError as exc:
        raise _Rejected(400, f"decrypted payload is not JSON: {plaintext[:80]!r}") from exc
    if not isinstance(payload, dict):
        raise _Rejected(400, f"decrypted payload is not a JSON object: {payload!r}")
    return payload


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, hands it to the :class:`PushService`, writes its answer."""

    server: _Server
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        headers = {name.lower(): value for name, value in self.headers.items()}
        if length is None or not length.isdigit() or int(length) > MAX_READ_BYTES:
            answer = self.server.push_service._refuse_unread(self.path, headers, length)
        else:
            body = self.rfile.read(int(length))
            answer = self.server.push_service._process(self.path, headers, body)
        self.server.push_service._released.wait(MAX_HOLD_SECONDS)  # a hung push service
        self.server.push_service._stall(self.path)  # one slow endpoint
        self._write(answer)

    def _write(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no per-request lines on stderr."""


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that knows its :class:`PushService`."""

    daemon_threads = True

    def __init__(self, push_service: PushService) -> None:
        self.push_service = push_service
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up; real failures are recorded per request."""


class PushService:
    """A local push service on 127.0.0.1 that verifies, decrypts and records Web Push requests.

    Use as a context manager; the port is bound on enter and released on exit.
    """

    def __init__(self, vapid_public_key: str | None = None) -> None:
        self._lock = threading.Condition()
        # While held, answers wait (after the request is recorded): a hung push service.
        self._released = threading.Event()
        self._released.set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._subscriptions: dict[str, Subscription] = {}
        self._scripts: dict[str, deque[tuple[int, int | str | None]]] = {}
        self._storms: dict[str, tuple[int, int | str | None]] = {}
        self._stalls: dict[str, float] = {}
        self._closing = threading.Event()
        self._requests: list[PushRequest] = []
        self._expected_key: bytes | None = None
        if vapid_public_key is not None:
            self.expect_vapid_public_key(vapid_public_key)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> PushService:
        if self._server is not None:
            raise RuntimeError("PushService is already running")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"push-service-{self.host}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._released.set()  # never leave a held answer hanging
        self._closing.set()  # nor a stalled one
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` of the running service."""
        if self._server is None:
            raise RuntimeError("PushService is not running: use it as a context manager")
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: what a valid JWT's ``aud`` must be."""
        return f"http://{self.host}"

    @property
    def allowed_entry(self) -> str:
        """Its PUSH_ALLOWED_HOSTS entry: plain http to this one address only."""
        return f"http://{self.host}"

    # -- set-up ------------------------------------------------------------------------------

    def new_subscription(self) -> Subscription:
        """A fresh subscription whose endpoint is on this service."""
        subscription = Subscription.generate(self.origin)
        with self._lock:
            self._subscriptions[subscription.endpoint_id] = subscription
        return subscription

    def expect_vapid_public_key(self, key_b64url: str) -> None:
        """Require every request to be VAPID-signed by this application server public key.

        ``key_b64url`` is the base64url uncompressed P-256 point (what the app serves at
        ``GET /api/v1/push/vapid-public-key``); ``ValueError`` if it is not one.
        """
        raw = b64url_decode(key_b64url)
        load_p256_public_key(raw)
        with self._lock:
            self._expected_key = raw

    def hold(self) -> None:
        """Record requests but keep their answers back until release() (a hung service)."""
        self._released.clear()

    def release(self) -> None:
        """Answer everything held, and answer at once from now on."""
        self._released.set()

    def answer(
        self, subscription: Subscription, *statuses: int, retry_after: int | None = None
    ) -> None:
        """Queue HTTP statuses for the next verified requests to ``subscription``'s endpoint.

        Once the queue is used up the service answers ``201 Created`` again. With
        ``retry_after`` every queued answer carries ``Retry-After: <retry_after>``.
        """
        for status in statuses:
            if not 200 <= status <= 599:
                raise ValueError(f"not an HTTP answer status: {status}")
        with self._lock:
            queue = self._scripts.setdefault(subscription.endpoint_id, deque())
            queue.extend((status, retry_after) for status in statuses)

    def storm(
        self, subscription: Subscription, status: int, *, retry_after: int | str | None = None
    ) -> None:
        """Answer every verified request to ``subscription``'s endpoint with ``status`` (with
        ``Retry-After: <retry_after>``: seconds or an HTTP date) until :meth:`calm`; queued
        :meth:`answer` statuses come first."""
        if not 400 <= status <= 599:
            raise ValueError(f"not an error status: {status}")
        with self._lock:
            self._storms[subscription.endpoint_id] = (status, retry_after)

    def stall(self, subscription: Subscription, seconds: float) -> None:
        """Answer requests to ``subscription``'s endpoint ``seconds`` late (after recording
        them): a slow endpoint, or with ``seconds`` past the sender's timeout a hung one."""
        with self._lock:
            self._stalls[subscription.endpoint_id] = seconds

    def calm(self, subscription: Subscription) -> None:
        """End ``subscription``'s storm and stall: it answers ``201`` at once again."""
        with self._lock:
            self._storms.pop(subscription.endpoint_id, None)
            self._stalls.pop(subscription.endpoint_id, None)

    # -- inspection --------------------------------------------------------------------------

    def attempts(self, subscription: Subscription) -> list[PushRequest]:
        """Every request to ``subscription``'s endpoint, accepted or not, in arrival order."""
        with self._lock:
            return [r for r in self._requests if r.endpoint_id == subscription.endpoint_id]

    @property
    def requests(self) -> list[PushRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def received(self, subscription: Subscription | None = None) -> list[PushRequest]:
        """Accepted deliveries (verified and answered 201), optionally for one subscription."""
        with self._lock:
            return self._accepted(subscription)

    def wait_for(
        self, count: int, timeout: float = 10, subscription: Subscription | None = None
    ) -> list[PushRequest]:
        """Block until ``count`` accepted deliveries arrived; return all accepted so far.

        Raises ``AssertionError`` listing every request that did arrive on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(accepted := self._accepted(subscription)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._timeout_message(count, timeout, subscription))
                self._lock.wait(remaining)
            return accepted

    def _accepted(self, subscription: Subscription | None) -> list[PushRequest]:
        """Accepted requests; caller holds the lock."""
        return [
            request for request in self._requests
            if request.accepted
            and (subscription is None or request.endpoint_id == subscription.endpoint_id)
        ]

    def _timeout_message(
        self, count: int, timeout: float, subscription: Subscription | None
    ) -> str:
        """Explain a ``wait_for`` timeout with everything that did arrive; caller holds the lock."""
        target = f" for endpoint {subscription.endpoint_id}" if subscription else ""
        got = len(self._accepted(subscription))
        lines = [f"expected {count} accepted push deliveries{target} within {timeout}s, "
                 f"got {got}; {len(self._requests)} request(s) arrived in total:"]
        lines += [
            f"  - endpoint {r.endpoint_id}: {r.status} "
            f"{'verified' if r.verified else 'rejected'}"
            f"{': ' + r.reason if r.reason else ''}; payload={r.payload!r}"
            for r in self._requests
        ]
        return "\n".join(lines)

    # -- request processing (called from handler threads) ------------------------------------

    def _process(self, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        """Verify one push request, record it and decide the answer."""
        arrived_monotonic, arrived_at = time.monotonic(), time.time()
        reason: str | None
        inspection = _Inspection(
            endpoint_id=path.removeprefix(PUSH_PATH_PREFIX), headers=headers,
            body_size=len(body))
        try:
            subscription = self._subscription_for(path)
            self._verify(subscription, headers, body, inspection, arrived_at)
        except _Rejected as rejection:
            answer = _Answer(rejection.status, body=rejection.reason.encode())
            verified, reason = False, rejection.reason
        else:
            answer = self._scripted_answer(subscription)
            verified, reason = True, None
        self._record(inspection, answer.status, verified, reason, arrived_monotonic, arrived_at)
        return answer

    def _refuse_unread(
        self, path: str, headers: dict[str, str], length: str | None
    ) -> _Answer:
        """Answer a request whose body was not read (no or huge Content-Length)."""
        if length is None or not length.isdigit():
            status, reason = 411, f"Content-Length missing or invalid: {length!r}"
        else:
            status, reason = 413, f"body is {length} bytes, more than {MAX_BODY_BYTES}"
        inspection = _Inspection(
            endpoint_id=path.removeprefix(PUSH_PATH_PREFIX), headers=headers, body_size=0)
        self._record(inspection, status, False, reason, time.monotonic(), time.time())
        return _Answer(status, body=reason.encode())

    def _subscription_for(self, path: str) -> Subscription:
        """The subscription a path belongs to; 404 if none."""
        endpoint_id = path.removeprefix(PUSH_PATH_PREFIX)
        with self._lock:
            subscription = self._subscriptions.get(endpoint_id)
        if not path.startswith(PUSH_PATH_PREFIX) or subscription is None:
            raise _Rejected(404, f"no subscription at {path!r}")
        return subscription

    def _verify(
        self,
        subscription: Subscription,
        headers: dict[str, str],
        body: bytes,
        inspection: _Inspection,
        now: float,
    ) -> None:
        """All checks in the order a push service applies them; raises :class:`_Rejected`."""
        self._verify_vapid(headers.get("authorization"), inspection, now)
        _check_push_headers(headers, inspection)
        inspection.payload = _decrypt_payload(subscription, body)

    def _verify_vapid(self, authorization: str | None, inspection: _Inspection, now: float) -> None:
        """RFC 8292: signature by ``k``, ``k`` is the expected key, valid claims."""
        token, key_text = _parse_vapid_authorization(authorization)
        inspection.vapid_key = key_text
        try:
            key_raw = b64url_decode(key_text)
            public_key = load_p256_public_key(key_raw)
        except ValueError as exc:
            raise _Rejected(403, f"k= is not a P-256 public key: {exc}") from exc
        inspection.claims = _verify_es256_jwt(token, public_key)
        with self._lock:
            expected = self._expected_key
        if expected is None:
            raise _Rejected(403, "no VAPID key expected: call expect_vapid_public_key() first")
        if key_raw != expected:
            raise _Rejected(403, f"k= {key_text} is not the expected application server key "
                                 f"{b64url_encode(expected)}")
        _check_claims(inspection.claims, self.origin, now)

    def _scripted_answer(self, subscription: Subscription) -> _Answer:
        """The next queued answer for this endpoint, else ``201 Created`` with a Location."""
        with self._lock:
            queue = self._scripts.get(subscription.endpoint_id)
            storm = self._storms.get(subscription.endpoint_id, (201, None))
            status, retry_after = queue.popleft() if queue else storm
        headers: dict[str, str] = {}
        if status == 201:
            headers["Location"] = f"{self.origin}/message/{secrets.token_urlsafe(12)}"
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return _Answer(status, headers)

    def _stall(self, path: str) -> None:
        """Wait as long as the endpoint at ``path`` is told to stall (not past exit)."""
        with self._lock:
            seconds = self._stalls.get(path.removeprefix(PUSH_PATH_PREFIX), 0.0)
        if seconds > 0:
            self._closing.wait(seconds)

    def _record(
        self,
        inspection: _Inspection,
        status: int,
        verified: bool,
        reason: str | None,
        arrived_monotonic: float,
        arrived_at: float,
    ) -> None:
        """Store a :class:`PushRequest` and wake ``wait_for`` callers."""
        request = PushRequest(
            endpoint_id=inspection.endpoint_id, status=status, verified=verified,
            reason=reason, ttl=inspection.ttl, urgency=inspection.urgency,
            topic=inspection.topic, content_encoding=inspection.content_encoding,
            claims=inspection.claims, vapid_key=inspection.vapid_key,
            payload=inspection.payload, body_size=inspection.body_size,
            headers=inspection.headers, arrived_monotonic=arrived_monotonic,
            arrived_at=arrived_at)
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()
