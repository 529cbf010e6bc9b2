"""History: every accepted update kept with its author and time, and what is read from it.

* :mod:`.store`: :class:`~.store.HistoryStore`, the rows (written with the live log, in
  the same transaction), keyframe snapshots, rebuilding a doc at a version or a time,
  retention (compaction to daily versions).
* :mod:`.versions`: grouping a doc's rows into versions (bursts of one author) and diffs.
* :mod:`.service`: :class:`~.service.HistoryService`, what users may ask (timelines,
  versions, restore, past runs, the activity feed, the notebook at a time), with the
  rights of *now* applied to the past, and its commands.
* :mod:`.prune`: ``hub-collab prune-history``.

docs/history.md says what is kept and who sees what.
"""
