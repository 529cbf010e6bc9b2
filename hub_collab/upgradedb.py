"""``hub-collab upgrade-db``: upgrade the service's database to this version's schema.

Run it (after a backup) before starting a new version: the service itself never
upgrades a database, it refuses to start on an older one and names this command. It
reads the same settings as the service (``-f`` config file, ``--db-url``,
``--data-dir``, ``$HUB_COLLAB_DB_URL``, ``$HUB_COLLAB_DATA_DIR``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from sqlalchemy.engine import make_url
from traitlets import Bool
from traitlets.config import Application

from .schema import (
    EMPTY,
    FIRST_REVISION,
    UNVERSIONED,
    SchemaError,
    database_revision,
    head_revision,
    known_revision,
    upgrade_schema,
)
from .store import make_engine

#: the options of the service that its subcommands take too (where the database is)
SERVICE_ALIASES = {
    "f": "HubCollab.config_file",
    "config": "HubCollab.config_file",
    "db-url": "HubCollab.db_url",
    "data-dir": "HubCollab.data_dir",
    "log-level": "Application.log_level",
}


def service_settings(command: Application) -> Any:
    """The service's application, configured as ``hub-collab`` would be (its config file,
    then ``command``'s command line): what a subcommand reads its settings from."""
    from .app import HubCollab

    collab = command.parent if isinstance(command.parent, HubCollab) else HubCollab()
    collab.update_config(command.cli_config)
    given = "config_file" in command.cli_config.get("HubCollab", {})
    if given or os.path.exists(collab.config_file):
        collab.load_config_file(collab.config_file)
    collab.update_config(command.cli_config)  # the command line wins over the file
    return collab


class UpgradeDB(Application):
    """Upgrade hub-collab's database schema to this version's, then exit."""

    name = "hub-collab upgrade-db"
    description = __doc__ or ""

    aliases = SERVICE_ALIASES
    flags = {
        "no-backup": ({"UpgradeDB": {"backup": False}}, "Do not copy a SQLite database before upgrading it."),
    }

    backup = Bool(
        True,
        help="""Copy a SQLite database to `<file>.<time>.bak` beside it before changing it.
        (Back up a PostgreSQL database yourself, with pg_dump.)""",
    ).tag(config=True)

    def _service(self) -> Any:
        return service_settings(self)

    def _backup(self, url: str) -> str | None:
        path = make_url(url).database
        if not self.backup or not path or path == ":memory:" or not os.path.exists(path):
            return None
        target = f"{path}.{time.strftime('%Y%m%d-%H%M%S')}.bak"
        src, dst = sqlite3.connect(path), sqlite3.connect(target)
        try:
            src.backup(dst)  # consistent, WAL included
        finally:
            dst.close()
            src.close()
        return target

    def start(self) -> None:
        url = self._service().db_url
        engine = make_engine(url)
        where = engine.url.render_as_string(hide_password=True)
        head = head_revision()
        try:
            with engine.connect() as conn:
                now = database_revision(conn)
            older = now is UNVERSIONED or (isinstance(now, str) and now != head and known_revision(now))
            if older and engine.dialect.name == "sqlite":
                copy = self._backup(url)
                if copy:
                    print(f"backed up {where} to {copy}")
            before, after = upgrade_schema(engine)
        except SchemaError as exc:
            self.log.critical("%s", exc)
            self.exit(1)
        finally:
            engine.dispose()
        if before == after:
            print(f"{where} is at schema revision {after}: nothing to do")
        elif before is EMPTY:
            print(f"created the schema (revision {after}) in the empty database {where}")
        elif before is UNVERSIONED:
            print(
                f"{where} was made before schema migrations: stamped it as revision"
                f" {FIRST_REVISION}" + ("" if after == FIRST_REVISION else f", then upgraded it to {after}")
            )
        else:
            print(f"upgraded {where} from schema revision {before} to {after}")
