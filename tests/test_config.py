"""Configuration comes from the environment only, and fails loudly."""

from __future__ import annotations

import pytest

from reporting.config import ConfigError, Settings

LONG = "k" * 40


def test_secret_key_is_required_outside_demo():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Settings.from_env({})


def test_the_default_database_is_in_instance():
    settings = Settings.from_env({"SECRET_KEY": LONG})
    assert settings.database_url.endswith("instance/besik.db")


def test_demo_runs_without_a_secret_key_on_a_random_key_of_its_own(tmp_path):
    settings = Settings.from_env({"BESIK_ENV": "demo"}, instance=tmp_path)
    assert settings.is_demo
    assert settings.database_url == f"sqlite:///{tmp_path / 'besik.db'}"
    assert len(settings.secret_key) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    again = Settings.from_env({"BESIK_ENV": "demo"}, instance=tmp_path)
    assert again.secret_key == settings.secret_key  # sessions survive a restart
    other = Settings.from_env({"BESIK_ENV": "demo"}, instance=tmp_path / "other")
    assert other.secret_key != settings.secret_key  # no two demos share a key


def test_production_refuses_a_short_secret_key():
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Settings.from_env({"SECRET_KEY": "x" * 31})
    assert Settings.from_env({"SECRET_KEY": "x" * 32}).secret_key == "x" * 32


def test_tokens_live_token_days():
    assert Settings.from_env({"SECRET_KEY": LONG, "TOKEN_DAYS": "7"}).token_days == 7
    with pytest.raises(ConfigError, match="TOKEN_DAYS"):
        Settings.from_env({"SECRET_KEY": LONG, "TOKEN_DAYS": "0"})


def test_environment_values_are_read():
    settings = Settings.from_env({
        "SECRET_KEY": LONG, "DATABASE_URL": "postgresql+psycopg://h/db",
        "PUSH_ALLOWED_HOSTS": "127.0.0.1:9999, fcm.googleapis.com",
        "WORKER_POLL_SECONDS": "0.5", "VAPID_SUBJECT": "https://besik.example"})
    assert settings.database_url == "postgresql+psycopg://h/db"
    assert settings.push_allowed_hosts == ("127.0.0.1:9999", "fcm.googleapis.com")
    assert settings.worker_poll_seconds == 0.5
    assert not settings.is_demo


@pytest.mark.parametrize("env", [
    {"SECRET_KEY": LONG, "BESIK_ENV": "staging"},
    {"SECRET_KEY": LONG, "VAPID_SUBJECT": "alerts@besik.example"},
    {"SECRET_KEY": LONG, "WORKER_POLL_SECONDS": "often"},
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
