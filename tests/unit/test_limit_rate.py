"""limit_rate: its configuration (values, variables, where the filter is installed) and the pacing
rules of pyginx/http/pacing.py (nginx's write filter) over a fake transport and a fake clock."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyginx.config import MainConfig, load_config
from pyginx.config.model import HttpSettings
from pyginx.errors import ConfigError
from pyginx.http import pacing
from pyginx.modules import limit_rate


def load(tmp_path: Path, locations: str, server: str = "") -> MainConfig:
    conf = tmp_path / "conf" / "pyginx.yaml"
    conf.parent.mkdir(exist_ok=True)
    text = f"""
http:
  servers:
    - listen: 127.0.0.1:8080
{textwrap.indent(textwrap.dedent(server).strip(), " " * 6) if server.strip() else ""}
      locations:
{textwrap.indent(textwrap.dedent(locations).strip(), " " * 8)}
"""
    conf.write_text(text.lstrip("\n"))
    return load_config(str(conf), str(tmp_path))


def settings_of(cfg: MainConfig, match: str) -> HttpSettings:
    assert cfg.http is not None
    return next(loc.settings for loc in cfg.http.servers[0].locations if loc.match == match)


def test_values_sizes_variables_and_where_the_filter_goes(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        - location: /a
          limit_rate: 10k
          limit_rate_after: 1m
        - location: /b
          limit_rate: $arg_r
        - location: /plain
          return: 200
        """,
    )
    a = settings_of(cfg, "/a").conf("limit_rate")
    assert (a.rate, a.after, a.rate_template) == (10240, 1 << 20, "")
    assert settings_of(cfg, "/b").conf("limit_rate").rate_template == "$arg_r"
    assert limit_rate._header_filter(settings_of(cfg, "/a")) is not None
    assert limit_rate._header_filter(settings_of(cfg, "/b")) is not None
    # a location without limit_rate, in a configuration that never sets $limit_rate: nothing added
    assert limit_rate._header_filter(settings_of(cfg, "/plain")) is None


def test_set_limit_rate_installs_the_filter(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        - location: /s
          set: $limit_rate 4k
        - location: /later
          return: 200
        """,
    )
    assert limit_rate._header_filter(settings_of(cfg, "/s")) is not None
    assert settings_of(cfg, "/later").conf("limit_rate").settable  # reachable by a redirect


def test_set_in_an_if_block_installs_the_filter_there(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        - location: /i
          "if ($arg_slow)": {set: $limit_rate 4k}
          return: 200
        """,
    )
    from pyginx.modules.rewrite import IfOp

    ops = settings_of(cfg, "/i").conf("rewrite").ops
    inner = next(op for op in ops if isinstance(op, IfOp))
    assert inner.settings is not None
    assert limit_rate._header_filter(inner.settings) is not None


@pytest.mark.parametrize("value", ["fast", "10q", "-1"])
def test_bad_values_are_refused_in_nginx_words(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match='"limit_rate" directive invalid value'):
        load(tmp_path, f"- location: /\n  limit_rate: {value}")


# ---------------------------------------------------------------------------------------------------
# pacing


class FakeReal(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.eof = False

    def write(self, data: Any) -> None:
        self.out += data

    def get_write_buffer_size(self) -> int:
        return 0  # the kernel takes everything at once

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.eof = True


class FakeConn:
    def __init__(self, real: FakeReal) -> None:
        self.transport: Any = real
        self.paused = False
        self.done: list[FakeRequest] = []

    def request_done(self, req: FakeRequest) -> None:
        self.done.append(req)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False


class FakeRequest:
    def __init__(self, conn: FakeConn, sent: int) -> None:
        self.conn = conn
        self.pacer: Any = None
        self.bytes_sent = self.body_bytes_sent = sent
        self.end_time = 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _paced(
    monkeypatch: pytest.MonkeyPatch, rate: int, after: int
) -> tuple[pacing.PacedTransport, FakeReal, FakeConn, Clock]:
    clock = Clock()
    monkeypatch.setattr(pacing.time, "monotonic", clock)
    real = FakeReal()
    conn = FakeConn(real)
    t = pacing.PacedTransport(conn, real)  # type: ignore[arg-type]
    conn.transport = t
    t.begin(rate, after, clock.now)
    return t, real, conn, clock


def _tick(t: pacing.PacedTransport, clock: Clock) -> float:
    """Run the pending timer now, as if its delay had passed: returns the delay it asked for."""
    assert t.timer is not None
    delay = t.timer.when() - asyncio.get_running_loop().time()
    t.timer.cancel()
    clock.now += delay
    t._pump()
    return delay


def test_a_second_worth_then_one_second_per_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        t, real, conn, clock = _paced(monkeypatch, rate=1000, after=0)
        t.write(b"x" * 2500)
        assert len(real.out) == 1000  # rate * (0 s + 1) at once
        req = FakeRequest(conn, 2500)
        t.hold(req)  # the request is complete: it is done when its bytes are out
        assert conn.done == [] and conn.paused  # meanwhile a writer waiting for the client
        assert 0.99 < _tick(t, clock) <= 1.01  # then 1000 bytes / 1000 B/s
        assert len(real.out) == 2000 and conn.done == []
        _tick(t, clock)
        assert len(real.out) == 2500
        assert conn.done == [req] and req.end_time == clock.now and req.bytes_sent == 2500
        assert conn.transport is real and not conn.paused and t.timer is None  # the real one is back

    asyncio.run(run())


def test_limit_rate_after_goes_first_unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        t, real, _conn, clock = _paced(monkeypatch, rate=1000, after=5000)
        t.write(b"x" * 7000)
        assert len(real.out) == 6000  # after + one second's worth
        _tick(t, clock)
        assert len(real.out) == 7000

    asyncio.run(run())


def test_back_pressure_and_a_close_that_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        t, real, conn, clock = _paced(monkeypatch, rate=pacing.HIGH, after=0)
        t.write(b"y" * (3 * pacing.HIGH))
        assert conn.paused  # more than HIGH waits: the writer is paused
        t.close()
        assert not real.closed  # the queue goes out first
        _tick(t, clock)
        assert conn.paused and not real.closed
        _tick(t, clock)
        assert bytes(real.out) == b"y" * (3 * pacing.HIGH)
        assert real.closed and not conn.paused and conn.transport is real and t.timer is None

    asyncio.run(run())


def test_a_client_gone_mid_way_finishes_the_request_with_what_was_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> None:
        t, real, conn, _clock = _paced(monkeypatch, rate=10, after=0)
        t.write(b"z" * 100)
        req = FakeRequest(conn, 100)
        t.hold(req)
        t.abort()  # send_timeout, or the connection lost
        assert real.aborted and t.timer is None and not t.pending and conn.transport is real
        assert conn.done == [req] and req.bytes_sent == req.body_bytes_sent == 10

    asyncio.run(run())


def test_a_request_whose_bytes_are_out_is_done_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        t, real, conn, _clock = _paced(monkeypatch, rate=1000, after=0)
        t.write(b"a" * 500)
        assert t.timer is not None  # the delay after a send
        req = FakeRequest(conn, 500)
        t.hold(req)
        assert conn.done == [req] and conn.transport is real and t.timer is None

    asyncio.run(run())


def test_limit_rate_inside_an_if_block(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        - location: /i
          "if ($arg_slow)": {limit_rate: 4k}
          return: 200
        """,
    )
    from pyginx.modules.rewrite import IfOp

    loc = settings_of(cfg, "/i")
    assert limit_rate._header_filter(loc) is None  # the location itself is not limited
    inner = next(op for op in loc.conf("rewrite").ops if isinstance(op, IfOp))
    assert inner.settings is not None and inner.settings.conf("limit_rate").rate == 4096
    assert limit_rate._header_filter(inner.settings) is not None


def test_limit_rate_is_not_allowed_in_a_server_if(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='"limit_rate" directive is not allowed here'):
        load(tmp_path, "- location: /\n  return: 200", server='"if ($arg_x)": {limit_rate: 4k}')
