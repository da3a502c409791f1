import subprocess
import sys
from pathlib import Path

import pytest

from app.config import DEV_SECRET_KEY, Config, ConfigError, database_uri

ROOT = Path(__file__).resolve().parents[2]


def test_production_refuses_to_start_without_a_secret_key():
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        Config({"BILLOPS_ENV": "production"})


def test_production_is_the_default_environment():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Config({})


def test_production_refuses_the_public_development_key():
    with pytest.raises(ConfigError, match="development key"):
        Config({"BILLOPS_ENV": "production", "SECRET_KEY": DEV_SECRET_KEY})


@pytest.mark.parametrize("secret", ["x", "s" * 31])
def test_production_refuses_a_short_secret_key(secret):
    with pytest.raises(ConfigError, match="SECRET_KEY must be at least 32 characters"):
        Config({"BILLOPS_ENV": "production", "SECRET_KEY": secret})


def test_development_runs_without_a_secret_key_and_cookies_work_over_http():
    config = Config({"BILLOPS_ENV": "development"})
    assert config.SECRET_KEY == DEV_SECRET_KEY
    assert config.SESSION_COOKIE_SECURE is False


def test_production_cookies_are_secure_httponly_and_lax():
    config = Config({"SECRET_KEY": "s" * 40})
    assert (config.SESSION_COOKIE_SECURE, config.SESSION_COOKIE_HTTPONLY, config.SESSION_COOKIE_SAMESITE) == (
        True,
        True,
        "Lax",
    )


def test_defaults_follow_the_product_contract(tmp_path):
    config = Config({"BILLOPS_ENV": "development", "BILLOPS_INSTANCE_PATH": str(tmp_path)})
    assert config.SQLALCHEMY_DATABASE_URI == f"sqlite:///{tmp_path / 'billops.db'}"
    assert config.PLANS_PROVIDER == "catalog"
    assert config.PLANS_CATALOG.is_file()
    assert config.GRACE_PERIOD_DAYS == 7
    assert (config.LOG_LEVEL, config.LOG_FORMAT) == ("INFO", "text")
    assert config.MAX_CONTENT_LENGTH == 1024 * 1024
    assert config.ADMIN_KEY is None
    assert config.WEBHOOK_SECRETS == []
    assert config.WEBHOOK_PROCESSING == "inline"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgres://u:p@db:5432/billops", "postgresql+psycopg://u:p@db:5432/billops"),
        ("postgresql://u@db/billops", "postgresql+psycopg://u@db/billops"),
        ("sqlite:////var/lib/billops.db", "sqlite:////var/lib/billops.db"),
    ],
)
def test_database_urls_use_the_psycopg3_driver(url, expected, tmp_path):
    assert database_uri(url, tmp_path) == expected


def test_every_webhook_secret_is_kept_for_rotation():
    config = Config({"BILLOPS_ENV": "test", "WEBHOOK_SECRET": "whsec_old, whsec_new,"})
    assert config.WEBHOOK_SECRETS == ["whsec_old", "whsec_new"]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"BILLOPS_ENV": "staging"}, "BILLOPS_ENV must be one of"),
        ({"BILLOPS_ENV": "test", "GRACE_PERIOD_DAYS": "seven"}, "GRACE_PERIOD_DAYS must be a whole number"),
        ({"BILLOPS_ENV": "test", "GRACE_PERIOD_DAYS": "0"}, "GRACE_PERIOD_DAYS must be at least 1"),
        ({"BILLOPS_ENV": "test", "PLANS_PROVIDER": "paddle"}, "PLANS_PROVIDER must be"),
        ({"BILLOPS_ENV": "test", "LOG_FORMAT": "xml"}, "LOG_FORMAT must be"),
        ({"BILLOPS_ENV": "test", "LOG_LEVEL": "chatty"}, "LOG_LEVEL must be one of"),
        ({"BILLOPS_ENV": "development", "ADMIN_KEY": "hunter2"}, "ADMIN_KEY must be at least 32 characters"),
        ({"BILLOPS_ENV": "test", "TRUSTED_PROXY_COUNT": "-1"}, "TRUSTED_PROXY_COUNT must be at least 0"),
        ({"BILLOPS_ENV": "test", "WEBHOOK_PROCESSING": "Queue"}, "WEBHOOK_PROCESSING must be 'inline' .* or 'queue'"),
    ],
)
def test_invalid_settings_stop_start_up_with_a_clear_message(env, message):
    with pytest.raises(ConfigError, match=message):
        Config(env)


def _flask(tmp_path, **env):
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "routes"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_flask_command_refuses_to_start_in_production_without_a_secret_key(tmp_path):
    result = _flask(tmp_path, BILLOPS_ENV="production")  # no .env in tmp_path, whatever the checkout holds
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("billops cannot start: SECRET_KEY is not set")
    assert "Traceback" not in result.stderr


def test_webhook_processing_accepts_queue():
    assert Config({"BILLOPS_ENV": "test", "WEBHOOK_PROCESSING": "queue"}).WEBHOOK_PROCESSING == "queue"


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path):
    (tmp_path / ".env").write_text("BILLOPS_ENV=production\nSECRET_KEY=from-the-dotenv-file-0123456789abcdefghij\n")
    result = _flask(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert result.returncode == 0, result.stderr
    assert "/healthz" in result.stdout


def test_flask_skip_dotenv_turns_the_working_directorys_dotenv_off_too(tmp_path):
    (tmp_path / ".env").write_text("BILLOPS_ENV=production\n")  # production without a SECRET_KEY cannot start
    assert _flask(tmp_path).returncode == 1
    result = _flask(tmp_path, BILLOPS_ENV="development", FLASK_SKIP_DOTENV="1")
    assert result.returncode == 0, result.stderr


@pytest.fixture
def checkout_below_a_stray_dotenv(tmp_path):
    (tmp_path / ".env").write_text("BILLOPS_ENV=development\n")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    return checkout


def test_a_dotenv_file_in_a_parent_directory_is_ignored_by_wsgi(checkout_below_a_stray_dotenv):
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=checkout_below_a_stray_dotenv,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1  # production by default: the parent's development setting did not apply
    assert result.stderr.strip().splitlines()[-1].startswith("billops cannot start: SECRET_KEY is not set")


def test_the_flask_command_refuses_to_start_on_a_parent_directorys_dotenv(checkout_below_a_stray_dotenv):
    result = _flask(checkout_below_a_stray_dotenv)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("billops cannot start: the flask command loaded") and "FLASK_SKIP_DOTENV=1" in last
    skipped = _flask(checkout_below_a_stray_dotenv, FLASK_SKIP_DOTENV="1")
    assert skipped.stderr.strip().splitlines()[-1].startswith("billops cannot start: SECRET_KEY is not set")


def test_db_pool_size_sizes_the_postgresql_pool():
    config = Config({"BILLOPS_ENV": "development", "DATABASE_URL": "postgresql://db/billops", "DB_POOL_SIZE": "12"})
    options = config.SQLALCHEMY_ENGINE_OPTIONS
    assert (options["pool_size"], options["max_overflow"]) == (12, 12)
    assert Config({"BILLOPS_ENV": "development", "DATABASE_URL": "postgresql://db/b"}).DB_POOL_SIZE == 8
    with pytest.raises(ConfigError, match="DB_POOL_SIZE must be at least 1"):
        Config({"BILLOPS_ENV": "development", "DB_POOL_SIZE": "0"})
