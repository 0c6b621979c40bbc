"""Notifications (the `notify` group): a submission done, a failure, a stake change, a round
resolved, live scores outside the validation range, sent through apprise (one URL per target:
Slack, Discord, ntfy, email, a JSON webhook, ...) and the desktop (notify-send, osascript).

    notifier = Notifier.from_config(cfg.notify)
    notifier.send(*message_submitted("my_model", 812, "abc-123", dry_run=False))

A target that fails never raises: its `Delivery` says ok=False with one redacted line. No
secret reaches a message, a log line or a Delivery: URLs that hold one (webhook tokens, email
passwords) come from the environment variable `notify.urls_env` names or an apprise config
file outside the repository, never from `notify.urls`; the pieces of those URLs, and the
Numerai API keys, are masked in the title and body sent, in every Delivery, and in apprise's
and urllib3's log records while numerlab loads URLs or sends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from numerlab import settings
from numerlab.errors import NumerlabError, message_line

log = logging.getLogger(__name__)

EVENTS = ("submitted", "failed", "stake_changed", "round_resolved", "live_out_of_range")
GROUP = "notify"
KEYS = ("urls", "urls_env", "config_file", "desktop", "events", "timeout_s")
DESKTOP = "desktop"  # the Delivery target of a desktop notification
DESKTOP_CHOICES = ("auto", True, False)
# Numerai's API keys (conf/tournament/default.yaml's variable names): masked wherever found
NUMERAI_KEY_ENVS = ("NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY")
MASK = "***"
MIN_SECRET_LEN = 4  # shorter URL pieces ("x", "yes") are options, not secrets
# loggers that print URLs while apprise loads or sends (the request line, the POST URL)
LEAKY_LOGGERS = ("apprise", "urllib3", "requests")
TEST_TITLE = "numerlab: test notification"
TEST_BODY = "numerlab's notifications reach this target."
_URL_IN_TEXT = re.compile(r"[A-Za-z][\w+.-]*://[^\s'\"]+")
# apprise's notification type of each event (it picks an icon or a colour from it)
_TYPES = {"submitted": "success", "failed": "failure", "stake_changed": "info",
          "round_resolved": "info", "live_out_of_range": "warning"}


class Message(NamedTuple):
    """An event with its title and body: `notifier.send(*message)`."""

    event: str
    title: str
    body: str


@dataclass(frozen=True)
class Delivery:
    """One attempt to one target."""

    event: str
    target: str         # redacted: scheme + host only ("slack://", "json://127.0.0.1:8123")
    ok: bool
    title: str          # as sent (secrets masked)
    body: str
    error: str | None   # one line, redacted


# --- messages: short and plain, from plain values -------------------------------------------

def _nmr(amount: float | None) -> str:
    return "unknown" if amount is None else f"{amount:.4f} NMR"


def _round(round_number: int | None) -> str:
    return f"round {round_number}" if round_number is not None else "this round"


def message_submitted(model: str, round_number: int | None, upload_id: str | None,
                      dry_run: bool = False) -> Message:
    """A submission uploaded (or written, not sent, in a dry run)."""
    if dry_run:
        return Message("submitted", f"numerlab: {model} {_round(round_number)} (dry run)",
                       f"Predictions for {model}, {_round(round_number)}, written; nothing "
                       "uploaded (tournament.submit=false).")
    return Message("submitted", f"numerlab: {model} submitted for {_round(round_number)}",
                   f"Predictions for {model} uploaded to Numerai for {_round(round_number)}; "
                   f"upload id {upload_id}.")


def message_failed(what: str, error: str, model: str | None = None,
                   round_number: int | None = None) -> Message:
    """`what` (a task, a step: "submit", "download") failed with the one-line `error`."""
    where = ", ".join(part for part in (model, _round(round_number) if round_number is not None
                                        else None) if part)
    first = error.strip().splitlines()[0] if error.strip() else "no message"
    return Message("failed", f"numerlab: {what} failed" + (f" ({where})" if where else ""),
                   first)


def message_stake_changed(model: str, old: float | None, new: float | None,
                          round_number: int | None = None, dry_run: bool = False) -> Message:
    """A model's stake moved from `old` to `new` NMR (or would, in a dry run)."""
    verb = "would change" if dry_run else "changed"
    return Message("stake_changed", f"numerlab: stake of {model} {verb}",
                   f"Stake of {model} {verb} from {_nmr(old)} to {_nmr(new)}"
                   + (f" for {_round(round_number)}" if round_number is not None else "") + ".")


def message_round_resolved(model: str, round_number: int, scores: Mapping[str, float | None],
                           payout: float | None = None) -> Message:
    """A round resolved for a model: its final scores (name -> value) and payout."""
    shown = ", ".join(f"{name} {'—' if value is None else f'{value:+.4f}'}"
                      for name, value in scores.items()) or "no scores"
    tail = f"; payout {payout:+.4f} NMR" if payout is not None else ""
    return Message("round_resolved", f"numerlab: round {round_number} resolved for {model}",
                   f"Round {round_number}, {model}: {shown}{tail}.")


def message_live_out_of_range(model: str, round_number: int | None, metric: str, live: float,
                              low: float, high: float) -> Message:
    """A live score outside the range the model's validation scores span."""
    side = "below" if live < low else "above"
    return Message("live_out_of_range",
                   f"numerlab: {model} live {metric} {side} validation range",
                   f"{_round(round_number).capitalize()}, {model}: live {metric} {live:+.4f} "
                   f"is outside the validation range [{low:+.4f}, {high:+.4f}].")


# --- settings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """The `notify` group, checked."""

    urls: tuple[str, ...]
    urls_env: str | None
    config_file: str | None
    desktop: str | bool
    events: tuple[str, ...]
    timeout_s: float

    @classmethod
    def of(cls, cfg: Mapping[str, Any] | None) -> Settings:
        """The checked settings of a `notify` config (None: notify=none, nothing on)."""
        if cfg is None:
            return cls((), None, None, False, EVENTS, 10.0)
        settings.keys(GROUP, cfg, KEYS)
        settings.required(GROUP, cfg, KEYS)
        desktop = cfg["desktop"]
        if not any(desktop is c or (isinstance(desktop, str) and desktop == c)
                   for c in DESKTOP_CHOICES):
            raise NumerlabError(f"{GROUP}.desktop={desktop!r} is unknown (allowed: auto, "
                                f"true, false)")
        return cls(
            urls=_strings(f"{GROUP}.urls", cfg["urls"], "apprise URLs"),
            urls_env=settings.text(f"{GROUP}.urls_env", cfg["urls_env"] or None, optional=True,
                                   what="the name of an environment variable"),
            config_file=settings.text(f"{GROUP}.config_file", cfg["config_file"] or None,
                                      optional=True, what="a file path"),
            desktop=desktop,
            events=tuple(settings.choice(f"{GROUP}.events", event, EVENTS)
                         for event in _strings(f"{GROUP}.events", cfg["events"], "event names")),
            timeout_s=settings.number(f"{GROUP}.timeout_s", cfg["timeout_s"], above=0))


def _strings(key: str, value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(
            isinstance(item, str) and item.strip() for item in value):
        raise NumerlabError(f"{key} must be a list of {what}")
    return tuple(item.strip() for item in value)


def check_settings(cfg: Mapping[str, Any] | None) -> None:
    """The `notify` group's values and its `urls` (parsed, holding no secret), before any
    work; the environment and the config file are read when a Notifier is built."""
    found = Settings.of(cfg)
    if found.urls:
        _load_urls(found.urls, f"{GROUP}.urls", Redactor(), secret_source=False)


# --- redaction ------------------------------------------------------------------------------

class Redactor:
    """Masks known secrets in text: the longest first, each also URL-quoted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LEN:
                self.secrets.update({secret, quote(secret, safe=""), unquote(secret)})
        self._ordered = sorted(self.secrets, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def line(self, text: str) -> str:
        """One redacted line: the first non-empty line of `text`."""
        lines = [part.strip() for part in text.splitlines() if part.strip()]
        return self(lines[0]) if lines else ""


def url_pieces(url: str, keep_host: str | None = None, query: bool = True) -> set[str]:
    """The parts of an apprise URL that may be secret: the URL, its user and password, its
    host (unless it is `keep_host`, a real host name), path segments and (`query`) query
    values."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return {url}
    try:
        parts = urlsplit("x://" + rest)
        hostname = parts.hostname or ""
    except ValueError:  # an unparseable port or bracket: the whole URL only
        return {url, rest}
    pieces = {url, rest, parts.path}
    userinfo, _, hostport = parts.netloc.rpartition("@")
    pieces.update([userinfo, *userinfo.split(":")])
    if keep_host is None or hostname.lower() != keep_host.lower():
        pieces.update([hostport, hostname])
    pieces.update(parts.path.split("/"))
    if query:
        pieces.update(value for _, value in parse_qsl(parts.query, keep_blank_values=True))
        pieces.update([parts.query, *parts.query.split("&")])
    return {piece for piece in pieces if len(piece) >= MIN_SECRET_LEN}


def plugin_pieces(plugin: Any, keep_host: str | None) -> set[str]:
    """`url_pieces` of the URL apprise holds for a target, whose query is mostly apprise's
    own options (method=POST, retry=0): of those, only the values apprise masks itself."""
    full, private = plugin.url(), plugin.url(privacy=True)
    masked = {value for (_, value), (_, shown) in zip(
        parse_qsl(urlsplit(full).query), parse_qsl(urlsplit(private).query), strict=False)
        if value != shown}
    return url_pieces(full, keep_host, query=False) | masked


class _RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose args do not fit its format: keep its format only
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


@contextlib.contextmanager
def redacted_logs(redact: Redactor) -> Iterator[None]:
    """While inside: every record of apprise's, urllib3's and requests' loggers is masked by
    `redact` before any handler sees it (a filter on each logger; removed after)."""
    names = {name for name in logging.root.manager.loggerDict
             if name.split(".")[0] in LEAKY_LOGGERS}
    names.update(("apprise", "urllib3.connectionpool"))
    loggers = [logging.getLogger(name) for name in sorted(names)]
    log_filter = _RedactingFilter(redact)
    for logger in loggers:
        logger.addFilter(log_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(log_filter)


# --- targets --------------------------------------------------------------------------------

def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else "?"


def _protocols(plugin: Any) -> tuple[str, ...]:
    found: list[str] = []
    for attr in ("protocol", "secure_protocol"):
        value = getattr(plugin, attr, None)
        found.extend([value] if isinstance(value, str) else list(value or ()))
    return tuple(p.lower() for p in found)


def describe(plugin: Any, raw_url: str | None = None) -> tuple[str, str | None]:
    """(the target as Delivery names it: scheme + host only, the host kept or None). The host
    shows only where the service's URL has a host (json://, mailto://, ntfy:// self-hosted),
    never where that place holds a token (slack://TOKEN/..., discord://ID/TOKEN)."""
    protocols = _protocols(plugin)
    scheme = _scheme(raw_url) if raw_url else ""
    if scheme not in protocols:
        scheme = protocols[0] if protocols else "?"
    host = getattr(plugin, "host", None)
    if "host" not in getattr(plugin, "template_tokens", {}) or not host:
        return f"{scheme}://", None
    port = getattr(plugin, "port", None)
    if raw_url:  # the port the user wrote, not a service's default (mailto's 25)
        with contextlib.suppress(ValueError):
            port = urlsplit("x://" + raw_url.partition("://")[2]).port
    return f"{scheme}://{host}" + (f":{port}" if isinstance(port, int) else ""), str(host)


@dataclass
class _AppriseTarget:
    plugin: Any
    description: str

    def send(self, asset: Any, notify_type: str, title: str, body: str, timeout_s: float
             ) -> tuple[bool, str | None]:
        import apprise

        one = apprise.Apprise(asset=asset)
        one.add(self.plugin)
        result = one.notify(body=body, title=title, notify_type=notify_type,
                            body_format=apprise.NotifyFormat.TEXT, timeout=timeout_s)
        if result:
            return True, None
        entries = [entry for service in result for entry in service.logs()]
        complaints = [e.message for e in entries if e.level in ("WARNING", "ERROR", "CRITICAL")]
        if complaints:
            return False, complaints[-1]
        return False, f"not delivered ({result.status.name.lower()})"


@dataclass
class _DesktopTarget:
    command: str          # the notify-send or osascript executable
    env: dict[str, str] | None
    description: str = DESKTOP

    def send(self, asset: Any, notify_type: str, title: str, body: str, timeout_s: float
             ) -> tuple[bool, str | None]:
        if Path(self.command).name.startswith("osascript"):
            script = f"display notification {_applescript(body)} with title {_applescript(title)}"
            argv = [self.command, "-e", script]
        else:
            urgency = "critical" if notify_type == "failure" else "normal"
            argv = [self.command, "--app-name=numerlab", f"--urgency={urgency}", "--",
                    title, body]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                                  env=self.env, check=False)
        except subprocess.TimeoutExpired:
            return False, f"{Path(self.command).name} did not finish in {timeout_s:g}s"
        except OSError as exc:
            return False, f"{Path(self.command).name}: {message_line(exc)}"
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()
            return False, (f"{Path(self.command).name} exited with status {done.returncode}"
                           + (f": {said.splitlines()[-1]}" if said else ""))
        return True, None


def _applescript(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def desktop_command(desktop: str | bool, environ: Mapping[str, str]) -> str | None:
    """The desktop notifier to run (notify-send on Linux with a graphical session, osascript
    on macOS), or None: `auto` uses one where present; `true` requires the command."""
    if desktop is False:
        return None
    name = "osascript" if sys.platform == "darwin" else "notify-send"
    command = shutil.which(name, path=environ.get("PATH", os.defpath))
    if desktop is True:
        if command is None:
            raise NumerlabError(f"{GROUP}.desktop=true but {name} is not on PATH "
                                f"(set notify.desktop=auto or false)")
        return command
    session = sys.platform == "darwin" or any(
        environ.get(var) for var in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"))
    return command if session else None


def _asset() -> Any:
    import apprise

    # memory: apprise keeps no state on disk (no files under the user's home)
    return apprise.AppriseAsset(storage_mode="memory")


def _load_urls(urls: Sequence[str], key: str, redact: Redactor, secret_source: bool,
               asset: Any | None = None) -> list[_AppriseTarget]:
    """One target per URL. A URL apprise cannot parse is one line naming `key` and the URL's
    scheme only; in `notify.urls` (not `secret_source`) a URL apprise masks a part of (a
    token, a password) is refused: it belongs in the environment."""
    import apprise

    asset = asset or _asset()
    targets = []
    for url in urls:
        # while apprise parses it, mask every piece of a secret URL, its host too
        parsing = Redactor(redact.secrets | (url_pieces(url) if secret_source else set()))
        with redacted_logs(parsing):
            parsed = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
        if parsed is None:
            raise NumerlabError(f"{key}: apprise cannot parse a {_scheme(url)}:// URL "
                                f"(see https://appriseit.com/services/ for its form)")
        target, host = describe(parsed, url)
        if secret_source:
            redact.add(url_pieces(url, keep_host=host) | plugin_pieces(parsed, host))
        elif parsed.url(privacy=True) != parsed.url():
            raise NumerlabError(f"{key} has a {_scheme(url)}:// URL holding a secret (a token "
                                f"or password): put it in the environment variable "
                                f"{GROUP}.urls_env names instead")
        targets.append(_AppriseTarget(parsed, target))
    return targets


def _config_file_urls(path_text: str, redact: Redactor, asset: Any) -> list[_AppriseTarget]:
    """The targets of an apprise config file (text or YAML) outside any git work tree."""
    import apprise

    key = f"{GROUP}.config_file"
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise NumerlabError(f"{key} {path} does not exist")
    for parent in path.resolve().parents:
        if (parent / ".git").exists():
            raise NumerlabError(f"{key} {path} is inside the git repository {parent}; move it "
                                f"outside (e.g. ~/.config/numerlab/apprise.yml): it holds "
                                f"secrets")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise NumerlabError(f"cannot read {key} {path}: {message_line(exc)}") from None
    parsing = Redactor(redact.secrets)
    for url in _URL_IN_TEXT.findall(text):
        parsing.add(url_pieces(url))
    config = apprise.AppriseConfig(asset=asset)
    with redacted_logs(parsing):
        loaded = config.add_config(text)
        plugins = list(config.services()) if loaded else []
    if not plugins:
        raise NumerlabError(f"{key} {path}: apprise found no notification URL in it")
    targets = []
    for plugin in plugins:
        target, host = describe(plugin)
        # the file's own spelling of each URL is unknown here: its pieces as apprise holds them
        redact.add(plugin_pieces(plugin, host))
        targets.append(_AppriseTarget(plugin, target))
    return targets


# --- the notifier ---------------------------------------------------------------------------

class Notifier:
    """Sends an event's title and body to every configured target."""

    def __init__(self, targets: Sequence[Any], events: Iterable[str], redact: Redactor,
                 timeout_s: float, asset: Any | None = None) -> None:
        self.targets = list(targets)
        self.events = tuple(events)
        self.redact = redact
        self.timeout_s = timeout_s
        self._asset = asset

    @classmethod
    def from_config(cls, cfg_notify: Mapping | None, environ: Mapping[str, str] | None = None,
                    secrets: Iterable[str | None] = (),
                    secret_envs: Iterable[str] = NUMERAI_KEY_ENVS) -> Notifier:
        """The notifier `cfg_notify` (the `notify` group; None: none) declares, its URLs read
        from `notify.urls`, the variable `notify.urls_env` names in `environ` (default: this
        process's environment) and `notify.config_file`. Masked everywhere: `secrets` (e.g.
        the API keys a tournament client read from a keys file), the values of the variables
        `secret_envs` names, and the pieces of the URLs from the environment and the file."""
        found = Settings.of(cfg_notify)
        env = os.environ if environ is None else environ
        redact = Redactor()
        redact.add(secrets)
        redact.add(env.get(name) for name in secret_envs)
        targets: list[Any] = []
        asset = None
        if found.urls or found.urls_env or found.config_file:
            asset = _asset()
            targets += _load_urls(found.urls, f"{GROUP}.urls", redact, False, asset)
        if found.urls_env:
            from_env = [url for url in re.split(r"[\s,]+", env.get(found.urls_env, "")) if url]
            targets += _load_urls(from_env, f"{GROUP}.urls_env ({found.urls_env})", redact,
                                  True, asset)
        if found.config_file:
            targets += _config_file_urls(found.config_file, redact, asset)
        command = desktop_command(found.desktop, env)
        if command is not None:
            targets.append(_DesktopTarget(command, None if environ is None else dict(environ)))
        return cls(targets, found.events, redact, found.timeout_s, asset)

    @classmethod
    def for_run(cls, cfg: Mapping, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier of a run's whole config: its `notify` group (none when absent), the
        Numerai API keys masked wherever `tournament` says they come from (its variables,
        or its keys file)."""
        secrets: list[str | None] = []
        secret_envs: tuple[str, ...] = NUMERAI_KEY_ENVS
        tournament = cfg.get("tournament")
        if tournament is not None:
            from numerlab.tournament import KeySource

            with contextlib.suppress(NumerlabError):  # keys a task needs fail in the task
                source = KeySource.from_config(tournament)
                secret_envs = (*NUMERAI_KEY_ENVS, source.public_id_env, source.secret_key_env)
                secrets.extend(source.keys(environ)[:2])
        return cls.from_config(cfg.get("notify"), environ, secrets, secret_envs)

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    def send(self, event: str, title: str, body: str) -> list[Delivery]:
        """Never raises for a target that fails (returns ok=False); raises NumerlabError only
        for an unknown event name. Events not in cfg `notify.events` are skipped (empty
        list)."""
        if event not in EVENTS:
            raise NumerlabError(f"unknown notification event {event!r} (events: "
                                f"{', '.join(EVENTS)})")
        if event not in self.events:
            return []
        return self._deliver(event, title, body)

    def send_test(self) -> list[Delivery]:
        """A test notification through every target, whatever `notify.events` holds."""
        return self._deliver("test", TEST_TITLE, TEST_BODY)

    def _deliver(self, event: str, title: str, body: str) -> list[Delivery]:
        if not self.targets:
            return []
        title, body = self.redact(title), self.redact(body)
        notify_type = _TYPES.get(event, "info")
        with redacted_logs(self.redact), ThreadPoolExecutor(len(self.targets)) as pool:
            outcomes = list(pool.map(
                lambda target: self._attempt(target, notify_type, title, body), self.targets))
        deliveries = []
        for target, (ok, error) in zip(self.targets, outcomes, strict=True):
            delivery = Delivery(event, target.description, ok, title, body,
                                None if ok else (self.redact.line(error or "") or "failed"))
            if ok:
                log.info("notify: %s sent to %s", event, delivery.target)
            else:
                log.warning("notify: %s not delivered to %s: %s", event, delivery.target,
                            delivery.error)
            deliveries.append(delivery)
        return deliveries

    def _attempt(self, target: Any, notify_type: str, title: str, body: str
                 ) -> tuple[bool, str | None]:
        try:
            return target.send(self._asset, notify_type, title, body, self.timeout_s)
        except Exception as exc:  # a target's failure is its Delivery, never the caller's
            return False, f"{type(exc).__name__}: {message_line(exc)}"
