"""GET /plans and POST /plans/sync."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app import clock
from app.api.blueprint import bp
from app.auth import current_actor
from app.schemas.plans import PlanCatalogSchema, PlansSyncIn, PlansSyncOut
from app.services import plans


@bp.route("/plans")
class PlanList(MethodView):
    @bp.response(200, PlanCatalogSchema)
    def get(self):
        """Every plan, active first, and whether the provider changed the catalog since the last sync (viewer+)."""
        return plans.list_plans(actor=current_actor())


@bp.route("/plans/sync")
class PlansSync(MethodView):
    @bp.arguments(PlansSyncIn)
    @bp.response(200, PlansSyncOut)
    @bp.alt_response(502, description="The plan provider (PLANS_PROVIDER) could not be read; nothing changed")
    def post(self, data):
        """Upsert the plan catalog from the configured provider; `dry_run` only reports (admin)."""
        provider = plans.configured_provider(current_app.config)
        return plans.sync_plans(provider, **data, actor=current_actor(), now=clock.utcnow())
