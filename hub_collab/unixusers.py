"""Unix accounts for Hub users whose servers run as themselves.

JupyterHub's ``LocalProcessSpawner`` runs each user's server as the Unix account of the
same name, so that account must exist: :func:`ensure_unix_user` creates it when missing
(``useradd -m``). Only root may do that, and only root may start processes as other
users: :func:`require_root` says so plainly instead of failing later and obscurely.

Used by ``hub-collab demo`` run as root and by the tests' spawning Hub
(``tests/hubfixtures.py``); :mod:`hub_collab.localspawn` configures the Hub for it.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

#: ``useradd`` exit status: the user name (or a group of that name) is already in use
USERADD_IN_USE = 9


class NotRootError(RuntimeError):
    """Something that needs root (creating accounts, running servers as users) runs as another user."""


def is_root() -> bool:
    """Whether this process may create accounts and run processes as other users."""
    return os.geteuid() == 0


def require_root(what: str, advice: str = "Run it as root (for example in a container).") -> None:
    """Raise :class:`NotRootError` naming `what` and why it needs root, unless we are root."""
    if not is_root():
        raise NotRootError(
            f"{what} needs root: it creates Unix accounts (useradd) and the Hub's "
            f"LocalProcessSpawner runs each user's server as that user. {advice}"
        )


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def ensure_unix_user(name: str, *, comment: str = "hub-collab user", timeout: float = 10.0) -> bool:
    """Make sure the Unix account `name` exists and has a home directory; True if created now.

    A missing account is created with ``useradd -m -s /bin/bash``, and its new home is
    made private (0700: other users' kernels may not read it, whatever the system's
    ``HOME_MODE``). An existing account is left as it is (a missing home directory is
    created, private). Several processes may call this at once (test workers, a demo
    beside the tests): while another ``useradd`` holds the lock on ``/etc/passwd``, the
    call is retried until `timeout` seconds have passed. Needs root.
    """
    require_root(f"creating the Unix account {name!r}")
    created = False
    entry = _account(name)
    deadline = time.monotonic() + timeout
    while entry is None:
        try:
            done = subprocess.run(
                ["useradd", "-m", "-s", "/bin/bash", "-c", comment, name],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except FileNotFoundError as exc:
            raise RuntimeError(f"cannot create the Unix account {name!r}: no useradd") from exc
        entry = _account(name)
        if done.returncode == 0 and entry is not None:
            created = True
            Path(entry.pw_dir).chmod(0o700)
            break
        if entry is not None:  # created meanwhile by someone else
            break
        if done.returncode == USERADD_IN_USE:
            # not the user (it is missing), so a group of that name: retrying cannot help
            raise RuntimeError(
                f"cannot create the Unix account {name!r}: {done.stderr.strip()} "
                "(create it yourself, e.g. useradd -m -g <its group>)"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"cannot create the Unix account {name!r} within {timeout}s: "
                f"useradd exited with {done.returncode}: {done.stderr.strip()}"
            )
        # most likely another useradd holds the lock on /etc/passwd: try again shortly
        time.sleep(0.25)
    home = Path(entry.pw_dir)
    if not home.is_dir():
        home.mkdir(mode=0o700, parents=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    return created
