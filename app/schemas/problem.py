"""RFC 9457 problem details: the body of every API error."""

from marshmallow import Schema, fields


class ProblemSchema(Schema):
    """`application/problem+json` body. Documentation only: `app.errors` builds the payload."""

    type = fields.String(
        metadata={"description": "URI naming the problem type", "example": "urn:billops:problem:not_found"}
    )
    title = fields.String(metadata={"description": "Short summary of the problem type"})
    status = fields.Integer(metadata={"description": "HTTP status code"})
    detail = fields.String(metadata={"description": "What went wrong this time, and what to change"})
    code = fields.String(metadata={"description": "Stable machine-readable code, e.g. validation_failed"})
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "Per-field messages (validation problems only): field name to list of messages"},
    )
