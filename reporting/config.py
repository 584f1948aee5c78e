"""Settings, read once from the environment: the only module that looks at os.environ."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# The public browser push services (Chrome/FCM, Firefox/Mozilla, Safari/Apple, Edge/WNS,
# whose endpoints are spread over many wns2-* hosts).
DEFAULT_PUSH_HOSTS = (
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "web.push.apple.com",
    "*.notify.windows.com",
)


MIN_SECRET_BYTES = 32


class ConfigError(RuntimeError):
    """The environment does not describe a runnable Besik."""


@dataclass(frozen=True)
class Settings:
    """Typed, immutable configuration."""

    database_url: str
    secret_key: str
    env: str = "production"
    instance_path: Path = REPO_ROOT / "instance"
    vapid_private_key_file: Path = REPO_ROOT / "instance" / "vapid_private.pem"
    vapid_subject: str = "mailto:alerts@besik.example"
    # The key of the daily audit digests: outside the database, so that whoever can rewrite
    # the log cannot also re-sign it.
    audit_key_file: Path = REPO_ROOT / "instance" / "audit.key"
    push_allowed_hosts: tuple[str, ...] = DEFAULT_PUSH_HOSTS
    worker_poll_seconds: float = 1.0
    session_idle_seconds: int = 30 * 60
    # However active, a browser session ends this long after sign-in.
    session_max_seconds: int = 12 * 3600
    token_days: int = 90
    max_body_bytes: int = 64 * 1024

    @property
    def audit_digest_log(self) -> Path:
        """The append-only file the worker writes each day's audit digest to."""
        return self.instance_path / "audit-digests.log"

    @property
    def token_lifetime(self) -> timedelta:
        """How long an API bearer token works after it was issued."""
        return timedelta(days=self.token_days)

    @property
    def is_demo(self) -> bool:
        """Demo mode: seed data allowed, cookies not marked Secure (plain http on localhost)."""
        return self.env == "demo"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ,
                 instance: Path = REPO_ROOT / "instance") -> Settings:
        """Build settings from environment variables; fail loudly on anything missing."""
        env = environ.get("BESIK_ENV", "production")
        if env not in ("production", "demo"):
            raise ConfigError(f"BESIK_ENV must be 'production' or 'demo', not {env!r}")
        secret = environ.get("SECRET_KEY", "")
        if not secret:
            if env != "demo":
                raise ConfigError("SECRET_KEY is required (or set BESIK_ENV=demo for the demo)")
            secret = _demo_secret(instance)
        elif env != "demo" and len(secret.encode()) < MIN_SECRET_BYTES:
            # A short key can be guessed offline from one signed cookie, then sessions forged.
            raise ConfigError(f"SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes")
        try:
            token_days = int(environ.get("TOKEN_DAYS", "90"))
        except ValueError as exc:
            raise ConfigError("TOKEN_DAYS must be a whole number of days") from exc
        if token_days < 1:
            raise ConfigError("TOKEN_DAYS must be at least 1")
        subject = environ.get("VAPID_SUBJECT", "mailto:alerts@besik.example")
        if not subject.startswith(("mailto:", "https:")):
            raise ConfigError("VAPID_SUBJECT must be a mailto: or https: URL")
        hosts = environ.get("PUSH_ALLOWED_HOSTS")
        try:
            poll = float(environ.get("WORKER_POLL_SECONDS", "1"))
        except ValueError as exc:
            raise ConfigError("WORKER_POLL_SECONDS must be a number") from exc
        return cls(
            database_url=environ.get("DATABASE_URL", f"sqlite:///{instance / 'besik.db'}"),
            secret_key=secret,
            env=env,
            instance_path=instance,
            vapid_private_key_file=Path(
                environ.get("VAPID_PRIVATE_KEY_FILE", str(instance / "vapid_private.pem"))
            ),
            vapid_subject=subject,
            audit_key_file=Path(environ.get("AUDIT_KEY_FILE", str(instance / "audit.key"))),
            push_allowed_hosts=(
                tuple(h.strip().lower() for h in hosts.split(",") if h.strip())
                if hosts is not None
                else DEFAULT_PUSH_HOSTS
            ),
            worker_poll_seconds=poll,
            token_days=token_days,
        )


def _demo_secret(instance: Path) -> str:
    """The demo's own random key, kept in instance/: never a published constant, which
    would let anyone forge an admin's session on a demo pilot."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as key_file:
            key_file.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
