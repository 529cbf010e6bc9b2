"""hub-collab: a JupyterHub service for real-time collaborative notebooks.

Use :class:`hub_collab.app.HubCollab` to run the service (``hub-collab``), and
:class:`hub_collab.client.CollabClient` to talk to it from Python.
"""

from ._version import __version__

__all__ = ["__version__"]
