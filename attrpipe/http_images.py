"""Images over ``http://`` and ``https://`` (aiohttp), for catalogs whose images live on a CDN.

Off by default: a URI with either scheme is ``image_bad_uri`` unless ``images.allowed_schemes`` names it. When on,
each worker process holds one :class:`HttpFetcher`: one pooled ``aiohttp`` session on an event loop of its own
(a background thread), so the synchronous pipeline stages hand it URLs and collect bytes.

- **Bounded**: at most ``images.http.concurrency`` requests in flight per worker (the connector's pool limit);
  ``connect_timeout_s`` to connect, ``read_timeout_s`` between two reads, ``total_timeout_s`` for one attempt.
- **Retries** with exponential backoff (``backoff_s``, doubled each time), ``retries`` times, on a timeout or a 5xx
  status only; any other failure is final at once.
- **Redirects** followed by hand, at most ``max_redirects``; every hop is checked like the first URL (scheme, host
  allow-list, private addresses).
- **Byte cap while streaming**: a ``Content-Length`` above ``images.max_bytes`` is refused before the body is read,
  and a body is read in chunks and dropped as soon as it passes the cap (an endless body costs ``max_bytes``).
- **Safe by default**: a host that resolves to a loopback, private, link-local or otherwise non-global address is
  refused (checked on the addresses the connection would use, through the session's resolver, and on literal IPs)
  unless ``allow_private_hosts``; ``allowed_hosts`` (non-empty) restricts the hosts (``cdn.example.com`` exactly,
  ``.example.com`` any of its subdomains).

The body is returned as bytes; it is checked by decoding (attrpipe.images), whatever the ``Content-Type`` says.
Failures are :class:`FetchError` with these reasons (attrpipe.images turns them into its ``ImageError``, quarantined
as ``image_<reason>``):

- ``http_status``       a status other than 200 after redirects and retries (the detail names it: ``HTTP 404``)
- ``timeout``           connecting, a read or the whole attempt took too long, on every try
- ``http_redirects``    more than ``max_redirects`` redirects (a loop), or a redirect without a ``Location``
- ``private_host``      the host is (or resolves to) a non-public address and ``allow_private_hosts`` is false
- ``host_not_allowed``  the host is not in a non-empty ``allowed_hosts``
- ``unreachable``       the connection failed (refused, reset, DNS error, TLS error)
- ``too_many_bytes``    the body (or its declared length) passes ``images.max_bytes``
- ``bad_uri``           a redirect to a scheme that is not allowed, or a URL without a host
"""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import os
import socket
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urljoin, urlsplit

__all__ = ["HTTP_SCHEMES", "FetchError", "HttpSettings", "HttpFetcher", "is_http", "fetcher_for", "host_problem"]

HTTP_SCHEMES = ("http", "https")
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 1 << 16


class FetchError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def is_http(location: str | None) -> bool:
    return isinstance(location, str) and location.split("://", 1)[0].lower() in HTTP_SCHEMES and "://" in location


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    total_timeout_s: float = 60.0
    retries: int = 2
    backoff_s: float = 0.5
    max_redirects: int = 3
    concurrency: int = 64
    allow_private_hosts: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_schemes: tuple[str, ...] = ()  # the http(s) schemes of images.allowed_schemes

    @classmethod
    def from_conf(cls, images_conf) -> "HttpSettings":
        """From ``images`` (a config node or the plain dict training workers get; without ``http``: the defaults)."""
        schemes = tuple(s for s in images_conf["allowed_schemes"] if s in HTTP_SCHEMES)
        h = images_conf.get("http")
        if h is None:
            return cls(allowed_schemes=schemes)
        return cls(float(h["connect_timeout_s"]), float(h["read_timeout_s"]), float(h["total_timeout_s"]),
                   int(h["retries"]), float(h["backoff_s"]), int(h["max_redirects"]), int(h["concurrency"]),
                   bool(h["allow_private_hosts"]), tuple(str(x).lower() for x in h["allowed_hosts"]), schemes)


def _address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id ("fe80::1%eth0") is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def host_problem(host: str | None, settings: HttpSettings) -> FetchError | None:
    """Why a URL's host may not be fetched from (None: it may); checks the allow-list and literal IP addresses.
    Names are checked again on the addresses they resolve to, when connecting (:class:`_GuardedResolver`)."""
    if not host:
        return FetchError("bad_uri", "no host in the URL")
    host = host.lower().rstrip(".")
    if settings.allowed_hosts and not any(host == a or (a.startswith(".") and host.endswith(a))
                                          for a in settings.allowed_hosts):
        return FetchError("host_not_allowed", f"{host} is not in images.http.allowed_hosts")
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None  # a name: checked on its addresses by the resolver
    if not settings.allow_private_hosts and not _address_is_public(host.strip("[]")):
        return FetchError("private_host", f"{host} is not a public address (images.http.allow_private_hosts)")
    return None


class _BlockedHost(OSError):
    """Raised by the resolver; aiohttp wraps it in ClientConnectorDNSError (``os_error``)."""


def _resolver(allow_private: bool):
    from aiohttp.abc import AbstractResolver
    from aiohttp.resolver import ThreadedResolver

    class _GuardedResolver(AbstractResolver):
        """The default resolver, refusing a name any of whose addresses is not public: checked on the very addresses
        the connection will use, so a name that resolves differently later (DNS rebinding) is checked again."""

        def __init__(self):
            self._inner = ThreadedResolver()

        async def resolve(self, host, port=0, family=socket.AF_INET):
            infos = await self._inner.resolve(host, port, family)
            if not allow_private:
                for info in infos:
                    if not _address_is_public(info["host"]):
                        raise _BlockedHost(f"{host} resolves to {info['host']}, not a public address "
                                           "(images.http.allow_private_hosts)")
            return infos

        async def close(self):
            await self._inner.close()

    return _GuardedResolver()


class _Retry(Exception):
    def __init__(self, error: FetchError):
        super().__init__(str(error))
        self.error = error


class HttpFetcher:
    """One pooled aiohttp session on a private event loop (a daemon thread); :meth:`submit` and :meth:`fetch` may be
    called from any thread."""

    def __init__(self, settings: HttpSettings):
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="attrpipe-http", daemon=True)
        self._thread.start()
        self._session = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()
        self._pid = os.getpid()

    async def _open(self):
        import aiohttp

        s = self.settings
        connector = aiohttp.TCPConnector(limit=s.concurrency, limit_per_host=s.concurrency,
                                         resolver=_resolver(s.allow_private_hosts))
        return aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True,
                                     headers={"User-Agent": "attrpipe"})

    def submit(self, url: str, max_bytes: int) -> Future:
        """Start fetching ``url``; the future's result is its bytes, or it raises a FetchError."""
        return asyncio.run_coroutine_threadsafe(self._fetch(url, max_bytes), self._loop)

    def fetch(self, url: str, max_bytes: int) -> bytes:
        return self.submit(url, max_bytes).result()

    def fetch_many(self, urls: Iterable[str], max_bytes: int) -> dict[str, Future]:
        """A future per distinct URL, all started at once (the connector bounds how many are in flight)."""
        return {u: self.submit(u, max_bytes) for u in dict.fromkeys(urls)}

    def close(self) -> None:
        if self._loop.is_closed() or os.getpid() != self._pid:
            return
        asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _fetch(self, url: str, max_bytes: int) -> bytes:
        s = self.settings
        for attempt in range(s.retries + 1):
            try:
                return await self._fetch_once(url, max_bytes)
            except _Retry as r:
                if attempt == s.retries:
                    tries = f" ({s.retries + 1} tries)" if s.retries else ""
                    raise FetchError(r.error.reason, f"{r.error.detail}{tries}") from None
                await asyncio.sleep(s.backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")

    async def _fetch_once(self, url: str, max_bytes: int) -> bytes:
        import aiohttp

        s = self.settings
        timeout = aiohttp.ClientTimeout(total=s.total_timeout_s, sock_connect=s.connect_timeout_s,
                                        sock_read=s.read_timeout_s)
        current = url
        for _ in range(s.max_redirects + 1):
            parts = urlsplit(current)
            if parts.scheme.lower() not in s.allowed_schemes:
                raise FetchError("bad_uri", f"{url} redirects to {current}: scheme {parts.scheme!r} is not allowed")
            problem = host_problem(parts.hostname, s)
            if problem is not None:
                raise problem
            try:
                async with self._session.get(current, allow_redirects=False, timeout=timeout) as resp:
                    if resp.status in _REDIRECTS:
                        location = resp.headers.get("Location")
                        if not location:
                            raise FetchError("http_redirects", f"HTTP {resp.status} without a Location: {current}")
                        current = urljoin(current, location)
                        continue
                    if resp.status >= 500:
                        raise _Retry(FetchError("http_status", f"HTTP {resp.status} from {current}"))
                    if resp.status != 200:
                        raise FetchError("http_status", f"HTTP {resp.status} from {current}")
                    if resp.content_length is not None and resp.content_length > max_bytes:
                        raise FetchError("too_many_bytes", f"Content-Length {resp.content_length} > {max_bytes}")
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchError("too_many_bytes", f"> {max_bytes} bytes streamed from {current}")
                    return bytes(body)
            except (FetchError, _Retry):
                raise
            except asyncio.TimeoutError:  # aiohttp's connect and read timeouts are TimeoutErrors too
                raise _Retry(FetchError("timeout", f"{current}: no answer within the timeouts (images.http)")) \
                    from None
            except aiohttp.ClientConnectorError as e:
                if isinstance(e.os_error, _BlockedHost):
                    raise FetchError("private_host", str(e.os_error)) from None
                raise FetchError("unreachable", f"{current}: {e}"[:300]) from None
            except (aiohttp.ClientError, OSError, ValueError) as e:
                raise FetchError("unreachable", f"{current}: {type(e).__name__}: {e}"[:300]) from None
        raise FetchError("http_redirects", f"more than {s.max_redirects} redirects from {url}")


_FETCHERS: dict[HttpSettings, HttpFetcher] = {}
_LOCK = threading.Lock()


def fetcher_for(settings: HttpSettings) -> HttpFetcher:
    """The process's fetcher for these settings (one pooled session per worker process), closed at exit."""
    with _LOCK:
        f = _FETCHERS.get(settings)
        if f is None or f._pid != os.getpid():  # a forked child gets its own
            if not _FETCHERS:
                atexit.register(_close_all)
            f = _FETCHERS[settings] = HttpFetcher(settings)
        return f


def _close_all() -> None:
    for f in list(_FETCHERS.values()):
        try:
            f.close()
        except Exception:  # noqa: BLE001 - at exit, a fetcher that cannot close cleanly is left to the OS
            pass
    _FETCHERS.clear()
