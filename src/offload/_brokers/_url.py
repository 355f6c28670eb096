"""Broker URLs: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////absolute.db``."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from .._clock import Clock
from .._errors import ConfigurationError
from .._install import missing_extra

SUPPORTED = (
    "memory:// (in this process), "
    "sqlite:///relative/path.db or sqlite:////absolute/path.db (durable, one machine), "
    "redis://[:password@]host:6379/0 or rediss:// (many machines), "
    "postgresql://user@host/db or postgres:// (many machines)"
)

# Which extra installs the client library of each server broker.
_EXTRAS = {"redis": ("redis", "redis"), "postgres": ("psycopg", "postgres")}


def is_in_process(url: str) -> bool:
    """Whether ``url`` names the in-process memory broker."""
    return url == "memory://"


def open_broker(url: str, clock: Clock, **options: Any) -> Any:
    """The broker for ``url``; ``options`` go to its constructor (result_ttl, ...)."""
    scheme, separator, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") and options.pop("migrate", True) is False:
        raise ConfigurationError(
            f"migrate=False is for PostgreSQL apps; {scheme} brokers migrate on their own"
        )
    if not separator or not scheme:
        raise ConfigurationError(f"{redacted(url)!r} is not a broker URL. Supported: {SUPPORTED}")
    if scheme == "memory":
        options.pop("namespace", None)  # one process: nothing to share
        if rest:
            raise ConfigurationError(
                f"{redacted(url)!r}: write just memory://. Supported: {SUPPORTED}"
            )
        from ._memory import MemoryBroker

        return MemoryBroker(clock, **options)
    if scheme == "sqlite":
        if options.pop("namespace", None) is not None:
            raise ConfigurationError(
                f"{url!r}: SQLite takes no namespace; give each app its own file"
            )
        return _open_sqlite(url, rest, clock, options)
    if scheme in ("redis", "rediss", "postgresql", "postgres"):
        return _open_server(scheme, _take_namespace(url, options), clock, options)
    raise ConfigurationError(
        f"unknown broker scheme {scheme[:40]!r} in {redacted(url)!r}. Supported: {SUPPORTED}"
    )


def _open_sqlite(url: str, rest: str, clock: Clock, options: dict[str, Any]) -> Any:
    # sqlite:///x.db -> "x.db" (relative); sqlite:////x.db -> "/x.db" (absolute),
    # as SQLAlchemy spells them. Anything before the third slash is a host.
    host, slash, path = rest.partition("/")
    path, _, query = path.partition("?")
    if host or not slash or not path:
        raise ConfigurationError(
            f"{url!r} is not a SQLite URL: write sqlite:///relative.db or "
            "sqlite:////absolute/path.db (three slashes, then the path)"
        )
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name != "synchronous":
            raise ConfigurationError(
                f"{url!r}: unknown SQLite option {name[:40]!r}; the one option is "
                "?synchronous=normal (the default) or ?synchronous=full"
            )
        options["synchronous"] = value
    from ._sqlite import SqliteBroker

    return SqliteBroker(path, clock=clock, **options)


def _require(broker: str) -> None:
    """Fail with the exact pip commands when a server broker's client is missing."""
    module, extra = _EXTRAS[broker]
    try:
        __import__(module)
    except ImportError:
        raise ConfigurationError(missing_extra(broker, module, extra)) from None


def _open_server(scheme: str, url: str, clock: Clock, options: dict[str, Any]) -> Any:
    broker = "redis" if scheme.startswith("redis") else "postgres"
    _require(broker)
    if broker == "redis":
        from ._redis import RedisBroker as Server
    else:
        from ._postgres import PostgresBroker as Server  # type: ignore[assignment]
    try:
        return Server.from_url(url, clock=clock, **options)
    except ConfigurationError:
        raise
    except Exception as error:  # noqa: BLE001 - any client's parse error is a bad URL
        reason = scrubbed(str(error).strip(), url)
        raise ConfigurationError(f"{redacted(url)}: {reason}. Supported: {SUPPORTED}") from None


_SECRET_NAMES = "password|sslpassword|passwd|pass|secret|token"
_SECRET_PARAM = re.compile(rf"(?i)((?:^|[?&;])(?:{_SECRET_NAMES})=)[^&;#]*")
# A libpq key=value DSN: password=secret, or password='with spaces'.
_SECRET_PAIR = re.compile(rf"(?i)(\b(?:{_SECRET_NAMES})\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


# ``user:password@`` anywhere (a URL with a mistyped scheme: ``redis:/:pw@host``).
_USERINFO = re.compile(r"([^\s:/@]*):[^\s@/]*@")


def redacted(url: str) -> str:
    """``url`` with every password in it replaced by ``***``, for logs and messages.

    The password of ``user:password@host``, ``?password=`` (and the like) in
    the query, and ``password=`` in a key=value DSN all go; the rest stays,
    so a reader can still tell which server was meant.

    >>> redacted("redis://:s3cret@host:6379/0?password=x")
    'redis://:***@host:6379/0?password=***'
    """
    scheme, separator, rest = url.partition("://")
    if not separator:  # not a URL: a key=value DSN, or a typo; redact what looks like one
        return _USERINFO.sub(r"\1:***@", _SECRET_PAIR.sub(r"\1***", url))
    location, slash, path = rest.partition("/")
    userinfo, at, host = location.rpartition("@")
    if at and ":" in userinfo:
        location = f"{userinfo.partition(':')[0]}:***@{host}"
    path = _SECRET_PARAM.sub(r"\1***", path)
    return f"{scheme}://{location}{slash}{path}"


def scrubbed(text: str, url: str) -> str:
    """``text`` (a client library's error about ``url``) without the passwords in ``url``."""
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return redacted(text) if "://" not in text else _SECRET_PARAM.sub(r"\1***", text)


def _secrets(url: str) -> list[str]:
    found = [m.group(2).strip("'") for m in _SECRET_PAIR.finditer(url)]
    _, separator, rest = url.partition("://")
    userinfo = rest.partition("/")[0].rpartition("@")[0]
    if separator and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    found += [urllib.parse.unquote(secret) for secret in list(found)]
    # Longest first, and not so short that scrubbing would mangle the text.
    return sorted({secret for secret in found if len(secret) >= 3}, key=len, reverse=True)


def _take_namespace(url: str, options: dict[str, Any]) -> str:
    """Move ``?namespace=`` from a server URL into ``options``: OFFLOAD_URL alone can set it."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    given = [value for name, value in query if name == "namespace"]
    if not given:
        return url
    if options.get("namespace") not in (None, given[-1]):
        raise ConfigurationError(
            f"{redacted(url)!r} says namespace={given[-1]!r} but the app was given "
            f"namespace={options['namespace']!r}: choose one"
        )
    options["namespace"] = given[-1]
    rest = urllib.parse.urlencode([(name, value) for name, value in query if name != "namespace"])
    return urllib.parse.urlunsplit(parts._replace(query=rest))
