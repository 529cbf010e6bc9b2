"""The environment a kernel starts with: an allowlist, never the service's own.

The service process holds secrets in its environment (the Hub API token, the
cookie secret, the database URL, every ``JUPYTERHUB_*`` and ``HUB_COLLAB_*``
variable). A kernel runs code written by notebook users, so it gets only what
it needs to run (:func:`kernel_environment`): ``PATH``, the locale, ``TZ``,
``TMPDIR``, the ``PYTHON*`` variables that decide how Python itself starts,
``HOME`` set to the kernel's working directory, plus ``HubCollab.kernel_env``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: variables copied from the service's environment when set
PASSED_THROUGH = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONNOUSERSITE",
        "PYTHONDONTWRITEBYTECODE",
    }
)
#: prefixes of variables copied from the service's environment
PASSED_PREFIXES = ("LC_",)
#: prefixes that are never given to a kernel, not even through ``kernel_env``
FORBIDDEN_PREFIXES = ("JUPYTERHUB_", "HUB_COLLAB_", "JPY_API_TOKEN")


def forbidden_name(name: str) -> bool:
    """True for variable names that carry the service's secrets or identity."""
    return name.upper().startswith(FORBIDDEN_PREFIXES)


def kernel_environment(
    home: str,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a kernel whose working directory (and ``HOME``) is ``home``.

    ``base`` defaults to ``os.environ``; only allowlisted names are taken from it.
    ``extra`` (``HubCollab.kernel_env``) is added last; forbidden names in it are
    dropped (the trait's validator already refuses them).
    """
    source = os.environ if base is None else base
    env = {
        name: value
        for name, value in source.items()
        if (name in PASSED_THROUGH or name.startswith(PASSED_PREFIXES)) and not forbidden_name(name)
    }
    env.setdefault("PATH", os.defpath)
    env["HOME"] = home
    for name, value in (extra or {}).items():
        if not forbidden_name(name):
            env[str(name)] = str(value)
    return env
