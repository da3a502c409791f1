"""A blueprint that exists only in tests: one route per error class, behind the API's own request check.

It lets the error contract be tested before the later issues add the real POST endpoints.
"""

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from app import clock
from app.api.blueprint import check_request
from app.models import Customer
from app.services import audit
from app.services.errors import Conflict, NotFound, RuleViolation
from app.services.permissions import Permission, require
from app.services.uow import unit_of_work

bp = Blueprint("probe", __name__, url_prefix="/v1/admin/billing/_probe")
bp.before_request(check_request)


class ChangeIn(Schema):
    user_id = fields.String(required=True)
    credits = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class ListIn(Schema):
    limit = fields.Integer(validate=validate.Range(min=1, max=200))


@bp.route("/change")
class Change(MethodView):
    @bp.arguments(ChangeIn)
    @bp.response(200)
    def post(self, data):
        outcomes = {
            "rule": RuleViolation("credits would go below 0"),
            "taken": Conflict("changed meanwhile"),
            "ghost": NotFound("No customer has the user id 'ghost'."),
        }
        if data["user_id"] in outcomes:
            raise outcomes[data["user_id"]]
        if data["user_id"] == "boom":
            with unit_of_work() as session:
                session.add(Customer(user_id="user-half-written"))
                audit.record(session, g.actor, "subscription.update", "user-half-written", None, {}, now=clock.utcnow())
                raise ZeroDivisionError("secret internals: /srv/billops/app.py line 12")
        require(g.actor, Permission.REPLAY_EVENTS)
        return {"ok": True}

    @bp.arguments(ListIn, location="query")
    @bp.response(200)
    def get(self, args):
        return args
