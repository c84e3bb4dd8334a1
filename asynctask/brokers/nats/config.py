"""NATS broker URLs: servers, credentials and asynctask's own options, parsed once.

``nats://[user:password@ | token@]host[:port][,host2[:port]...][?option=value&...]``, or
``tls://`` for TLS. Several comma-separated hosts name the seed servers of a cluster (the client
also learns the others from the cluster itself). Options:

* ``prefix`` (default ``asynctask``): names the bucket, so several apps can share an account;
* ``replicas`` (default 1): the replica count of the bucket the broker creates (1, 3 or 5 on a
  cluster); an existing bucket keeps its own;
* ``creds``: a credentials file (user JWT + NKey seed, as ``nsc`` writes it); ``nkey``: a file
  holding an NKey seed; ``token``: a token (also ``token@host``);
* ``name``: the connection name shown by the server's monitoring (default ``asynctask``);
* ``request_timeout`` (seconds, default 5): the deadline of every round trip;
  ``connect_timeout`` (seconds, default 2);
* ``tls_ca``, ``tls_cert``, ``tls_key``: files for TLS (a ``tls_*`` option implies TLS).

>>> config = NatsConfig.from_url("nats://app:s3cret@n1:4222,n2?prefix=billing&replicas=3")
>>> config.servers, config.user, config.prefix, config.replicas
(['nats://n1:4222', 'nats://n2:4222'], 'app', 'billing', 3)
>>> config.display_url
'nats://app:***@n1:4222,n2?prefix=billing&replicas=3'
"""

from __future__ import annotations

import math
import ssl
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec

from asynctask.brokers.nats.layout import DEFAULT_PREFIX, validate_prefix
from asynctask.errors import ConfigurationError
from asynctask.log import redact_url

__all__ = ["NatsConfig"]

_DEFAULT_PORT = 4222
_OPTIONS = frozenset(
    {
        "prefix",
        "replicas",
        "creds",
        "nkey",
        "token",
        "name",
        "request_timeout",
        "connect_timeout",
        "tls_ca",
        "tls_cert",
        "tls_key",
    }
)


class NatsConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a broker needs to connect; build it with :meth:`from_url`."""

    servers: list[str]
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None
    nkey: str | None = None
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    prefix: str = DEFAULT_PREFIX
    replicas: int = 1
    name: str = "asynctask"
    request_timeout: float = 5.0
    connect_timeout: float = 2.0
    #: The URL with its password or token replaced by ``***``.
    display_url: str = ""

    @classmethod
    def from_url(cls, url: str) -> NatsConfig:
        """Parse a ``nats://`` or ``tls://`` URL; a bad one raises :class:`ConfigurationError`."""
        shown = redact_url(url)
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in ("nats", "tls"):
            raise ConfigurationError(f"not a NATS URL: {shown!r} (use nats://host:4222 or tls://host:4222)")
        parts = urlsplit(f"nats://{rest}")
        if parts.path not in ("", "/"):
            raise ConfigurationError(f"a NATS URL has no path: {shown!r}")
        netloc = parts.netloc
        userinfo, at, hostlist = netloc.rpartition("@")
        user = password = token = None
        if at:
            name, colon, secret = userinfo.partition(":")
            if colon:
                user, password = unquote(name), unquote(secret)
            else:
                token = unquote(name)
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            known = ", ".join(sorted(_OPTIONS))
            raise ConfigurationError(
                f"unknown option(s) {', '.join(unknown)} in NATS URL {shown!r}; known: {known}"
            )
        if "token" in options:
            if token is not None:
                raise ConfigurationError(f"NATS URL {shown!r} gives a token twice (user info and ?token=)")
            token = options["token"]
        given = [k for k in ("creds", "nkey") if options.get(k)] + (["token"] if token is not None else [])
        if len(given) > 1:
            raise ConfigurationError(
                f"NATS URL {shown!r}: use one of a token, creds or nkey, not {' and '.join(given)}"
            )
        tls = scheme == "tls" or any(options.get(k) for k in ("tls_ca", "tls_cert", "tls_key"))
        return cls(
            servers=_servers(hostlist, "tls" if scheme == "tls" else "nats", shown),
            user=user,
            password=password,
            token=token,
            creds=options.get("creds") or None,
            nkey=options.get("nkey") or None,
            tls=tls,
            tls_ca=options.get("tls_ca") or None,
            tls_cert=options.get("tls_cert") or None,
            tls_key=options.get("tls_key") or None,
            prefix=validate_prefix(options.get("prefix", DEFAULT_PREFIX)),
            replicas=_replicas(options.get("replicas", "1"), shown),
            name=options.get("name") or "asynctask",
            request_timeout=_seconds(options, "request_timeout", 5.0, shown),
            connect_timeout=_seconds(options, "connect_timeout", 2.0, shown),
            display_url=shown,
        )

    @property
    def where(self) -> str:
        """The servers, for error messages (never any credential)."""
        return ",".join(s.partition("://")[2] for s in self.servers)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``tls://`` URLs and ``tls_*`` options, else ``None``."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


def _servers(hostlist: str, scheme: str, shown: str) -> list[str]:
    servers = []
    for host in (hostlist or "localhost").split(","):
        host = host.strip()
        if not host:
            raise ConfigurationError(f"empty host in NATS URL {shown!r}")
        name, port = host, _DEFAULT_PORT
        if host.startswith("["):  # [ipv6]:port
            name, _, tail = host.partition("]")
            name += "]"
            if tail:
                port = _port(tail.removeprefix(":"), shown)
        elif ":" in host:
            name, _, raw = host.rpartition(":")
            port = _port(raw, shown)
        servers.append(f"{scheme}://{name}:{port}")
    return servers


def _port(raw: str, shown: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigurationError(f"invalid port {raw!r} in NATS URL {shown!r}")
    return int(raw)


def _replicas(raw: str, shown: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 5:
        raise ConfigurationError(f"replicas must be 1 to 5 in NATS URL {shown!r}, got {raw!r}")
    return int(raw)


def _seconds(options: dict[str, str], name: str, default: float, shown: str) -> float:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(
            f"{name} must be a positive number of seconds in NATS URL {shown!r}, got {raw!r}"
        )
    return value
