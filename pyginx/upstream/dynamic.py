"""Upstream servers with `resolve`: re-resolved while the worker runs (nginx >= 1.27.3 semantics).

One task per `resolve` server of an upstream block (nginx: one timer per host). Each asks the DNS
(pyginx.upstream.resolver), hands the answer to the balancer (`Peers.set_resolved`, which keeps the
peers that stay, with their state, and the keep-alive pool keyed by their addresses), then sleeps for
the answer's TTL capped by the resolver's `valid=` (plus one second, as nginx's timer), at least one
second.

Faults, as nginx's ngx_http_upstream_zone_resolve_handler:
* the DNS does not answer in time, answers SERVFAIL/REFUSED, or sends garbage: the last good peers
  stay; a new try after max(resolver_timeout, 1s). pyginx logs the first failure of a run (nginx logs
  every retry) and a notice when the name resolves again.
* NXDOMAIN (the name is authoritatively gone): its peers are removed, as nginx does.
* `service=`: SRV records; the lowest priority gives primary peers, the others backup peers; an SRV
  weight is the peer's weight unless the server line sets `weight`.

State is per worker (each worker resolves on its own): `zone` is accepted for the configuration's
sake, but there is no shared memory yet (docs/scale-out.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from pyginx.config.model import Upstream, UpstreamServer
from pyginx.log import error_log
from pyginx.upstream.balancer import Peers
from pyginx.upstream.resolver import DnsClient, ResolveError, client_for


def servers_from_addresses(template: UpstreamServer, addrs: tuple[str, ...]) -> list[UpstreamServer]:
    """One server per address, with the template's port and parameters (its `server` text kept)."""
    return [replace(template, address=(a, template.port), resolve=False) for a in addrs]


def servers_from_srv(
    template: UpstreamServer, answer_targets: list[tuple[str, int, int, int, str]]
) -> list[UpstreamServer]:
    """SRV records -> servers: (target, port, priority, weight, address) each.

    The lowest priority present is primary, the rest backup; the SRV weight applies unless the
    server line set a weight other than 1 (nginx's template->weight != 1 rule); an SRV weight of 0
    counts as 1."""
    if not answer_targets:
        return []
    best = min(t[2] for t in answer_targets)
    out: list[UpstreamServer] = []
    for target, port, priority, weight, addr in answer_targets:
        out.append(
            replace(
                template,
                host=target,
                port=port,
                address=(addr, port),
                written=target,  # nginx's peer->server of an SRV peer is the target's name
                weight=template.weight if template.weight != 1 else max(1, weight),
                backup=priority != best,
                resolve=False,
                service=None,
            )
        )
    return out


class Reresolver:
    """The re-resolution tasks of one upstream block in this worker."""

    def __init__(self, upstream: Upstream, peers: Peers, loop: asyncio.AbstractEventLoop) -> None:
        assert upstream.resolver is not None
        self.upstream = upstream
        self.peers = peers
        self.loop = loop
        self.client: DnsClient = client_for(upstream.resolver, upstream.resolver_timeout)
        self.tasks: list[asyncio.Task[None]] = []
        self.failing: dict[int, bool] = {}

    def start(self) -> None:
        for key in range(len(self.upstream.resolvable)):
            self.tasks.append(self.loop.create_task(self._run(key)))

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks = []

    def _what(self, template: UpstreamServer) -> str:
        if template.service:
            return f"service {template.service} of {template.host}"
        return template.host

    async def resolve_once(self, key: int) -> float:
        """Resolve server `key` now and update the peers; the delay until the next time."""
        template = self.upstream.resolvable[key]
        retry = max(self.upstream.resolver_timeout, 1.0)
        try:
            if template.service:
                got = await self.client.services(template.service, template.host)
                rows = [(t.target, t.port, t.priority, t.weight, a) for t in got.targets for a in t.addrs]
                servers = servers_from_srv(template, rows)
                ttl = got.ttl
            else:
                found = await self.client.addresses(template.host)
                servers = servers_from_addresses(template, found.addrs)
                ttl = found.ttl
        except ResolveError as exc:
            log = error_log()
            if exc.not_found:
                log.error(
                    f'{self._what(template)} could not be resolved ({exc}), upstream "{self.upstream.name}"'
                )
                self.peers.set_resolved(key, [])
                self.failing[key] = True
                return retry
            if not self.failing.get(key):
                log.error(
                    f"{self._what(template)} could not be resolved ({exc}), keeping the last "
                    f'{self.peers.resolved_count(key)} address(es) of upstream "{self.upstream.name}"'
                )
            self.failing[key] = True
            return retry
        if self.failing.pop(key, False):
            error_log().notice(f'{self._what(template)} resolved again, upstream "{self.upstream.name}"')
        self.peers.set_resolved(key, servers)
        return ttl + 1.0 if ttl != float("inf") else 3600.0

    async def _run(self, key: int) -> None:
        while True:
            try:
                delay = await self.resolve_once(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let a bug stop re-resolution for good
                error_log().alert(f'unexpected error resolving upstream "{self.upstream.name}": {exc!r}')
                delay = max(self.upstream.resolver_timeout, 1.0)
            await asyncio.sleep(delay)
