"""marshmallow shapes, one per operation, shared by the JSON API and the console."""
