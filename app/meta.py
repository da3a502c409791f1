"""Public routes outside the API prefix: health, readiness and the API docs page."""

from __future__ import annotations

import flask
from flask import current_app, redirect, render_template, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app.services import health

bp = Blueprint("meta", __name__, description="Health checks for load balancers and orchestrators. No key needed.")
pages = flask.Blueprint("pages", __name__)  # HTML pages, kept out of the OpenAPI document
PUBLIC = {"security": []}


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})


class ReadinessSchema(HealthSchema):
    database = fields.String(metadata={"description": "ok, or why the database cannot be used"})
    migrations = fields.String(metadata={"description": "ok, or how the schema differs from the code's head"})


@bp.route("/healthz")
class Healthz(MethodView):
    @bp.response(200, HealthSchema)
    @bp.doc(**PUBLIC)
    def get(self):
        """The process is up (touches nothing else)."""
        return {"status": "ok"}


@bp.route("/readyz")
class Readyz(MethodView):
    @bp.response(200, ReadinessSchema)
    @bp.alt_response(503, schema=ReadinessSchema, description="The database is unreachable or not migrated to head")
    @bp.doc(**PUBLIC)
    def get(self):
        """The database answers and its schema is at the migrations' head."""
        report = health.readiness(current_app.extensions["migrate"].directory)
        return report.as_dict(), 200 if report.ready else 503


@pages.route("/docs")
def docs():
    """The API reference, rendered by Swagger UI from local assets."""
    return render_template("docs.html")


@pages.route("/")
def index():
    """The front door is the console (which asks for a sign-in first)."""
    return redirect(url_for("console.dashboard"))
