"""Entry point: `gunicorn wsgi:app` and `flask --app wsgi ...`. Reads `.env` from the working directory."""

import sys

from dotenv import find_dotenv, load_dotenv

load_dotenv(find_dotenv(usecwd=True))

from app import create_app  # noqa: E402  (the environment must be loaded first)
from app.config import ConfigError  # noqa: E402

try:
    app = create_app()
except ConfigError as exc:  # a settings mistake deserves one clear line, not a traceback
    sys.exit(f"billops cannot start: {exc}")
