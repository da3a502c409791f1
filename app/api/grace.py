"""POST /grace-period/reset."""

from __future__ import annotations

from flask.views import MethodView

from app import clock
from app.api.blueprint import bp
from app.auth import current_actor
from app.schemas.grace import GraceResetIn, GraceResetOut
from app.services import grace


@bp.route("/grace-period/reset")
class GraceReset(MethodView):
    @bp.arguments(GraceResetIn)
    @bp.response(200, GraceResetOut)
    @bp.alt_response(404, description="Unknown user")
    def post(self, data):
        """Extend a user's grace period to now + days (never shortening it), or start one (support+)."""
        return grace.reset_grace(**data, actor=current_actor(), now=clock.utcnow())
