"""OAuth login state shared by replicas.

HubOAuth keeps the state of a login in progress (next URL, PKCE verifier) in
process memory, so a login begun on one replica could not finish on another.
:class:`SharedHubOAuth` keeps it in Redis instead (short-lived keys), which is
what several replicas behind one proxy need. One replica alone keeps using
HubOAuth as it is.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from jupyterhub.services.auth import HubOAuth, _ExpiringDict
from traitlets import Instance, Unicode, default


class RedisStates(_ExpiringDict):  # type: ignore[misc]
    """The part of a dict HubOAuth uses, stored in Redis with an expiry."""

    def __init__(self, url: str, prefix: str, max_age: int) -> None:
        super().__init__(max_age=max_age)
        self.client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self.prefix = prefix

    def __setitem__(self, key: str, value: Any) -> None:
        self.client.set(self.prefix + key, json.dumps(value), ex=int(self.max_age) or 600)

    def __getitem__(self, key: str) -> Any:
        raw = self.client.get(self.prefix + key)
        if raw is None:
            raise KeyError(key)
        return json.loads(raw)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self.client.exists(self.prefix + key))

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def pop(self, key: str, default: Any = "_raise") -> Any:
        raw = self.client.getdel(self.prefix + key)
        if raw is None:
            if default == "_raise":
                raise KeyError(key)
            return default
        return json.loads(raw)

    def __delitem__(self, key: str) -> None:
        self.client.delete(self.prefix + key)

    def purge_expired(self) -> None:
        return None  # Redis expires the keys

    def __len__(self) -> int:
        return 0


class SharedHubOAuth(HubOAuth):  # type: ignore[misc]
    """HubOAuth whose in-progress login state lives in Redis."""

    redis_url = Unicode("", help="Redis URL for the shared OAuth state.").tag(config=True)
    redis_prefix = Unicode("collab:oauth:", help="Key prefix for the shared OAuth state.").tag(config=True)

    _oauth_states = Instance(_ExpiringDict)

    @default("_oauth_states")
    def _default_shared_states(self) -> RedisStates:
        return RedisStates(self.redis_url, self.redis_prefix, self.oauth_state_max_age)
