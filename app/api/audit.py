"""GET /audit: the audit log as JSON pages or a CSV stream."""

from __future__ import annotations

from flask import request
from flask.views import MethodView

from app.api.blueprint import bp
from app.audit_csv import csv_response
from app.auth import current_actor
from app.schemas.audit import AuditPage, AuditQuery
from app.services import audit


@bp.route("/audit")
class AuditLog(MethodView):
    @bp.arguments(AuditQuery, location="query")
    @bp.response(200, AuditPage, description="A page of entries, or with `format=csv` or `Accept: text/csv` a CSV")
    @bp.doc(responses={200: {"content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}}}})
    def get(self, args):
        """List audit entries, newest first (viewer+)."""
        limit, after, fmt = args.pop("limit"), args.pop("cursor", None), args.pop("format", None)
        filters = audit.AuditFilter(**args)
        if fmt == "csv" or (fmt is None and _accepts_csv()):
            return csv_response(audit.iter_entries(filters, actor=current_actor()))
        return audit.list_entries(filters, actor=current_actor(), after=after, limit=limit)


def _accepts_csv() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"
