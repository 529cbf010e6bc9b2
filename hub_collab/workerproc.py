"""Setting up the service's worker processes (the import workers of
:mod:`hub_collab.documents.importer`): :func:`init_worker` is their initializer.

It lives in a module of its own that imports nothing heavy: a spawned worker imports it
before anything else, so the worker lowers its priority and watches its parent before
it spends a second importing pycrdt, nbformat and SQLAlchemy.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading


def init_worker(niceness: int) -> None:
    """Lower this process's CPU priority by ``niceness`` (when the CPUs are busy, the
    service's event loop and the kernels go first), ignore Ctrl-C (it reaches the whole
    process group; the service stops its workers itself) and exit when the service's
    process ends, however it ends (a ``kill -9`` too: no worker is left behind)."""
    os.nice(niceness)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="exit-with-parent", daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)
