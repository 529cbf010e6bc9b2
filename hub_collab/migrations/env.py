"""Alembic's environment for hub-collab (configured by :func:`hub_collab.schema.alembic_config`).

The service passes its own connection, already inside the transaction that holds the
schema lock (:func:`hub_collab.schema.migration_lock`); a developer drafting a revision
passes a URL instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from hub_collab.schema import VERSION_TABLE, metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite alters a table by copying it: let autogenerate write batch operations
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("hub-collab's migrations run on a database connection, not as SQL scripts")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: use hub_collab.schema.alembic_config(url)")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


main()
