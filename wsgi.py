"""Entry point: `gunicorn wsgi:app` and `flask --app wsgi ...`. Reads `.env` from the working directory only
(unless FLASK_SKIP_DOTENV=1, Flask's own switch, turns `.env` files off)."""

import os
import sys
from pathlib import Path

from dotenv import find_dotenv, load_dotenv
from flask.helpers import get_load_dotenv


def _stray_dotenv() -> Path | None:
    """A `.env`/`.flaskenv` above the working directory that the `flask` command has loaded before us.

    A stray `.env` above the checkout once turned a production start into development: the `flask` command
    searches parent directories (gunicorn does not), so billops refuses to start on what it may have loaded.
    """
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true" or not get_load_dotenv():
        return None
    for name in (".env", ".flaskenv"):
        found = find_dotenv(name, usecwd=True)
        if found and Path(found).parent != Path.cwd():
            return Path(found)
    return None


if stray := _stray_dotenv():
    sys.exit(
        f"billops cannot start: the flask command loaded {stray}, above the working directory; billops reads only "
        "./.env. Remove that file, or set FLASK_SKIP_DOTENV=1."
    )
if get_load_dotenv():
    load_dotenv(Path.cwd() / ".env")

from app import create_app  # noqa: E402  (the environment must be loaded first)
from app.config import ConfigError  # noqa: E402

try:
    app = create_app()
except ConfigError as exc:  # a settings mistake deserves one clear line, not a traceback
    sys.exit(f"billops cannot start: {exc}")
