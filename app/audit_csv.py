"""The audit log as a CSV download, shared by the API (`GET /audit?format=csv`) and the console."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator

from flask import Response, stream_with_context

from app import clock
from app.observability import REQUEST_ID_HEADER, request_id
from app.services.audit import Exported

log = logging.getLogger(__name__)

CSV_COLUMNS = ("id", "created_at", "actor", "action", "user_id", "reason", "before", "after", "context")
# Rows are sent in chunks of about this many characters: one write per row would cost a system call per row.
CHUNK_CHARS = 64 * 1024
# A cell a spreadsheet would run as a formula is prefixed with a quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_response(entries: Iterator[Exported]) -> Response:
    """Stream `entries` as an attachment, one row at a time (bounded memory for any size).

    `entries` has run its first query already, so a failure up to there was an ordinary error response."""
    filename = f"billops-audit-{clock.utcnow():%Y%m%dT%H%M%SZ}.csv"
    response = Response(stream_with_context(_finish_visibly(_csv_lines(entries))), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _csv_lines(entries: Iterator[Exported]) -> Iterator[str]:
    """The file in chunks of whole lines, about CHUNK_CHARS each."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    try:
        for entry in entries:
            writer.writerow(_csv_row(entry))
            if buffer.tell() >= CHUNK_CHARS:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    except Exception:
        yield buffer.getvalue()  # the whole rows written before the failure, then _finish_visibly's warning
        raise
    yield buffer.getvalue()


def _finish_visibly(lines: Iterator[str]) -> Iterator[str]:
    """Stream the lines; a failure once bytes are out ends the file with a line saying it is incomplete."""
    try:
        yield from lines
    except Exception:
        log.exception("audit CSV export failed after streaming started")
        yield (
            f"# EXPORT INCOMPLETE: an error stopped the export here; rows after this point are missing. "
            f"Quote {REQUEST_ID_HEADER} {request_id()} if you report it.\r\n"
        )


def _csv_row(entry: Exported) -> list:
    """The row's cells; the id and the ISO time cannot start a formula, None is written as an empty cell."""
    row_id, created_at, actor, action, user_id, reason, before, after, context = entry
    return [
        row_id,
        created_at.isoformat(),
        _cell(actor),
        _cell(action),
        _cell(user_id),
        _cell(reason),
        _cell(_json(before)),
        _cell(_json(after)),
        _cell(_json(context)),
    ]


_ENCODE = json.JSONEncoder(sort_keys=True).encode  # json.dumps(value, sort_keys=True), without its set-up per call


def _json(value) -> str | None:
    return None if value is None else _ENCODE(value)


def _cell(text: str | None) -> str | None:
    return "'" + text if text and text.startswith(_FORMULA_START) else text
