"""Seeded fuzzer over the request parser (issue 12): grammar-built, mutated requests (tests.fuzzreq)
fed to a connection without sockets, whole and in a random split. Derandomized and bounded, so a
run is the same every time; raise FUZZ_EXAMPLES for a longer hunt."""

from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzreq import requests, stricter
from tests.unit.fake_http import Exchange, make_config, statuses

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
DATE = re.compile(rb"Date: [^\r]*\r\n")
ALLOWED = {200, 201, 204, 206, 301, 302, 304, 400, 404, 405, 408, 411, 412, 413, 414, 416, 494, 501, 505}


def _answer(chunks: list[bytes]) -> tuple[bytes, bool]:
    ex = Exchange(make_config(client_max_body_size=4096))
    try:
        out = ex.feed(*chunks)
        return DATE.sub(b"", out), ex.transport.closed or ex.transport.eof
    finally:
        ex.close()


@settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(requests(), st.data())
def test_fuzzed_requests_never_break_the_parser(data: bytes, split: st.DataObject) -> None:
    whole, closed = _answer([data])
    codes = statuses(whole)
    assert set(codes) <= ALLOWED, (data, whole[:300])
    assert b"500 Internal" not in whole
    if stricter(data) is not None and codes:
        assert codes[0] in (400, 501, 505), (data, whole[:200])
    cuts = sorted(set(split.draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=4))))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if data[a:b]]
    again, _ = _answer(pieces)
    if statuses(again) != codes:
        # the one split-dependent answer, as in nginx: a bad body that came with its head makes the
        # answer a 400; one that comes after the answer (here `return`) just closes the connection
        assert codes == [400] and b"chunked" in data.lower(), (data, cuts, whole[:200], again[:200])
