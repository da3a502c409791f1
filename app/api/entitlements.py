"""POST /entitlements/override."""

from __future__ import annotations

from flask.views import MethodView

from app import clock
from app.api.blueprint import bp
from app.auth import current_actor
from app.schemas.entitlements import OverrideIn, OverrideOut
from app.services import entitlements


@bp.route("/entitlements/override")
class EntitlementOverride(MethodView):
    @bp.arguments(OverrideIn)
    @bp.response(200, OverrideOut)
    @bp.alt_response(404, description="Unknown user")
    def post(self, data):
        """Set or adjust a user's credits, plan or expiry; fields not sent stay as they are (support+)."""
        return entitlements.override_entitlements(**data, actor=current_actor(), now=clock.utcnow())
