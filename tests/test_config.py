"""Configuration comes from the environment only, and fails loudly."""

from __future__ import annotations

import pytest

from reporting.config import ConfigError, Settings


def test_secret_key_is_required_outside_demo():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Settings.from_env({})


def test_demo_runs_without_a_secret_key():
    settings = Settings.from_env({"BESIK_ENV": "demo"})
    assert settings.is_demo
    assert settings.database_url.endswith("instance/besik.db")


def test_environment_values_are_read():
    settings = Settings.from_env({
        "SECRET_KEY": "s", "DATABASE_URL": "postgresql+psycopg://h/db",
        "PUSH_ALLOWED_HOSTS": "127.0.0.1:9999, fcm.googleapis.com",
        "WORKER_POLL_SECONDS": "0.5", "VAPID_SUBJECT": "https://besik.example"})
    assert settings.database_url == "postgresql+psycopg://h/db"
    assert settings.push_allowed_hosts == ("127.0.0.1:9999", "fcm.googleapis.com")
    assert settings.worker_poll_seconds == 0.5
    assert not settings.is_demo


@pytest.mark.parametrize("env", [
    {"SECRET_KEY": "s", "BESIK_ENV": "staging"},
    {"SECRET_KEY": "s", "VAPID_SUBJECT": "alerts@besik.example"},
    {"SECRET_KEY": "s", "WORKER_POLL_SECONDS": "often"},
])
def test_bad_values_are_refused_with_a_clear_error(env):
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_the_app_refuses_to_start_without_a_secret_key(monkeypatch):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "BESIK_ENV": "production"}
    result = subprocess.run([sys.executable, "-c", "import app"], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr
