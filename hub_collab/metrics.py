"""Prometheus metrics of one service process: :class:`Metrics`.

:class:`~hub_collab.app.HubCollab` builds one :class:`Metrics` (unless
``metrics_enabled`` is off) with a registry of its own, never prometheus_client's
global one, so that several services can run in one process (tests). It hands the
metric objects to the services that see the events happen: the room (updates in,
fan-out, joins), the update log (commits), the replicator (catch-ups), the bus
(messages) and the kernel service (executions). State that is simply there (rooms
loaded, connections, kernels by state) is not counted as it changes: it is read
from the services at each scrape (:class:`RoomCounter`, :class:`KernelCounter`).

The keystroke path pays for what it increments and nothing else: every labelled
child it touches is bound once, here (``updates_in_client``, ...), so an update
costs an increment or an observation, never a label lookup or a string. And since
every ``hubcollab_`` metric is counted on the event loop's thread (and read there, by
the scrape), they are :class:`LoopCounter` and :class:`LoopHistogram`: plain numbers,
no lock (a prometheus_client counter takes a lock per increment, five times the
cost). prometheus_client provides the registry, the exposition and the process
collectors.

``GET {prefix}metrics`` (:mod:`hub_collab.apihandlers.metrics`) serves the registry;
docs/operations.md lists every metric, from :func:`render_table` (a test keeps it
current: ``python -m hub_collab.metrics`` prints it).
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

PREFIX = "hubcollab_"

#: seconds between two ticks of the event-loop lag timer
LAG_INTERVAL = 0.5

#: where an applied doc update came from (label ``source`` of ``updates_in``)
UPDATE_SOURCES = ("client", "server", "remote")

# Buckets, in seconds, for what each histogram measures. A cell edit fans out in
# microseconds; an output waits for its commit first (milliseconds).
FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
JOIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class RoomCensus:
    """What the rooms hold right now."""

    rooms: int
    docs: int
    connections: int


@dataclass(frozen=True)
class KernelCensus:
    """The kernels right now: how many per (provider, state), and their queues."""

    kernels: Mapping[tuple[str, str], int] = field(default_factory=dict)
    queued: int = 0
    longest_queue: int = 0


class RoomCounter(Protocol):
    """Counts what the rooms hold, at each scrape (the room manager)."""

    def census(self) -> RoomCensus: ...


class KernelCounter(Protocol):
    """Counts the kernels and their queues, at each scrape (the kernel service)."""

    def kernel_census(self) -> KernelCensus: ...


#: the gauges read at each scrape: key, name, help, labels
STATE_GAUGES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("connections", "connections", "WebSocket connections open on this replica.", ()),
    ("rooms", "rooms_loaded", "Notebooks loaded in memory (rooms) on this replica.", ()),
    ("docs", "docs_held", "Documents (index, cell and output docs) held by the loaded rooms.", ()),
    (
        "kernels",
        "kernels",
        "Kernels this replica holds, by provider (hub, gateway, local) and state"
        " (starting, idle, busy, dead, restarting, shutdown).",
        ("provider", "state"),
    ),
    ("queued", "kernel_queued_cells", "Cells waiting in the kernels' queues (not running yet), all kernels together.", ()),
    ("longest", "kernel_queue_longest", "Cells waiting in the longest queue of one kernel.", ()),
)


class _StateCollector:
    """Gauges read from the services at each scrape."""

    def __init__(self) -> None:
        self.rooms: RoomCounter | None = None
        self.kernels: KernelCounter | None = None

    @staticmethod
    def families() -> dict[str, GaugeMetricFamily]:
        return {key: GaugeMetricFamily(PREFIX + name, help, labels=labels) for key, name, help, labels in STATE_GAUGES}

    def describe(self) -> list[Metric]:
        return list(self.families().values())

    def collect(self) -> list[Metric]:
        out = self.families()
        if self.rooms is not None:
            rooms = self.rooms.census()
            out["connections"].add_metric([], rooms.connections)
            out["rooms"].add_metric([], rooms.rooms)
            out["docs"].add_metric([], rooms.docs)
        if self.kernels is not None:
            kernels = self.kernels.kernel_census()
            for (provider, state), count in sorted(kernels.kernels.items()):
                out["kernels"].add_metric([provider, state], count)
            out["queued"].add_metric([], kernels.queued)
            out["longest"].add_metric([], kernels.longest_queue)
        return list(out.values())


class LoopCounter:
    """A counter incremented on the event loop's thread only: a plain number, no lock."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class LoopHistogram:
    """A histogram observed on the event loop's thread only: a count per bucket and a sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        #: one count per bound (``value <= bound``), then the ones above every bound
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts per upper bound, ``+Inf`` last (the exposition's buckets)."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(total)))
        return out


class CounterFamily:
    """A counter family: one :class:`LoopCounter` per set of label values. Bind a child
    once with :meth:`labels` and keep it."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labelnames = name, help, labels
        self.children: dict[tuple[str, ...], LoopCounter] = {}

    def labels(self, *values: str) -> LoopCounter:
        _check_labels(self.name, self.labelnames, values)
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = LoopCounter()
        return child

    def family(self) -> Metric:
        out = CounterMetricFamily(self.name, self.help, labels=self.labelnames)
        for values, child in self.children.items():
            out.add_metric(list(values), child.value)
        return out


class HistogramFamily:
    """A histogram family without labels: one :class:`LoopHistogram`."""

    kind = "histogram"
    labelnames: tuple[str, ...] = ()

    def __init__(self, name: str, help: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help = name, help
        self.child = LoopHistogram(buckets)

    def family(self) -> Metric:
        out = HistogramMetricFamily(self.name, self.help)
        out.add_metric([], buckets=self.child.buckets(), sum_value=self.child.sum)
        return out


def _check_labels(name: str, labelnames: tuple[str, ...], values: tuple[str, ...]) -> None:
    if len(values) != len(labelnames):
        raise ValueError(f"{name} has the labels {labelnames}, got the values {values}")


class _LoopCollector:
    """Exposes the loop families (read at the scrape, on the event loop)."""

    def __init__(self) -> None:
        self.families: list[CounterFamily | HistogramFamily] = []

    def describe(self) -> list[Metric]:
        return [f.family() for f in self.families]

    def collect(self) -> list[Metric]:
        return [f.family() for f in self.families]


class LoopLagMonitor:
    """Measures how late a periodic timer fires: the event loop's lag.

    A timer due every ``interval`` seconds observes, each time, how long after its
    due time it ran; a blocked loop (a slow transaction on the loop, a huge frame)
    shows up as large observations. ``start()`` in the loop, ``stop()`` to end.
    """

    def __init__(self, histogram: LoopHistogram, interval: float = LAG_INTERVAL) -> None:
        self.histogram = histogram
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if self._handle is not None:
            raise RuntimeError("LoopLagMonitor.start() called twice; stop() it first")
        self._loop = asyncio.get_running_loop()
        self._schedule()

    def _schedule(self) -> None:
        assert self._loop is not None
        due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(due, self._tick, due)

    def _tick(self, due: float) -> None:
        assert self._loop is not None
        self.histogram.observe(max(0.0, self._loop.time() - due))
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Metrics:
    """Every metric of one service process, in its own :attr:`registry`.

    Build one per application; give the services the objects they increment. Read the
    state gauges from the services with :meth:`watch`; :meth:`start` the lag timer in
    the event loop and :meth:`stop` it at shutdown.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        #: metric family name -> its label names (for the reference in docs/operations.md)
        self.labels: dict[str, tuple[str, ...]] = {}
        r = self.registry
        self._loop = _LoopCollector()

        self.updates_in = self._counter(
            "updates_in",
            "Document updates applied on this replica, by source: client (sent by a client"
            " connected here), server (structure commands, kernel output), remote (from another"
            " replica over the bus, or merged from the store by a catch-up).",
            ("source",),
        )
        self.updates_in_client = self.updates_in.labels("client")
        self.updates_in_server = self.updates_in.labels("server")
        self.updates_in_remote = self.updates_in.labels("remote")
        self.updates_out = self._counter(
            "updates_out", "Document update frames written to connections (one per receiving connection)."
        ).labels()
        self.fanout_seconds = self._histogram(
            "fanout_seconds",
            "Time from a document update being applied to it being written to every subscribed"
            " connection (outputs wait for their commit first), for updates that someone received.",
            FANOUT_BUCKETS,
        )
        self.join_seconds = self._histogram(
            "join_seconds",
            "Time from a WebSocket connection opening to the answer of its first sync (the join).",
            JOIN_BUCKETS,
        )
        self.commit_seconds = self._histogram(
            "update_log_commit_seconds",
            "Time one group commit of the update log takes (a transaction appending a batch of updates).",
            COMMIT_BUCKETS,
        )
        self.commit_failures = self._counter(
            "update_log_commit_failures", "Group commits of the update log that failed (the batch is retried)."
        ).labels()
        self.catchups = self._counter(
            "catchups",
            "Catch-ups: a room merged the store's log after a gap on the bus, a reconnect to"
            " Redis, a hint from another replica or the periodic safety timer.",
        ).labels()
        self.bus_messages = self._counter(
            "bus_messages", "Messages over the bus (Redis pub/sub), by direction: in (received), out (published).", ("direction",)
        )
        self.bus_messages_in = self.bus_messages.labels("in")
        self.bus_messages_out = self.bus_messages.labels("out")
        self.bus_bytes = self._counter("bus_bytes", "Bytes of the messages over the bus, by direction (in, out).", ("direction",))
        self.bus_bytes_in = self.bus_bytes.labels("in")
        self.bus_bytes_out = self.bus_bytes.labels("out")
        self.bus_publish_failures = self._counter(
            "bus_publish_failures", "Messages that could not be published (Redis away); receivers catch up from the store."
        ).labels()
        self.executions = self._counter(
            "executions",
            "Executions of cells that ended, by status: ok, error, interrupted, aborted,"
            " kernel_died, kernel_start_failed, unknown (finished while the service restarted).",
            ("status",),
        )
        self.loop_lag_seconds = self._histogram(
            "event_loop_lag_seconds",
            f"How late a timer due every {LAG_INTERVAL:g} s runs: the event loop's lag"
            " (a blocked loop delays every client).",
            LAG_BUCKETS,
        )
        self._state = _StateCollector()
        for _, name, _, labels in STATE_GAUGES:
            self.labels[PREFIX + name] = labels
        r.register(self._loop)
        r.register(self._state)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)  # registers itself on CPython only
        self.lag = LoopLagMonitor(self.loop_lag_seconds)

    def _counter(self, name: str, help: str, labels: tuple[str, ...] = ()) -> CounterFamily:
        family = CounterFamily(PREFIX + name, help, labels)
        self.labels[family.name] = labels
        self._loop.families.append(family)
        return family

    def _histogram(self, name: str, help: str, buckets: tuple[float, ...]) -> LoopHistogram:
        family = HistogramFamily(PREFIX + name, help, buckets)
        self.labels[family.name] = ()
        self._loop.families.append(family)
        return family.child

    def watch(self, rooms: RoomCounter | None = None, kernels: KernelCounter | None = None) -> None:
        """Read the state gauges from these services at each scrape."""
        if rooms is not None:
            self._state.rooms = rooms
        if kernels is not None:
            self._state.kernels = kernels

    def start(self) -> None:
        """Start the event-loop lag timer (in the running loop)."""
        self.lag.start()

    def stop(self) -> None:
        self.lag.stop()


@dataclass(frozen=True)
class MetricDoc:
    """One metric family as docs/operations.md lists it."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


def describe(metrics: Metrics) -> list[MetricDoc]:
    """Every metric family the registry exposes: its name (as scraped), type, labels and help."""
    out = []
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = metrics.labels.get(family.name)
        if labels is None:
            labels = tuple(sorted({k for s in family.samples for k in s.labels} - {"le", "quantile"}))
        out.append(MetricDoc(name, family.type, labels, " ".join(family.documentation.split())))
    return out


def render_table(docs: Iterable[MetricDoc]) -> str:
    """The Markdown table of docs/operations.md."""
    lines = ["| metric | type | labels | help |", "| --- | --- | --- | --- |"]
    for d in docs:
        labels = ", ".join(f"`{label}`" for label in d.labels) or "—"
        lines.append(f"| `{d.name}` | {d.type} | {labels} | {d.help.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_table(describe(Metrics())), end="")
