"""The only module that speaks Web Push (RFC 8030/8291/8292): VAPID keys and one send()."""

from __future__ import annotations

import base64
import email.utils
import functools
import json
import math
import threading
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from . import clock

TTL_SECONDS = 24 * 3600  # a phone that is off for a night still gets the alert
TIMEOUT_SECONDS = 10  # a hung push service must not hang the worker
MAX_PAYLOAD_BYTES = 3000  # 3993 is the real limit of one message; keep a margin


def ensure_vapid_key(path: Path) -> bool:
    """Create the VAPID private key at `path` when absent; True when one was created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    vapid = Vapid()
    vapid.generate_keys()
    vapid.save_key(str(path))
    path.chmod(0o600)
    return True


@functools.cache
def load_vapid(path: str) -> Vapid:
    """The VAPID signing key (read once per process)."""
    if not Path(path).is_file():
        # py_vapid would quietly create a new key here: a key nobody's browser knows.
        raise FileNotFoundError(path)
    return Vapid.from_file(path)


def public_key_b64(path: str) -> str:
    """The application server key browsers subscribe with: base64url, uncompressed point."""
    point = load_vapid(path).public_key.public_bytes(Encoding.X962,
                                                     PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(point).decode().rstrip("=")


def endpoint_host(endpoint: str) -> str:
    """host[:port] of an endpoint, lower-cased, as PUSH_ALLOWED_HOSTS lists them."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def is_allowed(endpoint: str, allowed: tuple[str, ...]) -> bool:
    """Only post to known push services: the endpoint is user input (no SSRF).

    An entry is `host`, `host:port` or `*.suffix` (https only), or `http://host:port`, which
    allows plain http to that one address (a local push service in tests)."""
    try:
        parts = urlsplit(endpoint)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a malformed IPv6 host or an impossible port
        return False
    if not host or parts.username or parts.password or parts.scheme not in ("https", "http"):
        return False
    return any(_matches(entry, parts.scheme, host, port) for entry in allowed)


def _matches(entry: str, scheme: str, host: str, port: int | None) -> bool:
    if entry.startswith("http://"):
        return scheme == "http" and port is not None and entry[7:] == f"{host}:{port}"
    if scheme != "https":
        return False
    pattern, _, entry_port = entry.partition(":")
    if (str(port) if port is not None else "") != entry_port and not (
            port == 443 and not entry_port):
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:]
    return host == pattern


class _NoRedirects(requests.Session):
    """A push service answers; it never sends us elsewhere: a redirect from an allowed host
    to an internal address would be server-side request forgery."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        return super().request(*args, **kwargs)


_sessions = threading.local()


def _session() -> requests.Session:
    # One per thread: connections to a push service are reused from message to message.
    if not hasattr(_sessions, "session"):
        _sessions.session = _NoRedirects()
    session: requests.Session = _sessions.session
    return session


@dataclass(frozen=True)
class SendResult:
    """What the push service answered: a status, or a network error."""

    status_code: int | None
    retry_after: int | None = None
    error: str | None = None

    @property
    def is_delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def is_gone(self) -> bool:
        """404/410: the browser unsubscribed; the subscription must be removed."""
        return self.status_code in (404, 410)

    @property
    def is_retryable(self) -> bool:
        """Network errors, 429 and 5xx: the service will recover."""
        return self.status_code is None or self.status_code == 429 or self.status_code >= 500


def send(endpoint: str, p256dh: str, auth: str, payload: dict[str, Any], *,
         vapid_key_path: str, subject: str, topic: str | None = None) -> SendResult:
    """Encrypt `payload` for one subscription and post it with a VAPID signature."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if len(data.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError("push payload too large")
    headers = {"Urgency": "high"}
    if topic:
        headers["Topic"] = topic
    try:
        response = webpush(
            subscription_info={"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}},
            data=data,
            vapid_private_key=load_vapid(vapid_key_path),
            # pywebpush writes aud and exp into this dict: a fresh one for every call.
            vapid_claims={"sub": subject},
            ttl=TTL_SECONDS,
            timeout=TIMEOUT_SECONDS,
            headers=headers,
            requests_session=_session(),
        )
    except WebPushException as exc:
        response = exc.response
        if response is None:
            return SendResult(None, error=str(exc)[:500])
        return SendResult(response.status_code, _retry_after(response.headers),
                          error=(response.text or str(exc))[:500])
    except requests.RequestException as exc:
        return SendResult(None, error=f"{type(exc).__name__}: {exc}"[:500])
    return SendResult(getattr(response, "status_code", 201))


def _retry_after(headers: Any) -> int | None:
    """Retry-After in seconds: delay-seconds or an HTTP date (RFC 9110 §10.2.3); None when
    absent or unreadable (our own backoff applies)."""
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0, math.ceil((when - clock.now()).total_seconds()))
