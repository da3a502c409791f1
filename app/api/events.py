"""GET /events, GET /events/<event_id>, POST /webhook/replay."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app import clock
from app.api.blueprint import bp
from app.auth import current_actor
from app.openapi import problem_response
from app.schemas.events import EventDetailSchema, EventsPage, EventsQuery, ReplayIn, ReplayOut
from app.services import events, webhooks


@bp.route("/events")
class EventList(MethodView):
    @bp.arguments(EventsQuery, location="query")
    @bp.response(200, EventsPage)
    def get(self, args):
        """List billing events, newest first by the provider's time (viewer+)."""
        limit, skip, after = args.pop("limit"), args.pop("skip"), args.pop("cursor", None)
        return events.list_events(
            events.EventFilter(**args), actor=current_actor(), after=after, skip=skip, limit=limit
        )


@bp.route("/events/<string:event_id>")
class EventDetail(MethodView):
    @bp.response(200, EventDetailSchema)
    @bp.alt_response(404, **problem_response("No event has this id"))
    def get(self, event_id: str):
        """One event with its payload and attempt history (viewer+)."""
        return events.get_event(event_id, actor=current_actor())


@bp.route("/webhook/replay")
class Replay(MethodView):
    @bp.arguments(ReplayIn)
    @bp.response(200, ReplayOut)
    @bp.alt_response(404, **problem_response("An `event_id` is unknown; nothing was replayed"))
    def post(self, data):
        """Re-run the handlers of stored events: one, a list, or a filter (admin)."""
        grace_days = current_app.config["GRACE_PERIOD_DAYS"]
        return webhooks.replay_events(**data, actor=current_actor(), grace_days=grace_days, now=clock.utcnow())
