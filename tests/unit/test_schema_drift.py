from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.extensions import db


def test_the_migrations_build_exactly_the_models_schema(app, migrated_database):
    """What `flask db check` asserts: autogenerate finds nothing to add, drop or alter."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []
