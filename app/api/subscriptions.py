"""GET /subscriptions/<user_id>."""

from __future__ import annotations

from flask.views import MethodView

from app.api.blueprint import bp
from app.auth import current_actor
from app.schemas.subscriptions import SubscriptionSchema
from app.services import subscriptions


@bp.route("/subscriptions/<string:user_id>")
class SubscriptionDetail(MethodView):
    @bp.response(200, SubscriptionSchema)
    @bp.alt_response(404, description="Unknown user, or a user without a subscription")
    def get(self, user_id: str):
        """One user's subscription with its active grace period (viewer+)."""
        return subscriptions.get_subscription(user_id, actor=current_actor())
