"""An asynchronous DNS client for the worker, as nginx's ngx_resolver: A/AAAA and SRV lookups sent to
the `resolver` addresses, answers cached for their TTL (capped by `valid=`).

dnspython builds and parses the messages and does the UDP exchange (dns.asyncquery, on the running
asyncio/uvloop loop); this module adds what nginx's resolver does around it: the name servers tried in
turn, a request re-sent every second until `resolver_timeout`, a truncated answer retried over TCP,
IPv4/IPv6 as `ipv4=`/`ipv6=` say, and a cache per worker. Failures are `ResolveError`s carrying nginx's
code and text (ngx_resolver_strerror), so the callers log "NAME could not be resolved (2: Server
failure)" as nginx does.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from pyginx.config.model import Resolver as ResolverConf
from pyginx.config.resolve import literal

# nginx's resolver re-sends an unanswered query every second (NGX_RESOLVER_TIMER-ish), until the
# overall resolver_timeout.
RESEND = 1.0
# a cache entry's lifetime when the answer carried TTL 0 (nginx caches at least until the next second)
MIN_TTL = 1.0
CACHE_MAX = 1024  # entries per worker; the cache is cleared beyond (names are few in practice)

# ngx_resolver_strerror's table (the numbers are the DNS rcodes, 110 a timeout)
FORMAT_ERROR, SERVER_FAILURE, HOST_NOT_FOUND, UNIMPLEMENTED, REFUSED, TIMEDOUT = 1, 2, 3, 4, 5, 110
_STRERROR = {
    FORMAT_ERROR: "Format error",
    SERVER_FAILURE: "Server failure",
    HOST_NOT_FOUND: "Host not found",
    UNIMPLEMENTED: "Unimplemented",
    REFUSED: "Operation refused",
    TIMEDOUT: "Operation timed out",
}


class ResolveError(Exception):
    """A lookup that gave no usable answer. `not_found` (NXDOMAIN) is an answer: the name does not
    exist; every other code is a failure of the DNS itself (keep what was known before)."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"{code}: {_STRERROR.get(code, 'Unknown error')}")

    @property
    def not_found(self) -> bool:
        return self.code == HOST_NOT_FOUND


@dataclass(frozen=True)
class Addresses:
    """The addresses of one name, and how long they may be used (seconds)."""

    addrs: tuple[str, ...]
    ttl: float


@dataclass(frozen=True)
class SrvTarget:
    """One SRV record with its target's addresses."""

    target: str  # the target name, without the trailing dot (nginx's peer->server for the peer)
    port: int
    priority: int
    weight: int
    addrs: tuple[str, ...]


@dataclass(frozen=True)
class Services:
    targets: tuple[SrvTarget, ...]
    ttl: float


def srv_name(service: str, host: str) -> str:
    """nginx's SRV query name: `_http._tcp.HOST` for `service=http`, `SERVICE.HOST` for `_x._udp`."""
    return f"{service}.{host}" if service.startswith("_") else f"_{service}._tcp.{host}"


def cap_ttl(ttl: float, valid: float | None) -> float:
    """How long an answer is used: its TTL, capped by `valid=`, at least MIN_TTL."""
    if valid is not None:
        ttl = min(ttl, valid)
    return max(MIN_TTL, ttl)


class DnsClient:
    """One `resolver` configuration in this worker: its name servers and its cache."""

    def __init__(self, conf: ResolverConf, timeout: float) -> None:
        self.conf = conf
        self.timeout = timeout
        self._next = 0  # round robin over the name servers, as nginx's resolver
        self._cache: dict[tuple[str, int], tuple[float, Addresses | Services | ResolveError]] = {}
        self._pending: dict[str, asyncio.Future[Addresses]] = {}

    # ------------------------------------------------------------------------------------ lookups

    async def addresses(self, host: str) -> Addresses:
        """Every address of `host` (IPv4 first, then IPv6, as enabled). Raises ResolveError."""
        lit = literal(host)
        if lit is not None:
            return Addresses((lit,), float("inf"))
        hit = self._cached(host, 0)
        if hit is not None:
            assert isinstance(hit, Addresses)
            return hit
        # Requests that need the same name meanwhile wait for the same lookup (nginx queues them on
        # one resolver node): during a DNS outage that is one query per name, not one per request.
        key = host.lower()
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_addresses(host))
            self._pending[key] = pending
            pending.add_done_callback(lambda _t: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _fetch_addresses(self, host: str) -> Addresses:
        try:
            answer = await self._lookup_addresses(host)
        except ResolveError as exc:
            if exc.not_found:
                self._store(host, 0, exc, MIN_TTL)  # a short negative cache, as nginx keeps NXDOMAIN
            raise
        self._store(host, 0, answer, answer.ttl)
        return answer

    async def services(self, service: str, host: str) -> Services:
        """The SRV records of `service` at `host`, each with its target's addresses."""
        name = srv_name(service, host)
        hit = self._cached(name, dns.rdatatype.SRV)
        if hit is not None:
            assert isinstance(hit, Services)
            return hit
        msg = await self._query(name, dns.rdatatype.SRV)
        ttl = float("inf")
        records: list[Any] = []
        for rrset in msg.answer:
            if rrset.rdtype == dns.rdatatype.SRV:
                ttl = min(ttl, rrset.ttl)
                records.extend(rrset)
        if not records:
            raise ResolveError(HOST_NOT_FOUND)
        targets: list[SrvTarget] = []
        for rec in records:
            target = rec.target.to_text(omit_final_dot=True)
            try:
                found = await self.addresses(target)
            except ResolveError:
                continue  # nginx logs the target and uses the others
            ttl = min(ttl, found.ttl)
            targets.append(SrvTarget(target, int(rec.port), int(rec.priority), int(rec.weight), found.addrs))
        if not targets:
            raise ResolveError(HOST_NOT_FOUND)
        result = Services(tuple(targets), cap_ttl(ttl, self.conf.valid))
        self._store(name, dns.rdatatype.SRV, result, result.ttl)
        return result

    async def _lookup_addresses(self, host: str) -> Addresses:
        kinds: list[dns.rdatatype.RdataType] = []
        if self.conf.ipv4:
            kinds.append(dns.rdatatype.A)
        if self.conf.ipv6:
            kinds.append(dns.rdatatype.AAAA)
        results = await asyncio.gather(*(self._query(host, k) for k in kinds), return_exceptions=True)
        addrs: list[str] = []
        ttl = float("inf")
        errors: list[ResolveError] = []
        for kind, res in zip(kinds, results, strict=True):
            if isinstance(res, ResolveError):
                errors.append(res)
                continue
            if isinstance(res, BaseException):
                raise res
            for rrset in res.answer:
                if rrset.rdtype == kind:
                    ttl = min(ttl, rrset.ttl)
                    for rdata in rrset:
                        text = rdata.to_text()
                        if text not in addrs:
                            addrs.append(text)
        if not addrs:
            # nginx: a failure of either query is the error; NXDOMAIN only when nothing else failed
            failures = [e for e in errors if not e.not_found]
            raise failures[0] if failures else ResolveError(HOST_NOT_FOUND)
        return Addresses(tuple(addrs), cap_ttl(ttl, self.conf.valid))

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        """One question, asked of the name servers in turn until one answers or the timeout passes."""
        query = dns.message.make_query(dns.name.from_text(name), rdtype)
        servers = self.conf.addresses
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ResolveError(TIMEDOUT)
            where, port = servers[self._next % len(servers)]
            self._next += 1
            query.id = random.randrange(65536)
            try:
                msg = await dns.asyncquery.udp(query, where, timeout=min(RESEND, remaining), port=port)
                if msg.flags & dns.flags.TC:
                    msg = await dns.asyncquery.tcp(query, where, timeout=max(0.1, remaining), port=port)
            except (dns.exception.Timeout, TimeoutError):
                continue
            except (OSError, dns.exception.DNSException):
                # refused port, garbage answer: try the next server after a pause, not in a hot loop
                await asyncio.sleep(min(RESEND, max(0.0, deadline - time.monotonic())))
                continue
            rcode = msg.rcode()
            if rcode == dns.rcode.NOERROR:
                return msg
            if rcode == dns.rcode.NXDOMAIN:
                raise ResolveError(HOST_NOT_FOUND)
            raise ResolveError(int(rcode) if int(rcode) in _STRERROR else SERVER_FAILURE)

    # ------------------------------------------------------------------------------------ cache

    def _cached(self, name: str, rdtype: int) -> Addresses | Services | None:
        key = (name.lower(), rdtype)
        hit = self._cache.get(key)
        if hit is None:
            return None
        expires, value = hit
        if time.monotonic() >= expires:
            del self._cache[key]
            return None
        if isinstance(value, ResolveError):
            raise value
        return value

    def _store(self, name: str, rdtype: int, value: Addresses | Services | ResolveError, ttl: float) -> None:
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[(name.lower(), rdtype)] = (time.monotonic() + ttl, value)

    def forget(self, name: str) -> None:
        """Drop a name's cached answers (tests; and a re-resolution that must ask the server)."""
        self._cache.pop((name.lower(), 0), None)


_clients: dict[tuple[int, float], tuple[ResolverConf, DnsClient]] = {}


def client_for(conf: ResolverConf, timeout: float) -> DnsClient:
    """The worker's client for a `resolver` (one per configuration object: a reload starts afresh)."""
    key = (id(conf), timeout)
    hit = _clients.get(key)
    if hit is None or hit[0] is not conf:
        hit = (conf, DnsClient(conf, timeout))
        _clients[key] = hit
    return hit[1]
