"""Storage credentials reach a worker through its environment, never inside a unit.

A unit is pickled, queued, retried and may be logged by whatever runs it, so it carries only the
storage options that are no secret (`endpoint_url`, `anon`, a region). The secrets a user gives
as storage options are taken out here and turned into the environment variables the storage
client reads itself: for S3 (s3fs, botocore) `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
`AWS_SESSION_TOKEN`. An executor then sets that environment in each worker (`cluster.executor`).
Other protocols' clients read their own variables, which vz does not set: a secret given to them
as a storage option is refused, with the way round it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = ["Env", "Reached", "apply_env", "environment", "public_options", "split_secrets", "worker_env"]

# A worker's environment: a variable's value, or None for a variable that must not be set there.
Env = dict[str, str | None]

S3_PREFIXES = ("s3://", "s3a://")
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# s3fs's own option names, and botocore's (inside `client_kwargs`), for the same three secrets.
S3_SECRETS = {"key": "AWS_ACCESS_KEY_ID", "secret": "AWS_SECRET_ACCESS_KEY", "token": "AWS_SESSION_TOKEN"}
S3_CLIENT_SECRETS = {name.lower(): name for name in AWS_VARIABLES}  # aws_access_key_id, ...
# Options whose names say they are secrets, in the other fsspec clients (HTTP, SFTP, Azure).
OTHER_SECRETS = ("password", "secret", "account_key", "sas_token", "connection_string", "client_secret")


class Reached(Protocol):
    """A place workers reach (a store, a folder): its path or URL and the options that reach it."""

    @property
    def path(self) -> str: ...

    @property
    def is_url(self) -> bool: ...

    @property
    def storage_options(self) -> dict: ...


def split_secrets(path: str, options: Mapping[str, Any]) -> tuple[dict, Env]:
    """Return `options` without their secrets, and the environment that gives a worker those secrets.

    A local path takes no options at all. When any S3 secret is given, all three AWS variables are
    decided (a missing one is unset), as passing them to s3fs did: a session token left in a
    worker's environment by someone else never pairs with the key given here. Raises `ValueError`
    for a secret of another protocol.
    """
    if "://" not in path or path.startswith("file://"):
        return {}, {}
    public = dict(options)
    if not path.startswith(S3_PREFIXES):
        found = [name for name in OTHER_SECRETS if name in public]
        if found:
            raise ValueError(
                f"--storage-option {found[0]}= is a secret, and a secret never travels with the work: set the"
                f" variable your storage client reads for it on every worker instead (vz does this for S3 only)"
            )
        return public, {}
    given = {var: public.pop(name) for name, var in S3_SECRETS.items() if name in public}
    if isinstance(public.get("client_kwargs"), Mapping):
        client = dict(public["client_kwargs"])
        given.update({var: client.pop(name) for name, var in S3_CLIENT_SECRETS.items() if name in client})
        public["client_kwargs"] = client
    if not any(value is not None for value in given.values()):
        return public, {}
    return public, {var: None if given.get(var) is None else str(given[var]) for var in AWS_VARIABLES}


def public_options(path: str, options: Mapping[str, Any]) -> dict:
    """Return the storage options a unit may carry: `options` without their secrets."""
    return split_secrets(path, options)[0]


def worker_env(places: Iterable[Reached]) -> Env:
    """Return the environment that gives a worker the secrets of every place it reaches.

    Raises `ValueError` for a secret no variable carries, or for two places whose secrets differ
    (one environment holds one set of AWS credentials).
    """
    env: Env = {}
    for place in places:
        for name, value in split_secrets(place.path, place.storage_options)[1].items():
            if name in env and env[name] != value:
                raise ValueError(
                    f"{place.path} is reached with other credentials than another store of this run: a worker's"
                    " environment holds one set; give both the same credentials"
                )
            env[name] = value
    return env


def apply_env(env: Mapping[str, str | None]) -> None:
    """Set `env`'s variables in this process (remove those that are None)."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def environment(env: Mapping[str, str | None]) -> Iterator[None]:
    """Set `env`'s variables in this process for the block; put back what was there before."""
    before = {name: os.environ.get(name) for name in env}
    apply_env(env)
    try:
        yield
    finally:
        apply_env(before)
