"""autoindex rendering, byte for byte as nginx's ngx_http_autoindex_module, and directory scanning."""

from __future__ import annotations

import calendar
import os
from pathlib import Path

import pytest

from pyginx.handlers import autoindex
from pyginx.handlers.autoindex import Entry

T = calendar.timegm((2026, 11, 28, 23, 16, 33))
DATE = b"28-Nov-2026 23:16"
LONG = b"x" * 56 + b".txt"  # 60 bytes: longer than the 50-column name field


def entries() -> list[Entry]:
    return [
        Entry(b"a.txt", False, True, T, 1234),
        Entry(LONG, False, True, T, 5),
        Entry(b"sub", True, False, T, 4096),
        Entry(b'<b>&".txt', False, True, T, 0),
        Entry(b"a b.txt", False, True, T, 7),
        Entry("é.txt".encode(), False, True, T, 9),
    ]


def test_sort_dirs_first_then_bytes() -> None:
    names = [e.name for e in autoindex.sort_entries(entries())]
    assert names == [b"sub", b'<b>&".txt', b"a b.txt", b"a.txt", LONG, "é.txt".encode()]


def test_html_exact() -> None:
    body = autoindex.render_html("/files/", autoindex.sort_entries(entries()))
    expected = (
        b"<html>\r\n<head><title>Index of /files/</title></head>\r\n<body>\r\n"
        b'<h1>Index of /files/</h1><hr><pre><a href="../">../</a>\r\n'
        b'<a href="sub/">sub/</a>' + b" " * 46 + b" " + DATE + b" " + b" " * 18 + b"-\r\n"
        b'<a href="%3Cb%3E%26%22.txt">&lt;b&gt;&amp;&quot;.txt</a>'
        + b" " * 41
        + b" "
        + DATE
        + b" "
        + b"0".rjust(19)
        + b"\r\n"
        b'<a href="a%20b.txt">a b.txt</a>' + b" " * 43 + b" " + DATE + b" " + b"7".rjust(19) + b"\r\n"
        b'<a href="a.txt">a.txt</a>' + b" " * 45 + b" " + DATE + b" " + b"1234".rjust(19) + b"\r\n"
        b'<a href="'
        + LONG
        + b'">'
        + LONG[:47]
        + b"..&gt;</a>"
        + b" "
        + DATE
        + b" "
        + b"5".rjust(19)
        + b"\r\n"
        b'<a href="%C3%A9.txt">'
        + "é.txt".encode()
        + b"</a>"
        + b" " * 44
        + b" "
        + DATE
        + b" "
        + b"9".rjust(19)
        + b"\r\n"
        b"</pre><hr></body>\r\n</html>\r\n"
    )
    assert body == expected


def test_html_title_escaped_and_empty_listing() -> None:
    body = autoindex.render_html('/a<b>&"/', [])
    assert body == (
        b"<html>\r\n<head><title>Index of /a&lt;b&gt;&amp;&quot;/</title></head>\r\n<body>\r\n"
        b'<h1>Index of /a&lt;b&gt;&amp;&quot;/</h1><hr><pre><a href="../">../</a>\r\n'
        b"</pre><hr></body>\r\n</html>\r\n"
    )


def test_html_name_widths() -> None:
    # exactly 50 bytes: no truncation, no padding; a 50-byte directory gets no trailing "/" text
    fifty = b"y" * 50
    line = autoindex.render_html("/", [Entry(fifty, False, True, T, 1)]).split(b"\r\n")[4]
    assert line == b'<a href="' + fifty + b'">' + fifty + b"</a> " + DATE + b" " + b"1".rjust(19)
    line = autoindex.render_html("/", [Entry(fifty, True, False, T, 1)]).split(b"\r\n")[4]
    assert line.startswith(b'<a href="' + fifty + b'/">' + fifty + b"</a> ")
    # 49-byte directory: the "/" fills the last column
    d49 = b"d" * 49
    line = autoindex.render_html("/", [Entry(d49, True, False, T, 1)]).split(b"\r\n")[4]
    assert line.startswith(b'<a href="' + d49 + b'/">' + d49 + b"/</a> ")
    # 51 bytes: cut to 47 and "..>"
    e51 = b"e" * 51
    line = autoindex.render_html("/", [Entry(e51, False, True, T, 1)]).split(b"\r\n")[4]
    assert line.startswith(b'<a href="' + e51 + b'">' + b"e" * 47 + b"..&gt;</a> ")


def test_html_long_name_with_html_chars() -> None:
    name = b"&" * 60
    line = autoindex.render_html("/", [Entry(name, False, True, T, 1)]).split(b"\r\n")[4]
    assert line.startswith(b'<a href="' + b"%26" * 60 + b'">' + b"&amp;" * 47 + b"..&gt;</a> ")


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, b"      0"),
        (9999, b"   9999"),
        (10000, b"    10K"),
        (10239, b"    10K"),
        (10752, b"    11K"),  # 10.5 KiB rounds half up
        (1048575, b"  1024K"),
        (1048576, b"     1M"),
        (1572863, b"     1M"),
        (1572864, b"     2M"),
        (1073741824, b"     1G"),
        (5 * 1073741824 + 536870912, b"     6G"),
    ],
)
def test_human_sizes(size: int, text: bytes) -> None:
    line = autoindex.render_html("/", [Entry(b"f", False, True, T, size)], exact_size=False).split(b"\r\n")[4]
    assert line.endswith(b" " + DATE + b" " + text)


def test_human_size_directory() -> None:
    line = autoindex.render_html("/", [Entry(b"d", True, False, T, 0)], exact_size=False).split(b"\r\n")[4]
    assert line.endswith(DATE + b"       -")


def test_localtime_offset() -> None:
    line = autoindex.render_html("/", [Entry(b"f", False, True, T, 1)], localtime=True, gmtoff=3600)
    assert b"29-Nov-2026 00:16" in line


def test_json_exact() -> None:
    body = autoindex.render_json(
        autoindex.sort_entries([Entry(b"a.txt", False, True, T, 1234), Entry(b"sub", True, False, T, 0)])
    )
    assert body == (
        b"[\r\n"
        b'{ "name":"sub", "type":"directory", "mtime":"Sat, 28 Nov 2026 23:16:33 GMT" },\r\n'
        b'{ "name":"a.txt", "type":"file", "mtime":"Sat, 28 Nov 2026 23:16:33 GMT", "size":1234 }\r\n'
        b"]"
    )
    assert autoindex.render_json([]) == b"[\r\n]"


def test_json_escapes_and_other_type() -> None:
    body = autoindex.render_json([Entry(b'q"b\\n\nt\t\x01\x1f\xc3\xa9', False, False, T, 0)])
    assert b'"name":"q\\"b\\\\n\\nt\\t\\u0001\\u001F\xc3\xa9"' in body
    assert b'"type":"other"' in body and b'"size"' not in body


def test_jsonp() -> None:
    assert autoindex.jsonp_callback("") is None
    assert autoindex.jsonp_callback("a=1&callback=") is None
    assert autoindex.jsonp_callback("a=1&Callback=cb_1.x") == "cb_1.x"
    for bad in ("callback=a-b", "callback=" + "a" * 129, "callback=a%20b", "callback=é"):
        with pytest.raises(ValueError):
            autoindex.jsonp_callback(bad)
    ctype, body = autoindex.render("jsonp", "/", [Entry(b"a", False, True, T, 1)], "callback=cb")
    assert ctype == "application/javascript"
    assert body.startswith(b"/* callback */\r\ncb([\r\n{") and body.endswith(b"\r\n]);")
    ctype, body = autoindex.render("jsonp", "/", [], "")
    assert ctype == "application/json" and body == b"[\r\n]"


def test_xml_exact() -> None:
    body = autoindex.render_xml([Entry(b"sub", True, False, T, 0), Entry(b"a&b", False, True, T, 12)])
    assert body == (
        b'<?xml version="1.0"?>\r\n<list>\r\n'
        b'<directory mtime="2026-11-28T23:16:33Z">sub</directory>\r\n'
        b'<file mtime="2026-11-28T23:16:33Z" size="12">a&amp;b</file>\r\n'
        b"</list>\r\n"
    )


def test_render_content_types() -> None:
    assert autoindex.render("html", "/", [])[0] == "text/html"
    assert autoindex.render("json", "/", [])[0] == "application/json"
    assert autoindex.render("xml", "/", [])[0] == "text/xml; charset=utf-8"


def test_scan(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_bytes(b"12345")
    (tmp_path / ".hidden").write_text("h")
    (tmp_path / ".hiddendir").mkdir()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dangling").symlink_to("nowhere")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "tofile").symlink_to("file.txt")
    os.utime(tmp_path / "file.txt", (T, T))
    raw = b"bin\xff"
    (tmp_path / os.fsdecode(raw)).write_text("")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        got = {e.name: e for e in autoindex.scan(fd)}
    finally:
        os.close(fd)
    assert set(got) == {b"file.txt", b"dir", b"dangling", b"loop", b"tofile", raw}
    assert got[b"file.txt"] == Entry(b"file.txt", False, True, T, 5)
    assert got[b"dir"].is_dir and not got[b"dir"].is_file
    assert not got[b"dangling"].is_dir and not got[b"dangling"].is_file  # described by lstat
    assert got[b"tofile"].is_file and got[b"tofile"].size == 5  # followed
