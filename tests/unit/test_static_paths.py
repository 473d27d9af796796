"""URI -> path mapping (root, alias, regex alias), containment, symlink policies and errno statuses."""

from __future__ import annotations

import errno
import itertools
import os
import stat
from pathlib import Path

import pytest

from pyginx.errors import HttpError
from pyginx.handlers.paths import (
    Mapped,
    PathError,
    Policy,
    alias_base,
    check_contained,
    escape_uri,
    is_inside,
    map_uri,
    open_file,
    stat_file,
    status_for_errno,
    symlinks_from,
    try_files_path,
)
from pyginx.http.uri import normalize_path

CANARY = b"CANARY-SECRET-DO-NOT-SERVE\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/secret.txt (outside every root), tmp/www (a root), tmp/images (an alias) and symlinks."""
    (tmp_path / "secret.txt").write_bytes(CANARY)
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (www / "a.txt").write_text("a")
    (www / "sub" / "b.txt").write_text("b")
    (www / "link_in").symlink_to("a.txt")
    (www / "link_out").symlink_to("../secret.txt")
    (www / "dirlink_in").symlink_to("sub")
    (www / "dirlink_out").symlink_to("..")
    (www / "abs_out").symlink_to(tmp_path / "secret.txt")
    (www / "dangling").symlink_to("nowhere")
    (www / "loop").symlink_to("loop")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.png").write_text("png")
    (tmp_path / "images-private").mkdir()
    (tmp_path / "images-private" / "secret2").write_bytes(CANARY)
    (tmp_path / "wwwlink").symlink_to("www")
    return tmp_path


# ------------------------------------------------------------------ mapping


def test_map_root() -> None:
    assert map_uri("/a/b.txt", "/srv/www") == Mapped("/srv/www/a/b.txt", "/srv/www")
    assert map_uri("/a/b.txt", "/srv/www/") == Mapped("/srv/www/a/b.txt", "/srv/www")
    assert map_uri("/dir/", "/srv/www") == Mapped("/srv/www/dir/", "/srv/www")
    assert map_uri("/", "/srv/www") == Mapped("/srv/www/", "/srv/www")
    assert map_uri("/x", "/") == Mapped("/x", "/")


def test_map_prefix_alias() -> None:
    # location /img/ { alias /srv/images/; }
    assert map_uri("/img/x.png", "/r", "/srv/images/", "/img/").path == "/srv/images/x.png"
    assert map_uri("/img/", "/r", "/srv/images/", "/img/").path == "/srv/images/"
    # location /img { alias /srv/images; }
    assert map_uri("/img/x.png", "/r", "/srv/images", "/img").path == "/srv/images/x.png"
    assert map_uri("/img", "/r", "/srv/images", "/img").path == "/srv/images"
    # location = /favicon.ico { alias /srv/icons/fav.ico; }
    assert map_uri("/favicon.ico", "/r", "/srv/icons/fav.ico", "/favicon.ico").path == "/srv/icons/fav.ico"


def test_alias_traps() -> None:
    # location /img { alias /srv/images/; } and /img../secret: nginx opens /srv/images/../secret
    with pytest.raises(PathError) as e:
        map_uri("/img../secret", "/r", "/srv/images/", "/img")
    assert e.value.status == 403
    # location /img { alias /srv/images; } and /img-private/x: nginx opens /srv/images-private/x
    with pytest.raises(PathError) as e:
        map_uri("/img-private/x", "/r", "/srv/images", "/img")
    assert e.value.status == 404
    with pytest.raises(PathError) as e:
        map_uri("/img..", "/r", "/srv/images/", "/img")
    assert e.value.status == 403


def test_names_with_dots_are_fine() -> None:
    assert map_uri("/a..b/c...d", "/srv").path == "/srv/a..b/c...d"
    assert map_uri("/img..x", "/r", "/srv/images/", "/img").path == "/srv/images/..x"
    assert map_uri("/.well-known/x", "/srv").path == "/srv/.well-known/x"
    assert map_uri("/a\\..\\b", "/srv").path == "/srv/a\\..\\b"  # backslash is an ordinary byte


def test_regex_alias() -> None:
    assert alias_base("/srv/d/$1") == "/srv/d"
    assert alias_base("/srv/d/${name}.png") == "/srv/d"
    assert alias_base("/srv/x$1") == "/srv"
    assert alias_base("/srv/one.png") == "/srv"
    assert alias_base("$1") == "/"
    # location ~ ^/d/(.*)$ { alias /srv/d/$1; }
    assert map_uri("/d/a/b", "/r", "/srv/d/a/b", regex_alias_base="/srv/d").path == "/srv/d/a/b"
    with pytest.raises(PathError) as e:
        map_uri("/d/../x", "/r", "/srv/d/../x", regex_alias_base="/srv/d")
    assert e.value.status == 403
    # location ~ ^/d(.*)$ { alias /srv/d$1; }: "/d../etc" captures "../etc", naming the directory
    # "d.." inside /srv: no component is "..", nothing escapes
    assert map_uri("/d../etc", "/r", "/srv/d../etc", regex_alias_base="/srv").path == "/srv/d../etc"


def test_nul_is_refused() -> None:
    with pytest.raises(PathError) as e:
        map_uri("/a\0b", "/srv")
    assert e.value.status == 400


def test_check_contained() -> None:
    check_contained("/srv/www", "/srv/www")
    check_contained("/srv/www/", "/srv/www")
    check_contained("/srv/www/./a", "/srv/www")
    for bad, status in [("/srv/wwwx", 404), ("/srv", 404), ("/srv/www/../x", 403), ("/srv/www/a/..", 403)]:
        with pytest.raises(PathError) as e:
            check_contained(bad, "/srv/www")
        assert e.value.status == status, bad


def test_try_files_paths() -> None:
    assert try_files_path("/a.html", "/x", "/srv").path == "/srv/a.html"
    # prefix alias: the candidate loses the location prefix when it starts with it
    assert (
        try_files_path("/img/x.png", "/img/x.png", "/r", "/srv/images/", "/img/").path == "/srv/images/x.png"
    )
    assert try_files_path("/other", "/img/x.png", "/r", "/srv/images/", "/img/").path == "/srv/images//other"
    # regex alias: expanded alias + candidate
    assert try_files_path("/x", "/d/x", "/r", "/srv/d", regex_alias_base="/srv/d").path == "/srv/d/x"


def test_escape_uri() -> None:
    assert escape_uri("/plain/path-_.~!$&'()*+,;=:@") == "/plain/path-_.~!$&'()*+,;=:@"
    assert escape_uri("/a b") == "/a%20b"
    assert escape_uri('/"#%<>?\\^`{|}') == "/%22%23%25%3C%3E%3F%5C%5E%60%7B%7C%7D"
    assert escape_uri("/é") == "/%C3%A9"
    assert escape_uri("/\x01\x7f") == "/%01%7F"
    raw = b"/\xff".decode("utf-8", "surrogateescape")
    assert escape_uri(raw) == "/%FF"


def test_symlinks_from() -> None:
    assert symlinks_from("/srv/www/a", None) == 0
    assert symlinks_from("/srv/www/a", "/srv/www") == 8
    assert symlinks_from("/srv/www/a", "/srv/www/") == 8
    assert symlinks_from("/srv/www", "/srv/www") == -1
    assert symlinks_from("/srv/wwwx/a", "/srv/www") == 0
    assert symlinks_from("/other", "/srv/www") == 0


def test_is_inside() -> None:
    assert is_inside("/srv/www", "/srv/www")
    assert is_inside("/srv/www/a", "/srv/www")
    assert not is_inside("/srv/wwwx", "/srv/www")
    assert is_inside("/anything", "/")


def test_status_for_errno() -> None:
    assert status_for_errno(errno.ENOENT) == 404
    assert status_for_errno(errno.ENOTDIR) == 404
    assert status_for_errno(errno.ENAMETOOLONG) == 404
    assert status_for_errno(errno.EACCES) == 403
    assert status_for_errno(errno.ELOOP) == 403
    assert status_for_errno(errno.EMLINK) == 403
    assert status_for_errno(errno.EIO) == 500
    assert status_for_errno(errno.EMFILE) == 500


# ------------------------------------------------------------------ opening


def _open_status(path: str, base: str, policy: Policy) -> int | bytes:
    try:
        fd, _st = open_file(path, base, policy)
    except PathError as e:
        return e.status
    try:
        return b"<dir>" if stat.S_ISDIR(_st.st_mode) else os.pread(fd, 1000, 0)
    finally:
        os.close(fd)


def test_open_plain(tree: Path) -> None:
    www = str(tree / "www")
    p = Policy()
    assert _open_status(www + "/a.txt", www, p) == b"a"
    assert _open_status(www + "/missing", www, p) == 404
    assert _open_status(www + "/a.txt/x", www, p) == 404  # ENOTDIR
    assert _open_status(www + "/" + "x" * 300, www, p) == 404  # ENAMETOOLONG
    assert _open_status(www + "/loop", www, p) == 403  # ELOOP
    assert _open_status(www + "/dangling", www, p) == 404


def test_symlinks_outside_root(tree: Path) -> None:
    www = str(tree / "www")
    p = Policy()  # pyginx default: symlinks may not lead outside the root
    assert _open_status(www + "/link_in", www, p) == b"a"
    assert _open_status(www + "/dirlink_in/b.txt", www, p) == b"b"
    assert _open_status(www + "/link_out", www, p) == 403
    assert _open_status(www + "/abs_out", www, p) == 403
    assert _open_status(www + "/dirlink_out/secret.txt", www, p) == 403
    assert _open_status(www + "/dirlink_out/www/a.txt", www, p) == b"a"  # back inside: fine
    allow = Policy(symlinks_outside_root=True)
    assert _open_status(www + "/link_out", www, allow) == CANARY


def test_root_reached_through_a_symlink(tree: Path) -> None:
    # root /tmp/wwwlink -> www: the root's own symlink is part of the root, not an escape
    root = str(tree / "wwwlink")
    assert _open_status(root + "/a.txt", root, Policy()) == b"a"
    assert _open_status(root + "/link_out", root, Policy()) == 403


def test_disable_symlinks_on(tree: Path) -> None:
    www = str(tree / "www")
    on = Policy("on", symlinks_outside_root=True)
    assert _open_status(www + "/a.txt", www, on) == b"a"
    assert _open_status(www + "/sub/b.txt", www, on) == b"b"
    assert _open_status(www + "/link_in", www, on) == 403  # final symlink: ELOOP
    assert _open_status(www + "/dirlink_in/b.txt", www, on) == 404  # intermediate: ENOTDIR, as nginx
    assert _open_status(www + "/sub/", www, on) == b"<dir>"
    assert _open_status(www + "/dirlink_in/", www, on) == 404
    # the root itself behind a symlink: refused unless from= covers it
    root = str(tree / "wwwlink")
    assert _open_status(root + "/a.txt", root, on) == 404
    with_from = Policy("on", root, symlinks_outside_root=True)
    assert _open_status(root + "/a.txt", root, with_from) == b"a"
    assert _open_status(root + "/link_in", root, with_from) == 403


def test_disable_symlinks_if_not_owner(tree: Path) -> None:
    www = str(tree / "www")
    p = Policy("if_not_owner", symlinks_outside_root=True)
    assert _open_status(www + "/link_in", www, p) == b"a"  # same owner
    assert _open_status(www + "/dirlink_in/b.txt", www, p) == b"b"
    if os.geteuid() != 0:
        pytest.skip("changing a symlink's owner needs root")
    os.lchown(www + "/link_in", 12345, 12345)
    assert _open_status(www + "/link_in", www, p) == 403


def test_permission_denied(tree: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    www = tree / "www"
    (www / "private.txt").write_text("p")
    (www / "private.txt").chmod(0)
    assert _open_status(str(www / "private.txt"), str(www), Policy()) == 403


def test_stat_file_needs_no_read_permission(tree: Path) -> None:
    www = str(tree / "www")
    st = stat_file(www + "/sub", www, Policy())
    assert st.st_size >= 0
    with pytest.raises(PathError) as e:
        stat_file(www + "/missing", www, Policy())
    assert e.value.status == 404
    with pytest.raises(PathError) as e:
        stat_file(www + "/link_out", www, Policy())
    assert e.value.status == 403
    with pytest.raises(PathError) as e:
        stat_file(www + "/link_in", www, Policy("on"))
    assert e.value.status == 403  # with disable_symlinks a final symlink fails the test too


# ------------------------------------------------------------------ traversal corpus


def _variants() -> list[str]:
    """Hundreds of encodings of "go up and read secret.txt"."""
    dots = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "..%00", "%c0%ae%c0%ae", "%uff0e%uff0e"]
    seps = ["/", "%2f", "%2F", "\\", "%5c", "%255c", "//", "/./"]
    targets = ["secret.txt", "secret%2etxt", "www/../secret.txt"]
    out = []
    for dot, sep, target in itertools.product(dots, seps, targets):
        for depth in (1, 2, 4):
            out.append("/" + (dot + sep) * depth + target)
            out.append("/sub/" + (dot + sep) * depth + target)
            out.append("/img" + (dot + sep) * depth + target)
    out += ["/img../secret.txt", "/img..%2fsecret.txt", "/img%2e%2e/secret.txt", "/dirlink_out/secret.txt"]
    out += ["/link_out", "/abs_out", "/dirlink_out/dirlink_out/secret.txt"]
    out += ["/a.txt", "/sub/b.txt", "/link_in", "/img/x.png", "/sub/../a.txt", "/img/../img/x.png"]
    return out


def test_traversal_corpus(tree: Path) -> None:
    www = str(tree / "www")
    alias = str(tree / "images") + "/"
    corpus = _variants()
    assert len(corpus) > 500
    served = 0
    for raw in corpus:
        try:
            uri = normalize_path(raw)
        except HttpError as e:
            assert e.status == 400
            continue
        for mapper in (
            lambda u: map_uri(u, www),
            lambda u: map_uri(u, www, alias, "/img"),  # the trap: location /img, alias with a slash
        ):
            try:
                mapped = mapper(uri)
            except PathError as e:
                assert e.status in (400, 403, 404)
                continue
            got = _open_status(mapped.path, mapped.base, Policy())
            if isinstance(got, bytes):
                assert got != CANARY, raw
                served += 1
            else:
                assert got in (400, 403, 404), (raw, got)
    assert served > 0  # the corpus does reach real files inside the roots
