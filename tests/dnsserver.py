"""A small authoritative DNS server for tests: UDP on 127.0.0.1, a port picked at run time, answers
the test changes while it runs (dnspython builds and parses the messages).

    dns = DnsServer().start()
    dns.set_a("backend.test", ["127.0.0.2"], ttl=1)
    ... resolver: "127.0.0.1:{dns.port}" ...
    dns.mode = "servfail"      # or "drop" (no answer), "refused", "ok"
    dns.stop()                 # an outage: the port goes away
"""

from __future__ import annotations

import select
import socket
import threading
from collections import Counter

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsServer:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.lock = threading.Lock()
        self.a: dict[str, tuple[list[str], int]] = {}
        self.aaaa: dict[str, tuple[list[str], int]] = {}
        self.srv: dict[str, tuple[list[tuple[int, int, int, str]], int]] = {}
        self.mode = "ok"
        self.queries: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    # ---- records (any thread)

    def set_a(self, name: str, addrs: list[str], ttl: int = 1) -> None:
        with self.lock:
            self.a[name.lower().rstrip(".")] = (list(addrs), ttl)

    def set_aaaa(self, name: str, addrs: list[str], ttl: int = 1) -> None:
        with self.lock:
            self.aaaa[name.lower().rstrip(".")] = (list(addrs), ttl)

    def set_srv(self, name: str, records: list[tuple[int, int, int, str]], ttl: int = 1) -> None:
        """records: (priority, weight, port, target)."""
        with self.lock:
            self.srv[name.lower().rstrip(".")] = (list(records), ttl)

    def count(self, name: str, rdtype: str = "A") -> int:
        with self.lock:
            return self.queries[(name.lower().rstrip("."), rdtype)]

    # ---- serving

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                continue
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            reply = self._answer(query)
            if reply is not None:
                try:
                    self.sock.sendto(reply.to_wire(), peer)
                except OSError:
                    pass

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(q.rdtype)
        with self.lock:
            self.queries[(name, kind)] += 1
            mode = self.mode
            table = {"A": self.a, "AAAA": self.aaaa, "SRV": self.srv}.get(kind)
            entry = table.get(name) if table is not None else None
            known = any(name in t for t in (self.a, self.aaaa, self.srv))
        if mode == "drop":
            return None
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if mode == "servfail":
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply
        if mode == "refused":
            reply.set_rcode(dns.rcode.REFUSED)
            return reply
        if not known:
            reply.set_rcode(dns.rcode.NXDOMAIN)
            return reply
        if entry is None:
            return reply  # NODATA: the name exists, not this type
        values, ttl = entry
        if kind == "SRV":
            texts = [f"{p} {w} {port} {target}." for p, w, port, target in values]  # type: ignore[misc]
        else:
            texts = [str(v) for v in values]
        if texts:
            rrset = dns.rrset.from_text_list(q.name, ttl, dns.rdataclass.IN, q.rdtype, texts)
            reply.answer.append(rrset)
        return reply
