"""nginx's value syntax: sizes, times, flags, numbers and argument splitting."""

from __future__ import annotations

import pytest

from pyginx.config.units import compile_regex, parse_flag, parse_number, parse_size, parse_time, split_args


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1024", 1024),
        ("8k", 8192),
        ("8K", 8192),
        ("1m", 1024**2),
        ("1M", 1024**2),
        ("2g", 2 * 1024**3),
        ("2G", 2 * 1024**3),
        (" 16k ", 16384),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "10q", "k", "1.5m", "-1", "1 k", "1kb", "0x10"])
def test_bad_sizes(text: str) -> None:
    assert parse_size(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0.0),
        ("60", 60.0),
        ("75s", 75.0),
        ("500ms", 0.5),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1w", 7 * 86400.0),
        ("1M", 30 * 86400.0),
        ("1y", 365 * 86400.0),
        ("1h 30m", 5400.0),
        ("1h30m", 5400.0),
        ("1d 2h 3m 4s 5ms", 86400 + 7200 + 180 + 4 + 0.005),
        ("1m 30", 90.0),  # a trailing bare number is seconds
    ],
)
def test_times(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "10q", "30m 1h", "1h 1h", "1s 1m", "1.5s", "-1s", "s", "5 1m", "1 2"])
def test_bad_times(text: str) -> None:
    assert parse_time(text) is None


def test_milliseconds_refused_where_nginx_keeps_seconds() -> None:
    assert parse_time("500ms", seconds_only=True) is None
    assert parse_time("1h 30m", seconds_only=True) == 5400.0


def test_flags_and_numbers() -> None:
    assert parse_flag("on") is True
    assert parse_flag("OFF") is False
    assert parse_flag("yes") is None
    assert parse_number("42") == 42
    assert parse_number("-1") is None
    assert parse_number("4k") is None


def test_split_args() -> None:
    assert split_args("a  b\tc") == ["a", "b", "c"]
    assert split_args('200 "hello world"') == ["200", "hello world"]
    assert split_args("'a b' c") == ["a b", "c"]
    assert split_args(r'"say \"hi\""') == ['say "hi"']
    assert split_args(r"~ \.php$") == ["~", r"\.php$"]
    assert split_args('""') == [""]
    with pytest.raises(ValueError):
        split_args('"open')


def test_pcre_named_groups_are_translated() -> None:
    rx = compile_regex(r"^/u/(?<name>\w+)$")
    m = rx.match("/u/bob")
    assert m is not None and m.group("name") == "bob"
    assert compile_regex(r"(?<=a)b").search("ab") is not None  # lookbehind untouched
    assert compile_regex(r"\.PNG$", ignore_case=True).search("x.png") is not None
