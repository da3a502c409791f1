"""Settings read from the environment (PRODUCT.md, "Configuration")."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CATALOG = PROJECT_ROOT / "app" / "data" / "plans.json"
DEV_SECRET_KEY = "billops-development-key-not-for-production"
ENVIRONMENTS = ("development", "test", "production")
ONE_MIB = 1024 * 1024
MIN_ADMIN_KEY_LENGTH = 32
MIN_SECRET_KEY_LENGTH = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# inline: the receiver processes each webhook in the request; queue: it stores and acknowledges, workers process.
WEBHOOK_PROCESSING_MODES = ("inline", "queue")
MIN_AUDIT_KEY_LENGTH = 32
# Fixed label of the audit key derived from SECRET_KEY when AUDIT_KEY is unset (changing it breaks every row).
AUDIT_KEY_LABEL = b"billops audit chain key v1"


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the app refuses to start."""


def database_uri(url: str | None, instance_path: Path) -> str:
    """Normalise DATABASE_URL for SQLAlchemy with the psycopg 3 driver."""
    if not url:
        return f"sqlite:///{instance_path / 'billops.db'}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def audit_keys(value: str | None, secret_key: str) -> list[str]:
    """AUDIT_KEY's keys, the signing one first; unset, one key derived from SECRET_KEY (never SECRET_KEY itself)."""
    keys = [key.strip() for key in (value or "").split(",") if key.strip()]
    if not keys:
        return [derived_audit_key(secret_key)]
    if any(len(key) < MIN_AUDIT_KEY_LENGTH for key in keys):
        raise ConfigError(
            f"every key in AUDIT_KEY must be at least {MIN_AUDIT_KEY_LENGTH} characters; use random values "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')."
        )
    return keys


def derived_audit_key(secret_key: str) -> str:
    """The audit key used when AUDIT_KEY is unset: HMAC-SHA256 of a fixed label under SECRET_KEY."""
    return hmac.new(secret_key.encode(), AUDIT_KEY_LABEL, hashlib.sha256).hexdigest()


class Config:
    """Every setting, taken from `environ` (the process environment by default)."""

    TESTING = False

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.BILLOPS_ENV = env.get("BILLOPS_ENV", "production")
        if self.BILLOPS_ENV not in ENVIRONMENTS:
            raise ConfigError(f"BILLOPS_ENV must be one of {', '.join(ENVIRONMENTS)}, not {self.BILLOPS_ENV!r}.")
        self.DEBUG = False
        self.SECRET_KEY = self._secret_key(env.get("SECRET_KEY"))
        self.INSTANCE_PATH = Path(env.get("BILLOPS_INSTANCE_PATH", PROJECT_ROOT / "instance"))
        self.SQLALCHEMY_DATABASE_URI = database_uri(env.get("DATABASE_URL"), self.INSTANCE_PATH)
        self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
        # Connections per process (docs/deployment.md): at least gunicorn's --threads, so no request thread waits
        # for a connection; overflow covers the worker's and a streamed export's second session.
        self.DB_POOL_SIZE = self._int_setting(env, "DB_POOL_SIZE", 8)
        if self.SQLALCHEMY_DATABASE_URI.startswith("postgresql"):
            # Pinged only after an idle spell (extensions.ping_idle_connections), not at every checkout.
            self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_size": self.DB_POOL_SIZE, "max_overflow": self.DB_POOL_SIZE}
        self.ADMIN_KEY = env.get("ADMIN_KEY") or None
        if self.ADMIN_KEY and len(self.ADMIN_KEY) < MIN_ADMIN_KEY_LENGTH:
            raise ConfigError(
                f"ADMIN_KEY must be at least {MIN_ADMIN_KEY_LENGTH} characters; use a random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')."
            )
        self.AUDIT_KEYS = audit_keys(env.get("AUDIT_KEY"), self.SECRET_KEY)
        self.WEBHOOK_SECRETS = [s.strip() for s in env.get("WEBHOOK_SECRET", "").split(",") if s.strip()]
        # docs/webhooks.md, "Processing modes": `queue` needs `billing worker` running (LISTEN/NOTIFY on PostgreSQL).
        self.WEBHOOK_PROCESSING = env.get("WEBHOOK_PROCESSING", "inline")
        if self.WEBHOOK_PROCESSING not in WEBHOOK_PROCESSING_MODES:
            raise ConfigError(
                f"WEBHOOK_PROCESSING must be 'inline' (process each webhook in the request) or 'queue' (store and "
                f"acknowledge; `billing worker` processes), not {self.WEBHOOK_PROCESSING!r}."
            )
        self.PLANS_PROVIDER = env.get("PLANS_PROVIDER", "catalog")
        if self.PLANS_PROVIDER not in ("catalog", "stripe"):
            raise ConfigError(f"PLANS_PROVIDER must be 'catalog' or 'stripe', not {self.PLANS_PROVIDER!r}.")
        self.PLANS_CATALOG = Path(env.get("PLANS_CATALOG", DEFAULT_CATALOG))
        self.STRIPE_API_KEY = env.get("STRIPE_API_KEY") or None
        self.STRIPE_API_BASE = env.get("STRIPE_API_BASE") or None
        self.GRACE_PERIOD_DAYS = self._int_setting(env, "GRACE_PERIOD_DAYS", 7)
        # How many reverse proxies in front set X-Forwarded-For/-Proto; the audit log and rate limits need the
        # client's address, not the proxy's. 0 (the default) trusts no forwarded header.
        self.TRUSTED_PROXY_COUNT = self._int_setting(env, "TRUSTED_PROXY_COUNT", 0, minimum=0)
        self.LOG_LEVEL = env.get("LOG_LEVEL", "INFO").upper()
        if self.LOG_LEVEL not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {self.LOG_LEVEL!r}.")
        self.LOG_FORMAT = env.get("LOG_FORMAT", "text")
        if self.LOG_FORMAT not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be 'text' or 'json', not {self.LOG_FORMAT!r}.")
        # The API's bodies (webhooks included) are small; anything larger is refused with 413.
        self.MAX_CONTENT_LENGTH = ONE_MIB
        self.SESSION_COOKIE_SECURE = self.BILLOPS_ENV != "development"
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.WTF_CSRF_TIME_LIMIT = None  # tokens live as long as the console session
        # flask-smorest: the OpenAPI document at /openapi.json; /docs is our own page (local assets).
        self.API_TITLE = "billops"
        self.API_VERSION = "1.0.0"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.API_SPEC_OPTIONS = {
            "security": [{"AdminKey": []}],  # public routes opt out
            "info": {
                "description": (
                    "Billing operations for support agents, tooling and admins. Send an admin key in the "
                    "`X-Admin-Key` header (roles: viewer, support, admin). Errors are RFC 9457 "
                    "`application/problem+json` with a stable `code`; lists page with `limit` and an opaque `cursor`."
                )
            },
        }

    def _secret_key(self, value: str | None) -> str:
        if self.BILLOPS_ENV in ("development", "test"):
            return value or DEV_SECRET_KEY
        if not value:
            raise ConfigError(
                "SECRET_KEY is not set. It signs console sessions and CSRF tokens: set it to a long random "
                "value (python -c 'import secrets; print(secrets.token_urlsafe(48))'), "
                "or set BILLOPS_ENV=development for local use."
            )
        if value == DEV_SECRET_KEY:
            raise ConfigError("SECRET_KEY is the public development key; production needs its own.")
        if len(value) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(
                f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters; use a random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))')."
            )
        return value

    @staticmethod
    def _int_setting(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
        raw = env.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {raw!r}.") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, not {value}.")
        return value


class TestConfig(Config):
    """The suite's settings: TEST_DATABASE_URL (or DATABASE_URL) picks the database."""

    TESTING = True
    __test__ = False  # not a pytest test class

    def __init__(self, environ: Mapping[str, str] | None = None, **overrides: object) -> None:
        env = dict(os.environ if environ is None else environ)
        env["BILLOPS_ENV"] = "test"
        if env.get("TEST_DATABASE_URL"):
            env["DATABASE_URL"] = env["TEST_DATABASE_URL"]
        env.pop("ADMIN_KEY", None)
        env.pop("WEBHOOK_SECRET", None)
        env.pop("WEBHOOK_PROCESSING", None)
        env.pop("AUDIT_KEY", None)
        super().__init__(env)
        self.SESSION_COOKIE_SECURE = False
        for name, value in overrides.items():
            setattr(self, name, value)
