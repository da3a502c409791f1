"""billops: billing operations for support agents, tooling and admins."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import api, cli, console, errors, extensions, input_guard, meta, observability
from app.config import Config
from app.openapi import RestApi


def create_app(config: Config | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints, error handlers, CLI."""
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.config.from_object(config or Config())
    if proxies := app.config["TRUSTED_PROXY_COUNT"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    observability.init_app(app)
    input_guard.init_app(app)  # after the request id is assigned, so a refusal carries it
    extensions.init_app(app)
    rest_api = RestApi(app)
    rest_api.register_blueprint(meta.bp)
    rest_api.register_blueprint(api.bp)
    rest_api.register_blueprint(api.webhooks_bp)
    app.register_blueprint(meta.pages)
    app.register_blueprint(console.bp)
    extensions.csrf.exempt(api.bp)  # the key travels in a header: there is no cookie to forge
    extensions.csrf.exempt(api.webhooks_bp)  # the provider signs its body; there is no session
    errors.init_app(app)
    cli.init_app(app)
    return app
