"""The hub-collab service: :class:`HubCollab`, a traitlets Application.

Run ``hub-collab`` as a JupyterHub managed service (a ``command`` in
``c.JupyterHub.services``) or as an external one; it reads the
``JUPYTERHUB_*`` variables the Hub gives a service. Every setting below is a
trait: set it in ``hub_collab_config.py`` (``hub-collab -f FILE``, or
``hub-collab --generate-config`` to write a commented one) or on the command
line (``--HubCollab.max_message_size=1000000``).

Startup is a list of ``init_*`` steps (:meth:`HubCollab.initialize`), then
:meth:`HubCollab.start_service`; tests configure and start the same object.

This class is the composition root: each ``init_*`` step builds one service
and hands it what it needs explicitly, and :meth:`HubCollab.init_wiring`
registers every observer in one place, in the order it states. No service
imports a handler or reaches for the application object; docs/architecture.md
draws the result.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import socket
import sys
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuth
from jupyterhub.utils import url_path_join
from pycrdt import Doc
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, Bytes, Dict, Float, Integer, List, Unicode, default, validate
from traitlets.config import Application, catch_config_error

from . import __version__, logs
from .apihandlers import base as api_base
from .apihandlers import chat as api_chat
from .apihandlers import comments as api_comments
from .apihandlers import health as api_health
from .apihandlers import history as api_history
from .apihandlers import kernels as api_kernels
from .apihandlers import metrics as api_metrics
from .apihandlers import notebooks as api_notebooks
from .budgets import FrameBudgets
from .bus import make_bus
from .chat import MAX_PAGE_SIZE, ChatService
from .chat import register_commands as register_chat_commands
from .commands import CommandRegistry, Dispatcher
from .comments import MAX_PAGE_SIZE as MAX_COMMENT_PAGE
from .comments import CommentService
from .comments import register_commands as register_comment_commands
from .documents import structure
from .documents.rooms import RoomManager
from .handlers import pages, ws
from .handlers.base import log_request
from .history.service import HistoryService
from .history.service import register_commands as register_history_commands
from .hubapi import GroupDirectory
from .hubservers import HubServers
from .kernels.commands import register_commands as register_kernel_commands
from .kernels.env import forbidden_name
from .kernels.hubprovider import HubProvider
from .kernels.manager import KernelService
from .kernels.provider import KernelProvider, LocalProvider
from .kernels.remote import RemoteProvider
from .kernels.resources import KernelResources
from .kernels.widgets import WidgetLimits
from .lifecycle import NotebookLifecycle
from .metrics import Metrics
from .oauthstate import SharedHubOAuth
from .permissions.access import Identity
from .permissions.casbin_backend import rule_class
from .permissions.store import PermissionStore
from .replication import Replicator
from .schema import SchemaError, ensure_schema, head_revision
from .services import Services
from .store import Store, UpdateLog, make_engine

HERE = os.path.dirname(os.path.abspath(__file__))

LOG_FORMATS = ("text", "json")
#: the text format (traitlets' console format)
TEXT_LOG_FORMAT = "[%(name)s]%(highlevel)s %(message)s"
#: seconds start-up waits for the first answer of Redis before it goes on degraded
BUS_START_TIMEOUT = 10.0
#: the service's GIL switch interval (seconds; see start_service)
GIL_SWITCH_SECONDS = 0.001


def _env(*names: str, default: str = "") -> str:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


class HubCollab(Application):
    """Real-time collaborative notebooks with per-cell permissions, as a Hub service."""

    name = "hub-collab"
    version = __version__
    description = __doc__ or ""

    subcommands = {
        "demo": ("hub_collab.demo.DemoApp", "Start a JupyterHub with hub-collab, demo users and groups."),
        "upgrade-db": ("hub_collab.upgradedb.UpgradeDB", "Upgrade the database's schema to this version's (back it up first)."),
        "prune-history": ("hub_collab.history.prune.PruneHistory", "Compact the history older than history_keep_days to daily versions."),
    }

    aliases = {
        "f": "HubCollab.config_file",
        "config": "HubCollab.config_file",
        "port": "HubCollab.port",
        "ip": "HubCollab.ip",
        "db-url": "HubCollab.db_url",
        "data-dir": "HubCollab.data_dir",
        "log-level": "Application.log_level",
    }
    flags = {
        "generate-config": ({"HubCollab": {"generate_config": True}}, "Write a commented config file and exit."),
        "debug": ({"Application": {"log_level": logging.DEBUG}}, "Log debug messages."),
    }

    config_file = Unicode(
        "hub_collab_config.py",
        help="""The config file to load (Python, traitlets). Missing is fine unless given with -f.""",
    ).tag(config=True)

    generate_config = Bool(False, help="Write the default config file to `config_file` and exit.").tag(config=True)

    data_dir = Unicode(
        help="""Directory for the service's own files: the SQLite database (default db_url),
        the generated cookie secret, and the notebooks' working directories (kernels).
        Default: $HUB_COLLAB_DATA_DIR, else ./hub-collab-data.""",
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.path.abspath(_env("HUB_COLLAB_DATA_DIR", default="hub-collab-data"))

    db_url = Unicode(
        help="""SQLAlchemy URL of the store (notebooks, CRDT update log, permissions, audit).
        Default: $HUB_COLLAB_DB_URL, else SQLite in `data_dir`. Use PostgreSQL
        (postgresql://...) when running several replicas.""",
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        return _env("HUB_COLLAB_DB_URL", default=f"sqlite:///{os.path.join(self.data_dir, 'hub-collab.sqlite')}")

    policies_dir = Unicode(
        help="""Folder holding the Casbin model (`model.conf`) and the global policy lines
        (`policy.csv`) that decide every permission (docs/permissions.md, "Extending the
        model"). Checked at start: a broken model or line stops the service with an error
        naming the file. Default: $HUB_COLLAB_POLICIES_DIR, else the shipped `policies/`.""",
    ).tag(config=True)

    @default("policies_dir")
    def _default_policies_dir(self) -> str:
        return _env("HUB_COLLAB_POLICIES_DIR", default="")

    cookie_secret = Bytes(
        help="""Secret that signs the service's login cookie. Default: hex from
        $HUB_COLLAB_COOKIE_SECRET or $JUPYTERHUB_COOKIE_SECRET, else the file
        `cookie_secret_file` (created with 32 random bytes, mode 0600, if missing).
        Replicas must share it.""",
    ).tag(config=True)

    cookie_secret_file = Unicode(
        help="File holding the hex cookie secret. Default: `data_dir`/cookie_secret.",
    ).tag(config=True)

    @default("cookie_secret_file")
    def _default_cookie_secret_file(self) -> str:
        return _env("HUB_COLLAB_COOKIE_SECRET_FILE", default=os.path.join(self.data_dir, "cookie_secret"))

    service_name = Unicode(help="The service's name in the Hub. Default: $JUPYTERHUB_SERVICE_NAME or 'collab'.").tag(config=True)

    @default("service_name")
    def _default_service_name(self) -> str:
        return _env("JUPYTERHUB_SERVICE_NAME", default="collab")

    base_url = Unicode(
        help="""URL prefix the service is served under (the Hub's service prefix).
        Default: $JUPYTERHUB_SERVICE_PREFIX, else /services/<service_name>/.""",
    ).tag(config=True)

    @default("base_url")
    def _default_base_url(self) -> str:
        return _env("JUPYTERHUB_SERVICE_PREFIX", default=f"/services/{self.service_name}/")

    @validate("base_url")
    def _slashes(self, proposal: Any) -> str:
        value = str(proposal.value)
        return "/" + value.strip("/") + "/" if value.strip("/") else "/"

    ip = Unicode(help="Address to listen on. Default: the host of $JUPYTERHUB_SERVICE_URL, else 127.0.0.1.").tag(config=True)

    @default("ip")
    def _default_ip(self) -> str:
        url = _env("JUPYTERHUB_SERVICE_URL")
        return (urlparse(url).hostname or "127.0.0.1") if url else "127.0.0.1"

    port = Integer(help="Port to listen on. Default: the port of $JUPYTERHUB_SERVICE_URL, else 10101.").tag(config=True)

    @default("port")
    def _default_port(self) -> int:
        url = _env("JUPYTERHUB_SERVICE_URL")
        return (urlparse(url).port or 10101) if url else 10101

    hub_api_url = Unicode(help="The Hub's API URL. Default: $JUPYTERHUB_API_URL.").tag(config=True)

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str:
        return _env("JUPYTERHUB_API_URL", default="http://127.0.0.1:8081/hub/api")

    api_token = Unicode(help="The service's Hub API token. Default: $JUPYTERHUB_API_TOKEN.").tag(config=True)

    @default("api_token")
    def _default_api_token(self) -> str:
        return _env("JUPYTERHUB_API_TOKEN")

    max_unread_bytes = Integer(
        8 * 1024 * 1024,
        help="""Backpressure: while more than this many bytes sent to a connection are unread,
        the service reads nothing more from it (its next frame waits).""",
    ).tag(config=True)

    max_queued_bytes = Integer(
        32 * 1024 * 1024,
        help="""A connection with more than this many bytes sent to it and unread (a client
        that stopped reading, while others' edits keep coming) is closed with code 1008:
        one client cannot grow the service's memory without bound.""",
    ).tag(config=True)

    unread_timeout = Float(
        30.0,
        help="""A connection held back by backpressure whose client reads nothing for this
        many seconds is closed with code 1008.""",
    ).tag(config=True)

    max_message_size = Integer(
        4 * 1024 * 1024,
        help="""Largest WebSocket message a client may send, in bytes. A larger one
        is answered with an error `too_large` and the connection stays (up to twice this
        size; beyond that the connection is closed with a close frame, code 1009 and a
        reason naming both sizes).""",
    ).tag(config=True)

    max_doc_bytes = Integer(
        2 * 1024 * 1024,
        help="""Largest size of one cell's document, in bytes: its source, metadata and
        attachments (edits that would grow it past this are refused with `too_large`).
        An imported notebook is held to it too, for each cell's source, metadata and
        attachments, for each cell's outputs and for the notebook's metadata: a larger
        one is refused (413 `too_large`, naming the cell) and nothing is created.
        Measured as the encoded document (for an import, first by a lower bound of it:
        every string's UTF-8 bytes). 2 MiB holds a long source, or outputs with a few
        plots; a larger cell is a sign of data that belongs in a file.""",
    ).tag(config=True)

    max_cells = Integer(
        5000,
        help="""Most cells a notebook may have when it is imported (`POST api/notebooks`
        with `content`); more are refused (413 `too_large`) and nothing is created.
        Every cell is two documents that a client opening the notebook subscribes to,
        and course notebooks rarely have more than a few hundred cells: 5,000 leaves
        room for the largest while bounding what one import costs (a few seconds of an
        import worker's CPU, not of the service's event loop).""",
    ).tag(config=True)

    max_import_bytes = Integer(
        20 * 1024 * 1024,
        help="""Most bytes an imported notebook may hold in all: its cells' sources,
        outputs, metadata and attachments and its own metadata, counted as the UTF-8
        bytes of every string (keys too) and a byte for any other value, which is a
        little less than the size of its `.ipynb` file. More is refused (413
        `too_large`, naming the cell at which the limit is passed) and nothing is
        created. 20 MiB holds a lecture with a hundred plots (a PNG is typically
        30-100 KB); it bounds the memory and the time one import takes. A request body
        is also bounded by `max_request_bytes`: keep that larger (JSON escapes make a
        body bigger than what it holds).""",
    ).tag(config=True)

    import_processes = Integer(
        2,
        help="""Worker processes that build imported notebooks: parse the request,
        check the limits, validate nbformat, build and encode the documents and store
        them. An import so never holds the service's event loop (or its GIL), which
        every other request needs. At most this many imports run at once; more wait
        in line. Each worker is a Python process of about 100 MB, started with the
        service at a lower CPU priority (nice 10).""",
    ).tag(config=True)

    @validate("import_processes")
    def _import_processes(self, proposal: Any) -> int:
        value = int(proposal.value)
        if value < 1:
            raise ValueError(f"import_processes must be at least 1, got {value}")
        return value

    max_request_bytes = Integer(
        32 * 1024 * 1024,
        help="Largest REST request body (for example an imported notebook), in bytes.",
    ).tag(config=True)

    allowed_origins = List(
        Unicode(),
        help="""Origins (scheme://host[:port]) allowed to open the WebSocket besides
        the service's own. '*' allows any (not recommended with cookie login).""",
    ).tag(config=True)

    group_refresh_interval = Float(
        15.0,
        help="""Seconds between refreshes of Hub group memberships. A change of a
        user's groups reaches their connected clients within this time.""",
    ).tag(config=True)

    redis_url = Unicode(
        help="""Redis URL (redis://host:6379/0) joining several replicas: doc updates,
        awareness, chat, kernel state and permission changes travel over Redis pub/sub,
        the home replica of each notebook holds a lease in Redis, and logins in progress
        are shared. Empty (the default, $HUB_COLLAB_REDIS_URL if set): one replica, an
        in-process bus. Several replicas also need a shared PostgreSQL `db_url` and a
        shared cookie secret.""",
    ).tag(config=True)

    @default("redis_url")
    def _default_redis_url(self) -> str:
        return _env("HUB_COLLAB_REDIS_URL")

    redis_prefix = Unicode(
        "collab:",
        help="""Prefix of every Redis channel and key this service uses, so that several
        deployments (or test runs) can share one Redis.""",
    ).tag(config=True)

    replica_id = Unicode(
        help="""This replica's name on the bus. Default: $HUB_COLLAB_REPLICA_ID, else the
        host name and a random suffix (unique per process start).""",
    ).tag(config=True)

    @default("replica_id")
    def _default_replica_id(self) -> str:
        return _env("HUB_COLLAB_REPLICA_ID", default=f"{socket.gethostname()}-{secrets.token_hex(3)}")

    lease_ttl = Float(
        5.0,
        help="""Seconds a notebook's home lease lasts without renewal. When the home
        replica dies, another takes over within about this time plus one second.""",
    ).tag(config=True)

    catchup_interval = Float(
        30.0,
        help="""Seconds between safety catch-ups: each replica re-reads the update log of
        its open notebooks and reloads permissions, in case a pub/sub message was lost
        without a visible gap.""",
    ).tag(config=True)

    checkpoint_every = Integer(
        2000,
        help="Updates to a notebook after which its docs are checkpointed and the log compacted.",
    ).tag(config=True)

    idle_unload_seconds = Float(
        300.0,
        help="Seconds after the last client leaves a notebook before it is checkpointed and unloaded from memory.",
    ).tag(config=True)

    chat_max_length = Integer(
        4000,
        help="""Longest chat message, in characters (Unicode code points). A longer
        one is refused with the error `too_large` and nothing is stored.""",
    ).tag(config=True)

    chat_rate = Float(
        1.0,
        help="""Chat messages (posts and edits) per second one user may send to one
        notebook, on average, once `chat_burst` is used up. More are refused with
        `rate_limited` and a `retry_after` in seconds; nothing is stored. Other users
        and other notebooks are not affected. Counted per replica. 0 disables the limit.""",
    ).tag(config=True)

    chat_burst = Integer(
        10,
        help="""Chat messages one user may send to one notebook in a quick burst
        before `chat_rate` applies (the size of the token bucket).""",
    ).tag(config=True)

    chat_page_size = Integer(
        50,
        help="""Chat messages in a history page when the client does not say
        (`limit` of REST `GET api/notebooks/{id}/chat` and of the WebSocket
        `chat_history`). Clients may ask for 1 to 500; this must be in that range too.""",
    ).tag(config=True)

    @validate("chat_page_size")
    def _chat_page_size(self, proposal: Any) -> int:
        value = int(proposal.value)
        if not 1 <= value <= MAX_PAGE_SIZE:
            raise ValueError(f"chat_page_size must be from 1 to {MAX_PAGE_SIZE}, got {value}")
        return value

    comment_max_length = Integer(
        4000,
        help="""Longest comment on a cell, in characters (Unicode code points). A longer
        one is refused with the error `too_large` and nothing is stored.""",
    ).tag(config=True)

    comment_rate = Float(
        1.0,
        help="""Comments (new threads, replies and edits) per second one user may write
        in one notebook, on average, once `comment_burst` is used up. More are refused
        with `rate_limited` and a `retry_after` in seconds; nothing is stored. Other
        users and other notebooks are not affected. Counted per replica. 0 disables
        the limit.""",
    ).tag(config=True)

    comment_burst = Integer(
        10,
        help="""Comments one user may write in one notebook in a quick burst before
        `comment_rate` applies (the size of the token bucket).""",
    ).tag(config=True)

    comment_page_size = Integer(
        50,
        help="""Threads (or notices) in a page when the client does not say (`limit` of
        `GET api/notebooks/{id}/comments` and of the WebSocket `comment_list`). Clients
        may ask for 1 to 200; this must be in that range too.""",
    ).tag(config=True)

    comment_max_threads_per_cell = Integer(
        100,
        help="""Most comment threads one cell may have; one more is refused with
        `too_many_threads` (413). Bounds what listing a cell's threads costs.""",
    ).tag(config=True)

    comment_max_per_thread = Integer(
        200,
        help="""Most comments (the first one and the replies) one thread may have; one
        more is refused with `thread_full` (413). Bounds what a thread costs to send.""",
    ).tag(config=True)

    @validate("comment_page_size")
    def _comment_page_size(self, proposal: Any) -> int:
        value = int(proposal.value)
        if not 1 <= value <= MAX_COMMENT_PAGE:
            raise ValueError(f"comment_page_size must be from 1 to {MAX_COMMENT_PAGE}, got {value}")
        return value

    history_burst_seconds = Float(
        30.0,
        help="""Edits of one cell by one author with less than this many seconds between
        them are one version in the cell's history (its timeline, what a restore goes back
        to). Versions also end where the author changes, and at every ten minutes of the
        clock (docs/history.md).""",
    ).tag(config=True)

    @validate("history_burst_seconds")
    def _history_burst_seconds(self, proposal: Any) -> float:
        value = float(proposal.value)
        if not 0 < value <= 3600:
            raise ValueError(f"history_burst_seconds must be more than 0 and at most 3600, got {value}")
        return value

    history_keep_days = Integer(
        0,
        help="""How long every single update stays in the history. 0 (the default): keep
        everything, every keystroke with its author and time, forever. N: `hub-collab
        prune-history` (run it daily, from cron or a Kubernetes CronJob) merges, for
        every cell, output and index document, the updates of each day that ended more
        than N days ago into one version per day, which keeps the day's authors; a
        notebook can then be seen as it was at the end of each of those days, no finer.
        The history of deleted notebooks is removed with them (docs/history.md).""",
    ).tag(config=True)

    @validate("history_keep_days")
    def _history_keep_days(self, proposal: Any) -> int:
        value = int(proposal.value)
        if value < 0:
            raise ValueError(f"history_keep_days must be 0 (keep everything) or a number of days, got {value}")
        return value

    kernel_cull_idle_seconds = Float(
        3600.0,
        help="""Seconds a kernel may sit idle (nothing running or queued) before it is
        shut down; its notebook's clients see the state `shutdown`, and the next
        execution starts a fresh kernel. 0 disables culling.""",
    ).tag(config=True)

    kernel_env = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="""Extra environment variables for every kernel. Kernels otherwise get only
        PATH, LANG, LANGUAGE, LC_*, TZ, TMPDIR, the PYTHON* variables Python needs to
        start, and HOME (their working directory): never the service's own
        environment. JUPYTERHUB_* and HUB_COLLAB_* names are refused.""",
    ).tag(config=True)

    @validate("kernel_env")
    def _kernel_env(self, proposal: Any) -> dict[str, str]:
        value = dict(proposal.value)
        bad = sorted(k for k in value if forbidden_name(k))
        if bad:
            raise ValueError(f"kernel_env may not set {', '.join(bad)}: the service's secrets stay out of kernels")
        return value

    kernel_provider = Unicode(
        help="""Where kernels run. `hub`: on the users' own Hub servers (per-user mode: the
        runner's default server; shared mode: a server of the notebook's owner, chosen with
        their consent), started through the Hub when stopped; the service's Hub token needs
        a role with the scopes `servers`, `access:servers` and `read:users` (docs/install.md).
        `gateway`: on the Kernel/Enterprise Gateway at `kernel_gateway_url`. `local`: as
        processes of the service's own OS user, for one user or development only: code in
        them can read everything the service holds, so choosing it is the admin's explicit
        choice, and then every page says that kernels are not isolated. This is the default
        resource; with `hub`, users may also pick their named servers, and the gateway when
        `kernel_gateway_url` is set (the kernel picker). Default:
        $HUB_COLLAB_KERNEL_PROVIDER, else `hub`.""",
    ).tag(config=True)

    @default("kernel_provider")
    def _default_kernel_provider(self) -> str:
        return _env("HUB_COLLAB_KERNEL_PROVIDER", default="hub")

    @validate("kernel_provider")
    def _kernel_provider(self, proposal: Any) -> str:
        value = str(proposal.value)
        if value not in ("hub", "gateway", "local"):
            raise ValueError(f"kernel_provider must be 'hub', 'gateway' or 'local', got {value!r}")
        return value

    kernel_gateway_url = Unicode(
        help="""Base URL of the Kernel Gateway or Enterprise Gateway, e.g.
        http://gateway:8888/: the resource `gateway` (the default one with `kernel_provider =
        'gateway'`, one users may pick with `hub`). Kernels get the Hub user as
        KERNEL_USERNAME. Default: $HUB_COLLAB_GATEWAY_URL.""",
    ).tag(config=True)

    max_queued_per_user = Integer(
        200,
        help="""Cells one user may have waiting to run in one notebook (its kernels together);
        more are refused with `queue_full` (429). Run all (or below) queues as many as fit
        and lists the others in its answer (`not_queued`).""",
    ).tag(config=True)

    max_queued_per_notebook = Integer(
        1000,
        help="""Cells all users together may have waiting to run in one notebook; more are
        refused with `queue_full` (429).""",
    ).tag(config=True)

    server_start_timeout = Float(
        120.0,
        help="""How long the `hub` provider waits for a user's stopped server to start (with
        progress in the page) before it says the server did not become ready in time (the
        Hub may still finish the start; the next run finds it).""",
    ).tag(config=True)

    max_kernels_per_user = Integer(
        3,
        help="""Kernels kept per notebook and user (per notebook in shared mode). Switching
        to another resource or kernelspec keeps the previous kernel, so switching back finds
        its state; a new kernel past this number shuts down the least recently used idle
        one (none idle: `too_many_kernels`).""",
    ).tag(config=True)

    @default("kernel_gateway_url")
    def _default_gateway_url(self) -> str:
        return _env("HUB_COLLAB_GATEWAY_URL")

    kernel_gateway_token = Unicode(
        help="""The gateway's auth token, sent as `Authorization: token ...`. Default:
        $HUB_COLLAB_GATEWAY_TOKEN, else $JUPYTER_GATEWAY_AUTH_TOKEN. Never logged.""",
    ).tag(config=True)

    @default("kernel_gateway_token")
    def _default_gateway_token(self) -> str:
        return _env("HUB_COLLAB_GATEWAY_TOKEN", "JUPYTER_GATEWAY_AUTH_TOKEN")

    hub_public_url = Unicode(
        help="""The Hub's public URL (its proxy), where users' servers are reached by the
        `hub` kernel provider. Default: $JUPYTERHUB_PUBLIC_HUB_URL without its `hub/`,
        else $JUPYTERHUB_PUBLIC_URL without the service's prefix.""",
    ).tag(config=True)

    @default("hub_public_url")
    def _default_hub_public_url(self) -> str:
        hub = _env("JUPYTERHUB_PUBLIC_HUB_URL")
        if hub:
            return hub.rstrip("/").removesuffix("/hub") + "/"
        public = _env("JUPYTERHUB_PUBLIC_URL")
        if public and public.rstrip("/").endswith(self.base_url.rstrip("/")):
            return public.rstrip("/")[: -len(self.base_url.rstrip("/"))] + "/"
        return ""

    kernels_survive_stop = Bool(
        help="""Leave kernels running when the service stops, and find them again when it
        starts (a run in progress goes on and its later output lands in its cell; what it
        printed while no service listened is missing, and the cell says so). Off: a stop
        shuts every kernel down and running cells end as interrupted. Kernels always
        outlive a crash (kill -9): the next start finds them again, or marks their runs
        lost if they are gone. Idle kernels found again are culled as usual. Default: on,
        except with the `local` provider (its kernels are the service's own processes).""",
    ).tag(config=True)

    @default("kernels_survive_stop")
    def _default_survive(self) -> bool:
        return self.kernel_provider != "local"

    max_output_bytes = Integer(
        10_000_000,
        help="""Most output, in bytes, one execution of one cell may write. Output past
        it is dropped and the cell shows a notice saying so (errors are still kept).""",
    ).tag(config=True)

    output_flush_interval = Float(
        0.02,
        help="""Seconds between writes of a running cell's buffered output into its
        document: output arriving faster is batched into one update per interval, so
        a flood of tiny messages does not swamp clients or the store.""",
    ).tag(config=True)

    widget_max_message_bytes = Integer(
        65_536,
        help="""Largest change to a widget a client may send (`widget_update`'s `state` or
        `widget_custom`'s `content`, as JSON), in bytes. Larger ones are refused with
        `too_large` and reach no kernel (docs/widgets.md).""",
    ).tag(config=True)

    widget_max_state_bytes = Integer(
        10_000_000,
        help="""Most state, in bytes (as JSON), that the widget models of one owner's
        kernels of a notebook may hold in its documents together: a user's per-user
        kernels (also those kept after a switch), or the notebook's shared ones. A
        kernel's new models or updates past it are not kept (logged); a client's change
        past it is refused with `too_large`.""",
    ).tag(config=True)

    widget_max_notebook_state_bytes = Integer(
        50_000_000,
        help="""Most state, in bytes (as JSON), that the widget models of all of one
        notebook's kernels may hold together: per-user kernels, and kernels kept after a
        switch. It bounds what a notebook's documents hold when each of many users fills
        their share, `widget_max_state_bytes`; a kernel's models or updates past it are
        not kept (logged), a client's change past it is refused with `too_large`.""",
    ).tag(config=True)

    widget_rate_limit = Float(
        30.0,
        help="""Changes per second one user may send to one widget (and as many at once):
        a slider dragged faster is refused with `rate_limited` beyond it; the page sends
        at most 20 a second.""",
    ).tag(config=True)

    kernel_start_timeout = Float(
        60.0,
        help="""Seconds a kernel may take to start and answer. Past it the start fails:
        the execution ends with `kernel_start_failed` and a notice in the cell.""",
    ).tag(config=True)

    metrics_enabled = Bool(
        True,
        help="""Collect Prometheus metrics and serve them at `{base_url}metrics`
        (docs/operations.md lists them). Off: nothing is counted and that URL answers 404.""",
    ).tag(config=True)

    authenticate_prometheus = Bool(
        True,
        help="""Require a Hub login for `{base_url}metrics`, as JupyterHub does for its own: a
        Hub API token (or login) whose scopes include `read:metrics`, or a Hub admin. Turn it
        off only where the network keeps everyone but the scraper away from the service's
        port (a Kubernetes NetworkPolicy): the metrics are then open to whoever reaches it.""",
    ).tag(config=True)

    log_format = Unicode(
        help="""How log lines are written: `text` (for people) or `json` (one JSON object per
        line, for a log collector: timestamp, level, logger, message and, when known, the
        request id (one per HTTP request or WebSocket connection), the user and the notebook).
        Every audit entry is also logged (logger `hub_collab.audit`, with actor, action,
        target, notebook and detail) in both formats, whatever the log level.
        Default: $HUB_COLLAB_LOG_FORMAT, else `text`.""",
    ).tag(config=True)

    @default("log_format")
    def _default_log_format(self) -> str:
        return _env("HUB_COLLAB_LOG_FORMAT", default="text")

    @validate("log_format")
    def _log_format(self, proposal: Any) -> str:
        value = str(proposal.value)
        if value not in LOG_FORMATS:
            raise ValueError(
                f"log_format must be 'text' or 'json', got {value!r} (HubCollab's own setting, which"
                " replaces traitlets' format string: a c.Application.log_format sets it too)"
            )
        return value

    # -- runtime state --------------------------------------------------------------------
    sessions_opened = 0
    #: the loop time each user's binary frames may take, over all their connections
    frame_budgets: FrameBudgets
    #: True once start_service has finished: stores open, bus connected or degraded
    started = False
    metrics: Metrics | None = None

    @catch_config_error
    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        self.frame_budgets = FrameBudgets()
        if self.subapp is not None:
            return
        if os.path.exists(self.config_file) or self._config_given(argv):
            self.load_config_file(self.config_file)
        self.init_logging()
        if self.generate_config:
            return
        self.init_data_dir()
        self.init_secrets()
        self.init_hub_auth()
        self.init_metrics()
        self.init_store()
        self.init_bus()
        self.init_kernels()
        self.init_chat()
        self.init_comments()
        self.init_history()
        self.init_commands()
        self.init_lifecycle()
        self.init_wiring()
        self.init_tornado()

    def _config_given(self, argv: list[str] | None) -> bool:
        args = argv if argv is not None else sys.argv[1:]
        return any(a in ("-f", "--config") or a.startswith(("--f=", "--config=", "-f=")) for a in args)

    def get_default_logging_config(self) -> dict[str, Any]:
        """traitlets' console handler, with ``log_format``'s formatter and the context filter."""
        config: dict[str, Any] = super().get_default_logging_config()
        formatter = config.get("formatters", {}).get("console")
        if formatter is not None:
            if self.log_format == "json":
                config["formatters"]["console"] = {"()": "hub_collab.logs.JSONFormatter"}
            else:
                formatter["format"] = TEXT_LOG_FORMAT
        handler = config.get("handlers", {}).get("console")
        if handler is not None:
            config.setdefault("filters", {})["context"] = {"()": "hub_collab.logs.ContextFilter"}
            handler["filters"] = ["context"]
        return config

    def init_logging(self) -> None:
        """Our loggers, tornado's and the root logger (libraries, warnings) write through
        the application's handler; audit lines through one of their own, at any log level."""
        self.log.propagate = False
        handlers = self.log.handlers
        for name in ("hub_collab", "tornado.access", "tornado.application", "tornado.general"):
            logger = logging.getLogger(name)
            logger.handlers = handlers
            logger.setLevel(self.log_level)  # type: ignore[arg-type]
            logger.propagate = False
        root = logging.getLogger()
        if not root.handlers:  # (a program that embeds the service keeps its own)
            root.handlers = handlers
        if self.log_format == "json":
            logging.captureWarnings(True)  # a warning is a JSON line too
        audit = logging.getLogger(logs.AUDIT_LOGGER)
        audit.propagate = False
        audit.setLevel(logging.INFO)
        audit.handlers = []
        for console in handlers[:1]:
            handler = logging.StreamHandler(getattr(console, "stream", sys.stderr))
            handler.setFormatter(console.formatter)
            handler.addFilter(logs.ContextFilter())
            audit.addHandler(handler)

    def init_metrics(self) -> None:
        """The metrics registry of this application (none if ``metrics_enabled`` is off)."""
        self.metrics = Metrics() if self.metrics_enabled else None

    def init_data_dir(self) -> None:
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)

    def init_secrets(self) -> None:
        if self.cookie_secret:
            return
        env = _env("HUB_COLLAB_COOKIE_SECRET", "JUPYTERHUB_COOKIE_SECRET")
        if env:
            self.cookie_secret = bytes.fromhex(env.strip())
            return
        path = self.cookie_secret_file
        if os.path.exists(path):
            if os.stat(path).st_mode & 0o077:
                self.log.warning("cookie secret file %s is readable by others; chmod 600 it", path)
            with open(path) as f:
                self.cookie_secret = bytes.fromhex(f.read().strip())
            return
        secret = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret.hex())
        self.cookie_secret = secret

    def init_hub_auth(self) -> None:
        oauth_class: type[HubOAuth] = SharedHubOAuth if self.redis_url else HubOAuth
        extra = {"redis_url": self.redis_url, "redis_prefix": self.redis_prefix + "oauth:"} if self.redis_url else {}
        self.hub_auth = oauth_class(
            parent=self,
            **extra,
            api_url=self.hub_api_url,
            api_token=self.api_token,
            base_url=self.base_url,
            cache_max_age=60,
        )
        self.groups = GroupDirectory(self.hub_api_url, self.api_token, interval=self.group_refresh_interval)

    def init_store(self) -> None:
        if self.max_import_bytes > self.max_request_bytes:
            self.log.warning(
                "max_import_bytes (%d) is larger than max_request_bytes (%d): imports are limited by the "
                "request's size first; raise max_request_bytes too",
                self.max_import_bytes, self.max_request_bytes,
            )  # fmt: skip
        self.engine = make_engine(self.db_url)
        self.init_schema()
        self.store = Store(self.engine)
        self.store.start()
        self.permissions = PermissionStore(
            self.db_url, engine=self.engine, policies_dir=self.policies_dir or None
        )
        if self.engine.dialect.name == "sqlite":
            # parts of a large import that a crash cut short (Store.create_notebook),
            # before the permission store loads their rules
            left = self.store.remove_unfinished_notebooks(rule_class(self.permissions.table).__table__)
            if left:
                self.log.warning("removed what unfinished imports left of %d notebooks: %s", len(left), ", ".join(left))
        self.permissions.start()
        self.update_log = UpdateLog(self.store, metrics=self.metrics)
        self.rooms = RoomManager(
            self.store,
            self.update_log,
            self.permissions,
            max_doc_bytes=self.max_doc_bytes,
            max_cells=self.max_cells,
            max_import_bytes=self.max_import_bytes,
            import_processes=self.import_processes,
            checkpoint_every=self.checkpoint_every,
            idle_unload_seconds=self.idle_unload_seconds,
            metrics=self.metrics,
        )

    def init_schema(self) -> None:
        """Create the schema in an empty database; refuse to start on an older or newer one.

        Replicas starting together take turns (:func:`~hub_collab.schema.migration_lock`).
        An older schema is never upgraded here: an operator runs ``hub-collab upgrade-db``.
        """
        try:
            done = ensure_schema(self.engine)
        except SchemaError as exc:
            self.log.critical("%s", exc)
            self.exit(1)
        if done == "created":
            self.log.info("created the database schema (revision %s)", head_revision())

    def init_chat(self) -> None:
        self.chat = ChatService(
            self.engine,
            rooms=self.rooms,
            permissions=self.permissions,
            groups_of=self.groups.groups_of,
            store=self.store,
            max_length=self.chat_max_length,
            rate=self.chat_rate,
            burst=self.chat_burst,
            page_size=self.chat_page_size,
            relay=self.replicator,
        )
        self.chat.start()

    def init_comments(self) -> None:
        self.comments = CommentService(
            self.engine,
            rooms=self.rooms,
            permissions=self.permissions,
            groups_of=self.groups.groups_of,
            store=self.store,
            max_length=self.comment_max_length,
            rate=self.comment_rate,
            burst=self.comment_burst,
            page_size=self.comment_page_size,
            max_threads_per_cell=self.comment_max_threads_per_cell,
            max_comments_per_thread=self.comment_max_per_thread,
            relay=self.replicator,
        )
        self.comments.start()
    def init_history(self) -> None:
        self.history = HistoryService(self.store, self.chat, burst_seconds=self.history_burst_seconds)

    def init_kernels(self) -> None:
        self.kernels = KernelService(
            self.rooms,
            self.store,
            data_dir=self.data_dir,
            kernel_env=self.kernel_env,
            cull_idle_seconds=self.kernel_cull_idle_seconds,
            max_output_bytes=self.max_output_bytes,
            flush_interval=self.output_flush_interval,
            start_timeout=self.kernel_start_timeout,
            replicas=self.replicator,
            survive_stop=self.kernels_survive_stop,
            resources=self.make_kernel_resources(),
            max_kernels_per_user=self.max_kernels_per_user,
            max_queued_per_user=self.max_queued_per_user,
            max_queued_per_notebook=self.max_queued_per_notebook,
            metrics=self.metrics,
            widget_limits=WidgetLimits(
                max_message_bytes=self.widget_max_message_bytes,
                max_state_bytes=self.widget_max_state_bytes,
                max_notebook_state_bytes=self.widget_max_notebook_state_bytes,
                rate=self.widget_rate_limit,
            ),
        )

    def make_kernel_resources(self) -> KernelResources:
        """The providers this deployment has (``kernel_provider`` the default, the
        gateway beside ``hub`` when configured), with their settings checked."""
        providers: dict[str, KernelProvider] = {self.kernel_provider: self.make_kernel_provider()}
        if self.kernel_provider == "hub" and self.kernel_gateway_url:
            providers["gateway"] = self._gateway_provider()
        default = {"hub": "server:", "gateway": "gateway", "local": "local"}[self.kernel_provider]
        return KernelResources(providers, default)

    def _gateway_provider(self) -> RemoteProvider:
        headers = {"Authorization": f"token {self.kernel_gateway_token}"} if self.kernel_gateway_token else {}
        return RemoteProvider("gateway", self.kernel_gateway_url, headers)

    def make_kernel_provider(self) -> KernelProvider:
        """The provider ``kernel_provider`` names, with its settings checked."""
        if self.kernel_provider == "gateway":
            if not self.kernel_gateway_url:
                raise ValueError("kernel_provider 'gateway' needs kernel_gateway_url (or $HUB_COLLAB_GATEWAY_URL)")
            return self._gateway_provider()
        if self.kernel_provider == "hub":
            if not self.hub_public_url:
                raise ValueError(
                    "kernel_provider 'hub' (the default) needs hub_public_url, the Hub's public URL"
                    " (or set kernel_provider to 'gateway', or to 'local' for one user or development)"
                )
            if not self.api_token:
                raise ValueError("kernel_provider 'hub' needs the service's Hub API token")
            servers = HubServers(self.hub_api_url, self.hub_public_url, service_token=True)
            return HubProvider(servers, self.api_token, start_timeout=self.server_start_timeout)
        # in JSON logs, a kernel's own stdout/stderr would be lines that are not JSON
        return LocalProvider(output_files=self.log_format == "json")

    def init_bus(self) -> None:
        self.bus = make_bus(self.redis_url, self.replica_id, prefix=self.redis_prefix, metrics=self.metrics)
        self.replicator = Replicator(
            self.bus,
            self.rooms,
            self.permissions,
            lease_ttl=self.lease_ttl,
            catchup_interval=self.catchup_interval,
            metrics=self.metrics,
        )

    def init_commands(self) -> None:
        """One registry, filled by the services that own the commands; one dispatcher."""
        self.command_registry = CommandRegistry()
        structure.register_commands(self.command_registry, audit=self.store.add_audit)
        register_kernel_commands(self.command_registry, self.kernels)
        register_chat_commands(self.command_registry, self.chat)
        register_comment_commands(self.command_registry, self.comments)
        register_history_commands(self.command_registry, self.history)
        self.commands = Dispatcher(self.command_registry, router=self.replicator)

    def init_lifecycle(self) -> None:
        self.lifecycle = NotebookLifecycle(
            store=self.store,
            rooms=self.rooms,
            permissions=self.permissions,
            kernels=self.kernels,
            chat=self.chat,
            comments=self.comments,
            relay=self.replicator,
        )

    def init_wiring(self) -> None:
        """Register every observer, in this order.

        1. Rooms: the replicator first (it subscribes the room's bus channel and, with
           one replica, makes this replica its home), then the kernel service (which
           asks whether this replica is home before it marks lost runs), then the
           comment service (it marks the threads of the cells an index change removed).
        2. Home leases: the kernel service (lost runs, stopping kernels, settings).
        3. Commands forwarded by other replicas run through the dispatcher.
        4. Events from other replicas: chat messages, comments, deleted notebooks.
        5. Permission changes: the rooms (``index`` mirror, every session's ``caps``),
           then the other replicas (they reload the notebook's policies).
        6. Hub group changes: the connected sessions' rights.
        7. Metrics: the state gauges are read from the rooms and the kernel service.
        """
        self.rooms.observe(self.replicator)
        self.rooms.observe(self.kernels)
        self.rooms.observe(self.comments)
        self.replicator.observe_home(self.kernels)
        self.replicator.serve_commands(self.commands)
        self.replicator.on_event("chat", self.chat.remote_event)
        self.replicator.on_event("comment", self.comments.remote_event)
        self.replicator.on_event("deleted", self.lifecycle.deleted_elsewhere)
        self.permissions.add_listener(self.rooms.permissions_changed)
        self.permissions.add_listener(self.replicator.permissions_changed)
        self.groups.listeners.append(self._groups_changed)
        if self.metrics is not None:
            self.metrics.watch(rooms=self.rooms, kernels=self.kernels)

    def init_tornado(self) -> None:
        prefix = self.base_url
        handlers: list[Any] = []
        for module in (pages, ws, api_notebooks, api_chat, api_comments, api_kernels, api_history, api_health, api_metrics):
            for route in module.default_handlers:
                handlers.append((url_path_join(prefix, route[0]) if route[0] else prefix, *route[1:]))
        handlers.append((prefix.rstrip("/"), web.RedirectHandler, {"url": prefix}))
        handlers.append((url_path_join(prefix, "api/.*"), api_base.NotFoundAPIHandler))
        self.tornado_settings = {
            "collab": _services(self),
            "hub_auth": self.hub_auth,
            "cookie_secret": self.cookie_secret,
            "login_url": self.hub_auth.login_url,
            "static_path": os.path.join(HERE, "static"),
            "static_url_prefix": url_path_join(prefix, "static/"),
            "template_path": os.path.join(HERE, "templates"),
            "websocket_max_message_size": 2 * self.max_message_size,
            "websocket_ping_interval": 30,
            "xsrf_cookies": False,  # HubOAuth checks _xsrf on cookie-authenticated state changes
            "log_function": log_request,
        }
        self.web_app = web.Application(handlers, **self.tornado_settings)

    def identity_for(self, model: dict[str, Any]) -> Identity:
        name = str(model["name"])
        return Identity(name=name, groups=self.groups.groups_of(name, model.get("groups")), admin=bool(model.get("admin")))

    def _groups_changed(self, users: set[str]) -> None:
        for room in list(self.rooms.rooms.values()):
            touched = False
            for session in list(room.sessions):
                if session.identity.name in users:
                    session.identity = Identity(session.identity.name, self.groups.groups_of(session.identity.name), session.identity.admin)
                    touched = True
            if touched:
                room.refresh_all()

    async def start_service(self) -> None:
        """Listen, then open the store's writer, the bus and the group directory.

        The HTTP server listens first, so that the probes answer while the rest starts
        (``api/health/live`` 200, ``api/health/startup`` and ``api/health`` 503); every
        other request is answered 503 until :attr:`started`.
        """
        # The event loop shares the GIL with the threads that read large frames and commit
        # updates. A thread that wants the GIL waits for the switch interval (5 ms by
        # default) each time it asks; a commit asks several times. While one client keeps
        # the loop or the reader busy, everyone's acknowledgement would wait tens of ms.
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        # tornado drops the connection past max_body_size; leave room for the handlers'
        # own check, which answers 413 JSON
        self.http_server = HTTPServer(self.web_app, xheaders=True, max_body_size=2 * self.max_request_bytes)
        self.http_server.listen(self.port, self.ip)
        self.log.info("hub-collab %s listening on http://%s:%s%s; starting", __version__, self.ip, self.port, self.base_url)
        if self.metrics is not None:
            self.metrics.start()
        self.update_log.start()
        await self.bus.start()
        await self.bus.wait_started(BUS_START_TIMEOUT)
        await self.replicator.start()
        self.rooms.start()
        self.kernels.start()
        if self.api_token:
            try:
                await self.groups.refresh()
            except Exception as exc:
                self.log.warning("Hub groups not available yet (%s); retrying in the background", exc)
            self.groups.start()
        self._settle_heap()
        self.started = True
        self.log.info("hub-collab started")

    @staticmethod
    def _settle_heap() -> None:
        """Make the first join as fast as the later ones, and collections short.

        pycrdt's first ``Doc`` in the event loop imports anyio's asyncio backend (~10 ms);
        do it now, not in the first client's join. Then move everything loaded so far
        (modules, the permission policies) out of the cyclic collector's generations:
        it lives as long as the process, and every full collection would walk it
        again, in the middle of some client's request.
        """
        Doc()
        gc.collect()
        gc.freeze()

    async def stop_service(self) -> None:
        """Stop accepting, then persist everything: nothing acknowledged is lost."""
        self.started = False
        if getattr(self, "http_server", None) is not None:
            self.http_server.stop()
        for room in list(self.rooms.rooms.values()):
            for session in list(room.sessions):
                session.close(1001, "server shutting down")
        await self.groups.stop()
        await self.lifecycle.stop()
        await self.kernels.stop()
        await self.rooms.stop()
        await self.replicator.stop()
        await self.bus.stop()
        await self.update_log.stop()
        self.chat.stop()
        await self.comments.drain()
        self.comments.stop()
        self.permissions.stop()
        self.store.stop()
        if self.metrics is not None:
            self.metrics.stop()

    def write_config_file(self) -> None:
        if os.path.exists(self.config_file):
            self.log.error("%s exists; not overwriting it", self.config_file)
            self.exit(1)
        with open(self.config_file, "w") as f:
            f.write(self.generate_config_file())
        self.log.info("wrote %s", self.config_file)

    def start(self) -> None:
        if self.subapp is not None:
            self.subapp.start()
            return
        if self.generate_config:
            self.write_config_file()
            return
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        await self.start_service()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.log.info("shutting down")
        await self.stop_service()


def _services(app: HubCollab) -> Services:
    """The handlers' view of the application (mypy checks that HubCollab provides it)."""
    return app


def main(argv: list[str] | None = None) -> None:
    HubCollab.launch_instance(argv)


if __name__ == "__main__":
    main()
