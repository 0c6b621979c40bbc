"""The `tournament` group: the client's retry settings, where the API keys come from, and
the keys the tasks read; checked once, and the keys never in a message."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from numerlab import settings

log = logging.getLogger(__name__)

# What the tasks read of the `tournament` group besides the client's settings.
TASK_KEYS = ("model_name", "submit", "execute_stake", "allow_stale_live", "staking",
             "wallet_address")

# --- config -----------------------------------------------------------------------------

GROUP = "tournament"
"""Config path of the client's keys, used in error messages."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: per-request timeout, attempts, backoff base, breaker settings.

    Wait before retry k (k = 1, 2, ...) is min(backoff_s * 2**(k-1), MAX_BACKOFF_S) plus a
    uniform jitter in [0, backoff_s], so clients retrying together spread out."""

    timeout_s: float
    max_attempts: int
    backoff_s: float
    breaker_threshold: int
    breaker_reset_s: float


def _settings(cfg: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The values of a `tournament` config that `cls`'s fields name, each required (the
    defaults live in conf/tournament/)."""
    names = [f.name for f in fields(cls)]
    settings.required(GROUP, cfg, names)
    return {name: cfg[name] for name in names}


def check_config_keys(cfg: Mapping[str, Any]) -> None:
    """NumerlabError for a key of the `tournament` group that nothing reads (a typo such as
    `+tournament.submitt=true` must not upload nothing silently)."""
    known = ["api_url", *(f.name for f in fields(RetryPolicy)),
             *(f.name for f in fields(KeySource)), *TASK_KEYS]
    settings.keys(GROUP, cfg, known)


def retry_policy(cfg: Mapping[str, Any]) -> RetryPolicy:
    """The RetryPolicy of a `tournament` config (values checked, one-line errors)."""
    v = _settings(cfg, RetryPolicy)
    return RetryPolicy(
        timeout_s=settings.number(f"{GROUP}.timeout_s", v["timeout_s"], above=0),
        max_attempts=settings.integer(f"{GROUP}.max_attempts", v["max_attempts"], minimum=1),
        backoff_s=settings.number(f"{GROUP}.backoff_s", v["backoff_s"], minimum=0),
        breaker_threshold=settings.integer(f"{GROUP}.breaker_threshold",
                                           v["breaker_threshold"], minimum=1),
        breaker_reset_s=settings.number(f"{GROUP}.breaker_reset_s", v["breaker_reset_s"],
                                        minimum=0))


# --- keys -------------------------------------------------------------------------------

def read_keys_file(path: str | Path, public_id_env: str, secret_key_env: str
                   ) -> tuple[str | None, str | None]:
    """(public id, secret key) from a dotenv-style file: lines `NAME=value` (optionally
    `export NAME=value`, quoted values, `#` comments), looked up under the two names.

    The file must live outside any git work tree, so that it cannot be committed."""
    text = settings.secret_file_text("tournament.keys_file", path, "~/.numerai/keys.env")
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values.get(public_id_env) or None, values.get(secret_key_env) or None


@dataclass(frozen=True)
class KeySource:
    """Where the API keys come from: the two variables named `public_id_env` and
    `secret_key_env`, read from `keys_file` when it is set (a dotenv-style file outside the
    repository), else from the environment."""

    public_id_env: str
    secret_key_env: str
    keys_file: str | None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> KeySource:
        v = _settings(cfg, cls)
        env_name = "the name of an environment variable"
        return cls(
            public_id_env=settings.text(f"{GROUP}.public_id_env", v["public_id_env"],
                                        what=env_name).strip(),
            secret_key_env=settings.text(f"{GROUP}.secret_key_env", v["secret_key_env"],
                                         what=env_name).strip(),
            keys_file=settings.text(f"{GROUP}.keys_file", v["keys_file"] or None,
                                    optional=True, what="a file path"))

    def keys(self, environ: Mapping[str, str] | None = None
             ) -> tuple[str | None, str | None, str]:
        """(public id, secret key, where to set them) as found now; a key not found is
        None (an error only when a call needs it)."""
        public_env, secret_env = self.public_id_env, self.secret_key_env
        if self.keys_file:
            public_id, secret_key = read_keys_file(self.keys_file, public_env, secret_env)
            return public_id, secret_key, (f"{public_env} and {secret_env} in "
                                           f"tournament.keys_file {self.keys_file}")
        env = os.environ if environ is None else environ
        return (env.get(public_env) or None, env.get(secret_env) or None,
                f"the environment variables {public_env} and {secret_env} "
                f"(tournament.public_id_env / secret_key_env, or tournament.keys_file)")


def _missing_keys_message(public_id: str | None, secret_key: str | None,
                          keys_hint: str) -> str | None:
    """One line naming what is missing, or None when both keys are there."""
    if public_id and secret_key:
        return None
    if not public_id and not secret_key:
        missing = "the public id and the secret key are"
    else:
        missing = "the public id is" if not public_id else "the secret key is"
    return f"Numerai API keys missing: {missing} not set; set {keys_hint}"
