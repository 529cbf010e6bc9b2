"""Background tasks of the long-lived objects (bus, replicator, rooms, Hub groups)."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel the tasks and wait until they have ended; what they raised is dropped
    (they are being stopped, and each logs its own failures while it runs)."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
