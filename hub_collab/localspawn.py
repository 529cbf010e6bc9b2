"""Users' Jupyter servers on this machine, each run as its user's own Unix account.

:class:`SingleUserEnv` is what such a server runs: a Python interpreter and the
site-packages holding ``jupyterhub`` (``jupyterhub-singleuser``), ``jupyter_server``
and ``ipykernel``, both usable by every user. :meth:`SingleUserEnv.find` picks them
(see there why this service's own may not do); :func:`spawner_settings` is the
JupyterHub configuration that runs them with ``LocalProcessSpawner``, named servers
allowed. The accounts come from :mod:`hub_collab.unixusers`.

Used by ``hub-collab demo`` run as root and by the tests' spawning Hub
(``tests/hubfixtures.py::SpawningHub``), so both run users' servers the same way.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

#: the packages a user's server needs in its own environment (not the service's)
SINGLEUSER_PACKAGES = ("jupyterhub", "jupyter_server", "ipykernel")
#: ... and those its kernels use if this environment has them (shared widgets need
#: ipywidgets in the kernel; the service itself does not)
SINGLEUSER_EXTRAS = ("ipywidgets",)
#: where they are installed when this environment is out of other users' reach
SITE_CACHE = Path("/var/cache/hub-collab")


def usable_by_others(path: Path) -> bool:
    """Whether any user may reach `path` (o+x on every directory above) and read or run it."""
    real = path.resolve()
    for parent in real.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(real.stat().st_mode & stat.S_IROTH)


def singleuser_python() -> str:
    """A Python interpreter that users may run, of this interpreter's version.

    This (virtual) environment's interpreter may live where other users cannot reach
    it (pyenv under ``/root``, mode 0700): then a system Python of the same minor
    version is used, with this environment's site-packages (same ABI). Raises
    :class:`RuntimeError` saying what to install when there is none.
    """
    candidates = [Path(sys.executable)]
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates += [Path(d) / name for d in ("/usr/local/bin", "/usr/bin")]
    for candidate in candidates:
        if candidate.exists() and usable_by_others(candidate):
            return str(candidate)
    raise RuntimeError(
        f"no {name} that other users may run: {sys.executable} resolves to "
        f"{Path(sys.executable).resolve()}, which they cannot reach; install {name} "
        "system-wide (/usr/bin) or make the interpreter's directories o+x"
    )


def _make_readable(root: Path) -> None:
    """o+r on everything under `root` (and o+x on directories and executables)."""
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        extra = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() or mode & stat.S_IXUSR else 0)
        path.chmod(mode | extra)


def installed(name: str) -> bool:
    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True


def singleuser_site_packages(cache: Path = SITE_CACHE) -> str:
    """Site-packages with :data:`SINGLEUSER_PACKAGES` (and :data:`SINGLEUSER_EXTRAS`
    this environment has) that other users can read.

    This environment's, when other users can reach it. A checkout under a private
    directory (``/root``, mode 0700) is not: then the same versions are installed once
    with ``pip install --target`` into a world-readable directory under `cache`, kept
    for later runs (so the first run needs the package index, later ones do not).
    """
    site = Path(sysconfig.get_paths()["purelib"])
    if usable_by_others(site):
        return str(site)
    pins = [f"{name}=={version(name)}" for name in SINGLEUSER_PACKAGES]
    pins += [f"{name}=={version(name)}" for name in SINGLEUSER_EXTRAS if installed(name)]
    target = cache / ("site-" + "-".join(p.replace("==", "") for p in pins))
    if not (target / ".complete").exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), *pins],
            check=True,
            timeout=600,
        )
        (target / ".complete").touch()
        _make_readable(cache)
    if not usable_by_others(target):
        raise RuntimeError(f"{target} is not readable by other users: users' servers need it")
    return str(target)


@dataclass(frozen=True)
class SingleUserEnv:
    """The Python and site-packages users' servers run with (both usable by every user)."""

    python: str
    site_packages: str

    @classmethod
    def find(cls) -> SingleUserEnv:
        """This interpreter's version and packages, in a form other users may run.

        May install the packages once (:func:`singleuser_site_packages`); raises
        :class:`RuntimeError` when no interpreter fits (:func:`singleuser_python`).
        """
        return cls(singleuser_python(), singleuser_site_packages())

    def environment(self) -> dict[str, str]:
        """The server's environment (``Spawner.environment``): these packages, nothing else."""
        return {
            "PYTHONPATH": self.site_packages,
            "PYTHONNOUSERSITE": "1",
            "PATH": os.pathsep.join(
                [str(Path(self.python).parent), "/usr/local/bin", "/usr/bin", "/bin"]
            ),
        }


def spawner_settings(
    env: SingleUserEnv,
    *,
    default_url: str,
    named_server_limit: int = 5,
    timeout: int = 60,
) -> dict[str, Any]:
    """The Hub's settings (``{"Class.trait": value}``) for users' servers run as themselves.

    ``LocalProcessSpawner`` runs ``python -m jupyterhub.singleuser`` (jupyter_server) as
    the user's Unix account, in their home directory, with `env`. Users may have named
    servers besides their default one, at most `named_server_limit` (hub-collab's
    kernel picker offers them). `default_url` is where ``/user/<name>/`` sends the
    browser (``Spawner.default_url``; ``{base_url}`` is the server's own prefix).
    `timeout` bounds the server's start (``start_timeout``, ``http_timeout``).
    """
    return {
        "JupyterHub.spawner_class": "localprocess",
        "Spawner.cmd": [env.python, "-m", "jupyterhub.singleuser"],
        "Spawner.default_url": default_url,
        "Spawner.environment": env.environment(),
        "Spawner.start_timeout": timeout,
        "Spawner.http_timeout": timeout,
        "JupyterHub.allow_named_servers": True,
        "JupyterHub.named_server_limit_per_user": named_server_limit,
    }
