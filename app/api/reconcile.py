"""GET /reconcile (preview) and POST /reconcile (apply)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app import clock
from app.api.blueprint import bp
from app.auth import current_actor
from app.openapi import problem_response
from app.schemas.reconcile import ReconcileApplyIn, ReconcileApplyOut, ReconcilePage, ReconcileQuery
from app.services import reconcile

_PROVIDER_DOWN = problem_response("source=provider: the provider could not be read; nothing changed")


@bp.route("/reconcile")
class Reconcile(MethodView):
    @bp.arguments(ReconcileQuery, location="query")
    @bp.response(200, ReconcilePage)
    @bp.alt_response(502, **_PROVIDER_DOWN)
    def get(self, args):
        """Report where stored subscriptions differ from their events (or the provider), with fixes (viewer+)."""
        provider = reconcile.configured_provider(current_app.config)
        return reconcile.find_mismatches(
            actor=current_actor(), provider=provider, after=args.pop("cursor", None), **args
        )

    @bp.arguments(ReconcileApplyIn)
    @bp.response(200, ReconcileApplyOut)
    @bp.alt_response(404, **problem_response("A `user_ids` entry is no known customer; nothing was fixed"))
    @bp.alt_response(502, **_PROVIDER_DOWN)
    def post(self, data):
        """Apply the fixes reconcile finds, each audited as `reconcile.apply` (admin)."""
        data.pop("apply")
        provider = reconcile.configured_provider(current_app.config)
        return reconcile.apply_fixes(actor=current_actor(), now=clock.utcnow(), provider=provider, **data)
