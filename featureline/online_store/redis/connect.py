"""Connections to Redis, built in one place from the resolved RedisConfig.

Every path that talks to Redis (serve, stream, materialize, consistency, workers) gets
its client here, so a password, an ACL user, a db other than 0 and TLS apply to all of
them: redis-py clients (`redis_client`), the raw pipelined sockets of materialize
(`open_socket`), and the asyncio client of the serving path, which takes its TLS
context and login commands from `ssl_context` and `login_commands`.

A wrong password, an unknown user or a failed TLS handshake is a configuration error:
`check_redis` turns it into one line naming host:port (exit code 2); a Redis that does
not answer is exit code 3.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import hiredis

from featureline.config import RedisConfig
from featureline.errors import BadInputError, ServiceUnavailableError

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def redis_kwargs(cfg: RedisConfig) -> dict[str, Any]:
    """redis-py keyword arguments, as Feast passes its connection_string options."""
    out: dict[str, Any] = {"host": cfg.host, "port": cfg.port, "db": cfg.db}
    if cfg.password:
        out["password"] = cfg.password
    if cfg.username:
        out["username"] = cfg.username
    if cfg.ssl:
        out.update(
            ssl=True,
            ssl_ca_certs=cfg.ssl_ca_certs or None,
            ssl_certfile=cfg.ssl_certfile or None,
            ssl_keyfile=cfg.ssl_keyfile or None,
            ssl_cert_reqs=cfg.ssl_cert_reqs,
            ssl_check_hostname=cfg.ssl_check_hostname,
        )
    return out


def redis_client(cfg: RedisConfig, **options: Any) -> Any:
    """A redis-py client (not yet connected). Cluster/Sentinel are refused."""
    import redis

    cfg.require_single_node()
    return redis.Redis(**redis_kwargs(cfg), **options)


def config_of(client: Any) -> RedisConfig:
    """The RedisConfig a redis-py client was built with (its pool's public connection
    kwargs): for raw sockets opened next to a client someone else made."""
    import redis

    kw = client.connection_pool.connection_kwargs
    tls = issubclass(client.connection_pool.connection_class, redis.SSLConnection)
    return RedisConfig(
        host=str(kw.get("host", "127.0.0.1")),
        port=int(kw.get("port", 6379)),
        password=str(kw.get("password") or ""),
        username=str(kw.get("username") or ""),
        db=int(kw.get("db") or 0),
        ssl=tls,
        ssl_ca_certs=str(kw.get("ssl_ca_certs") or "") if tls else "",
        ssl_certfile=str(kw.get("ssl_certfile") or "") if tls else "",
        ssl_keyfile=str(kw.get("ssl_keyfile") or "") if tls else "",
        ssl_cert_reqs=str(kw.get("ssl_cert_reqs") or "required") if tls else "required",
        ssl_check_hostname=bool(kw.get("ssl_check_hostname", True)) if tls else True,
    )


def check_redis(cfg: RedisConfig, timeout_s: float = 5.0, **options: Any) -> Any:
    """A redis-py client, after a PING on a probe connection bounded by `timeout_s`
    (connect, TLS handshake and reply: a server that accepts and never answers, or a
    plain port spoken to in TLS, would otherwise hang); one-line errors otherwise."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    probe = redis_client(
        cfg, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )
    try:
        probe.ping()
    except (redis.RedisError, OSError) as exc:
        raise redis_error(cfg, exc) from None
    finally:
        probe.close()
    return redis_client(cfg, socket_connect_timeout=timeout_s, **options)


def redis_error(cfg: RedisConfig, exc: BaseException) -> Exception:
    """The error to show for a failed connect: login and TLS problems are the user's
    configuration (exit 2), anything else an unavailable service (exit 3)."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    where = f"Redis at {cfg.address}"
    lowered = text.lower()
    login_words = ("wrongpass", "invalid username", "noauth", "authentication", "auth <password>")
    if any(w in lowered for w in login_words):
        who = f"user {cfg.username!r}" if cfg.username else "password"
        return BadInputError(
            f"{where} refused the login ({who}): {text}; check the password/username in "
            "online_store.connection_string or FEATURELINE_REDIS_PASSWORD/_USERNAME"
        )
    if isinstance(exc, ssl.SSLError) or "ssl" in lowered or "certificate" in lowered:
        return BadInputError(f"{where}: TLS failed ({text}); check ssl/ssl_ca_certs in the connection_string")
    if "db index is out of range" in lowered or "invalid db" in lowered:
        return BadInputError(f"{where}: cannot select db {cfg.db} ({text})")
    return ServiceUnavailableError(f"{where} does not answer ({text}); start it with `featureline dev up`")


def ssl_context(cfg: RedisConfig) -> ssl.SSLContext | None:
    """The TLS context for sockets we open ourselves (same checks as redis-py's)."""
    if not cfg.ssl:
        return None
    context = ssl.create_default_context(cafile=cfg.ssl_ca_certs or None)
    context.check_hostname = cfg.ssl_check_hostname and cfg.ssl_cert_reqs == "required"
    context.verify_mode = _CERT_REQS.get(cfg.ssl_cert_reqs, ssl.CERT_REQUIRED)
    if cfg.ssl_certfile:
        context.load_cert_chain(cfg.ssl_certfile, cfg.ssl_keyfile or None)
    return context


def login_commands(cfg: RedisConfig) -> list[tuple[str, ...]]:
    """What a fresh connection sends before anything else: AUTH [user] pass, SELECT db."""
    out: list[tuple[str, ...]] = []
    if cfg.password:
        out.append(("AUTH", cfg.username, cfg.password) if cfg.username else ("AUTH", cfg.password))
    elif cfg.username:
        raise BadInputError(f"Redis at {cfg.address}: username {cfg.username!r} given without a password")
    if cfg.db:
        out.append(("SELECT", str(cfg.db)))
    return out


def check_login_replies(cfg: RedisConfig, replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            raise redis_error(cfg, reply)


def open_socket(cfg: RedisConfig, timeout_s: float) -> socket.socket:
    """A plain (or TLS) socket, logged in and on the right db: for our raw writers."""
    cfg.require_single_node()
    try:
        sock: socket.socket = socket.create_connection((cfg.host, cfg.port), timeout=timeout_s)
        context = ssl_context(cfg)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname=cfg.host)
    except OSError as exc:
        raise redis_error(cfg, exc) from exc
    commands = login_commands(cfg)
    if commands:
        sock.sendall(b"".join(hiredis.pack_command(c) for c in commands))  # type: ignore[arg-type]
        reader = hiredis.Reader()
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = reader.gets()
            if reply is False:
                data = sock.recv(4096)
                if not data:
                    raise ServiceUnavailableError(f"Redis at {cfg.address} closed the connection at login")
                reader.feed(data)
                continue
            replies.append(reply)
        check_login_replies(cfg, replies)
    return sock


def answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """PING, tried once, no login (the dev stack's probe)."""
    import redis

    client = plain_client(host=host, port=port, timeout_s=timeout_s)
    try:
        return bool(client.ping())
    except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError) as exc:
        # A Redis that wants a login (NOAUTH) is up: the probe asks "does it answer",
        # the commands that use it log in (check_redis, login_commands).
        return "noauth" in str(exc).lower() or "authentication" in str(exc).lower()
    except CLIENT_ERRORS:
        return False
    finally:
        client.close()


def plain_client(
    url: str = "",
    *,
    host: str = "127.0.0.1",
    port: int = 6379,
    timeout_s: float | None = None,
    **options: Any,
) -> Any:
    """A redis-py client, unchecked and without our config: for tools that set Redis up
    or look into it (dev stack, benchmarks loading data, counting keys), never the
    product path. With `timeout_s` it tries once: redis-py 7 retries a failed connect 3
    times with exponential backoff by default (~2 s per probe of a closed port)."""
    import redis

    if url:
        return redis.Redis.from_url(url, **options)
    if timeout_s is not None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s,
                   "retry": Retry(NoBackoff(), 0), **options}  # fmt: skip
    return redis.Redis(host=host, port=port, **options)


def _client_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


# What a plain client raises when Redis is down, refuses, or answers with an error.
CLIENT_ERRORS = _client_errors()
