"""``hub-collab prune-history``: apply the history's retention (``history_keep_days``).

Reads the same settings as the service (``-f`` config file, ``--db-url``, ``--data-dir``,
``$HUB_COLLAB_DB_URL``), and runs beside it (each doc is compacted in a transaction of
its own). With ``history_keep_days`` 0 it keeps every update and only removes the
history of notebooks that were deleted; ``--days N`` overrides the setting for one
run, ``--dry-run`` says what would change and changes nothing.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from traitlets import Bool, Integer, validate
from traitlets.config import Application

from ..schema import SchemaError, ensure_schema
from ..store import make_engine
from ..upgradedb import SERVICE_ALIASES, service_settings
from .store import DAY, HistoryStore


class PruneHistory(Application):
    """Compact the history older than ``history_keep_days`` to one version per doc and day."""

    name = "hub-collab prune-history"
    description = __doc__ or ""

    aliases = {**SERVICE_ALIASES, "days": "PruneHistory.days"}
    flags = {
        "dry-run": ({"PruneHistory": {"dry_run": True}}, "Say what would be compacted; change nothing."),
    }

    days = Integer(
        None,
        allow_none=True,
        help="Days of history to keep whole for this run (default: the service's history_keep_days).",
    ).tag(config=True)

    @validate("days")
    def _days(self, proposal: Any) -> int | None:
        if proposal.value is not None and int(proposal.value) < 0:
            raise ValueError(f"--days must be 0 (keep everything) or a number of days, got {proposal.value}")
        return proposal.value  # type: ignore[no-any-return]

    dry_run = Bool(False, help="Say what would be compacted; change nothing.").tag(config=True)

    def start(self) -> None:
        collab = service_settings(self)
        keep = int(collab.history_keep_days) if self.days is None else int(self.days)
        engine = make_engine(collab.db_url)
        where = engine.url.render_as_string(hide_password=True)
        try:
            ensure_schema(engine)
            history = HistoryStore(engine)
            # keep 0: every update stays; only deleted notebooks' history goes
            cut = time.time() - keep * DAY if keep else 0.0
            report = history.compact(cut, dry_run=self.dry_run)
        except SchemaError as exc:
            self.log.critical("%s", exc)
            self.exit(1)
        finally:
            engine.dispose()
        verb = "would compact" if self.dry_run else "compacted"
        if keep:
            day = datetime.datetime.fromtimestamp(cut - cut % DAY, datetime.UTC).strftime("%Y-%m-%d")
            print(
                f"{where}: {verb} {report.rows_before} updates before {day} (UTC) of {report.docs} docs in"
                f" {len(report.notebooks)} notebooks into {report.rows_after} daily versions;"
                f" {report.keyframes_dropped} keyframes {'would be ' if self.dry_run else ''}dropped"
            )
        else:
            print(f"{where}: history_keep_days is 0: every update is kept")
        if report.orphans_dropped:
            print(f"{where}: {'would remove' if self.dry_run else 'removed'} the history of"
                  f" {report.orphans_dropped} docs of deleted notebooks")  # fmt: skip
