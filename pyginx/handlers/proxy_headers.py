"""What the proxy sends upstream and what it passes back: pure functions over plain data.

Request side (nginx's ngx_http_proxy_create_request): the URI rules, Host, proxy_set_header merged
with nginx's defaults, hop-by-hop headers dropped (RFC 9110 7.6.1), body framing recomputed,
$proxy_add_x_forwarded_for. Response side (ngx_http_upstream_process_headers): headers nginx hides or
drops, hop-by-hop headers, proxy_hide_header / proxy_pass_header, proxy_redirect.

Variables are rendered by the caller (pyginx/handlers/proxy.py): these functions take rendered values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pyginx.config.model import HeaderValue, Location, ProxyPass, ProxyRedirect

# --------------------------------------------------------------------------------------------------------
# request side

# Never forwarded from the client as received: hop-by-hop (RFC 9110 7.6.1), or recomputed by the proxy
# (Host, framing). nginx's list (ngx_http_proxy_headers) plus Trailer, since pyginx drops trailers.
REQUEST_DROP = frozenset(
    {
        "host",
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "content-length",
        "expect",
        "upgrade",
    }
)

# Headers the proxy itself decides whatever proxy_set_header says: the body framing must match the
# bytes actually sent, or the upstream would mis-frame the connection.
FRAMING = frozenset({"content-length", "transfer-encoding"})


def connection_tokens(values: Iterable[str]) -> set[str]:
    """Lower-cased names listed in Connection header values ("close, X-Foo" -> {"close", "x-foo"})."""
    out: set[str] = set()
    for value in values:
        for token in value.split(","):
            token = token.strip().lower()
            if token:
                out.add(token)
    return out


def is_upgrade_request(headers: dict[str, str]) -> bool:
    """A request asking for a protocol switch: an Upgrade header and "upgrade" in Connection."""
    return "upgrade" in headers and "upgrade" in connection_tokens([headers.get("connection", "")])


# nginx's NGX_ESCAPE_URI: control bytes, space, " # % < > ? \ ^ ` { | } DEL and every byte >= 0x80.
_URI_UNSAFE = frozenset(
    list(range(0x21)) + [0x22, 0x23, 0x25, 0x3C, 0x3E, 0x3F, 0x5C, 0x5E, 0x60, 0x7B, 0x7C, 0x7D]
)
_ESCAPE_TABLE = [f"%{b:02X}" if (b in _URI_UNSAFE or b >= 0x7F) else chr(b) for b in range(256)]


def escape_uri(path: str) -> str:
    """Percent-encode a decoded path as nginx does before sending it upstream."""
    raw = path.encode("utf-8", "surrogateescape")
    if raw.isascii() and not any(b in _URI_UNSAFE or b == 0x7F for b in raw):
        return path
    return "".join(_ESCAPE_TABLE[b] for b in raw)


def upstream_uri(
    pp: ProxyPass,
    location: Location | None,
    uri: str,
    args: str,
    request_uri: str,
    internal: bool,
) -> str:
    """The request-target sent upstream.

    * proxy_pass without a URI part: the client's request line target as received (nginx's unparsed
      URI), unless an internal redirect (error_page, try_files, index) changed the URI: then the
      current URI, re-escaped, and the arguments. A jump to a named location keeps the original.
    * with a URI part: the matched location prefix is replaced by it (`location /a/` +
      `proxy_pass http://b/x/` sends /a/1 as /x/1); for locations that are not prefixes (regex,
      named: the loader refuses a URI part there) the URI part is sent followed by the whole URI.
    """
    named = location is not None and location.modifier == "@"
    if pp.uri is None:
        if not internal or named:
            return request_uri
        return escape_uri(uri) + ("?" + args if args else "")
    loc_len = 0
    if location is not None and location.modifier in ("", "=", "^~"):
        loc_len = min(len(location.match), len(uri))
    rest = uri[loc_len:]
    raw_path = request_uri.partition("?")[0]
    # nginx copies the decoded URI as is unless it was percent-encoded by the client (quoted) or
    # came from an internal redirect; then it is re-escaped.
    if internal or "%" in raw_path:
        rest = escape_uri(rest)
    base = pp.uri
    if base.startswith("?"):
        base = "/" + base
    target = base + rest
    if args:
        target += ("&" if "?" in base else "?") + args
    return target


def add_x_forwarded_for(incoming: str | None, client_addr: str) -> str:
    """$proxy_add_x_forwarded_for: the client's X-Forwarded-For, then ", ", then its address."""
    if incoming:
        return f"{incoming}, {client_addr}"
    return client_addr


def proxy_port(pp: ProxyPass) -> str:
    """$proxy_port: the port of the proxied server (80 when not written; empty for unix sockets)."""
    if pp.unix is not None:
        return ""
    return str(pp.port) if pp.port is not None else "80"


@dataclass(frozen=True)
class SetHeaders:
    """proxy_set_header of one location, split as nginx's init_headers does."""

    host: HeaderValue | None  # a Host set by the user (rendered separately: empty means $proxy_host)
    others: tuple[HeaderValue, ...]  # in configuration order, framing headers left out
    names: frozenset[str]  # every lower-cased name set: client headers with these names are not passed


def plan_set_headers(set_headers: tuple[HeaderValue, ...]) -> SetHeaders:
    host: HeaderValue | None = None
    others: list[HeaderValue] = []
    for hv in set_headers:
        lname = hv.name.lower()
        if lname == "host":
            host = hv
        elif lname not in FRAMING:
            others.append(hv)
    names = frozenset({hv.name.lower() for hv in set_headers})
    return SetHeaders(host, tuple(others), names)


@dataclass(init=False)  # __init__ written out: compiled, it is native (a dataclass's generated one is not)
class Framing:
    """How the request body goes upstream: none, a known length, or chunked (streamed, length unknown).
    Treated as immutable (not frozen: a frozen dataclass's attribute writes cost a call each)."""

    kind: str  # "none" | "length" | "chunked"
    length: int

    def __init__(self, kind: str, length: int = 0) -> None:
        self.kind = kind
        self.length = length


NO_BODY = Framing("none")


def request_framing(
    *,
    has_body: bool,
    content_length: int | None,
    buffered_length: int | None,
    streamed: bool,
) -> Framing:
    """Content-Length / Transfer-Encoding for the upstream request, recomputed as nginx does.

    Buffered bodies are sent with their real length (a chunked client body becomes a Content-Length);
    a streamed body keeps the client's length, or is re-chunked when the client sent it chunked.
    A request with no body and no Content-Length gets neither header; `Content-Length: 0` stays.
    """
    if not streamed:
        if buffered_length is not None and (has_body or content_length is not None):
            return Framing("length", buffered_length)
        return NO_BODY
    if content_length is not None:
        return Framing("length", content_length)
    if has_body:
        return Framing("chunked")
    return NO_BODY


def _enc(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _clean(value: str) -> str:
    # A rendered variable must not smuggle a line break into the upstream request.
    if "\r" in value or "\n" in value:
        return value.replace("\r", " ").replace("\n", " ")
    return value


def _own_lines(
    lines: list[str], set_names: frozenset[str], connection: str | None, upgrade: str | None, framing: Framing
) -> None:
    """The proxy's own Connection, Upgrade and framing lines (unless proxy_set_header set them)."""
    if connection and "connection" not in set_names:
        lines.append(f"Connection: {connection}\r\n")
    if upgrade and "upgrade" not in set_names:
        lines.append(f"Upgrade: {_clean(upgrade)}\r\n")
    if framing.kind == "length":
        lines.append(f"Content-Length: {framing.length}\r\n")
    elif framing.kind == "chunked":
        lines.append("Transfer-Encoding: chunked\r\n")


def build_request_head(
    *,
    method: str,
    target: str,
    http_version: str,
    host: str,
    set_values: Iterable[tuple[str, str]],
    set_names: frozenset[str],
    client_headers: Iterable[tuple[str, str]] | None,
    connection: str | None,
    upgrade: str | None,
    framing: Framing,
) -> bytes:
    """The upstream request head, in nginx's order: request line, Host, proxy_set_header values
    (empty values dropped), the proxy's own Connection/Upgrade/framing headers, then the client's
    headers minus those set, hop-by-hop ones and those the client's Connection header names.

    `client_headers` None is proxy_pass_request_headers off. `connection`/`upgrade` None: not sent
    (unless set with proxy_set_header).
    """
    lines = [f"{method} {target} HTTP/{http_version}\r\n"]
    if host:
        lines.append(f"Host: {_clean(host)}\r\n")
    for name, value in set_values:
        if value:
            lines.append(f"{name}: {_clean(value)}\r\n")
    _own_lines(lines, set_names, connection, upgrade, framing)
    if client_headers is not None:
        listed: set[str] = set()
        headers = list(client_headers)
        for name, value in headers:
            if name.lower() == "connection":
                listed |= connection_tokens([value])
        for name, value in headers:
            lname = name.lower()
            if lname in REQUEST_DROP or lname in set_names or lname in listed:
                continue
            lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return _enc("".join(lines))


class HeadTemplate:
    """`build_request_head` compiled for one location: the proxy_set_header lines whose values are
    constant are rendered and cleaned once; per request only the request line, Host, the variable
    values and the client's headers are formatted. Produces exactly what build_request_head does."""

    __slots__ = ("suffix", "entries", "set_names", "skip")

    def __init__(self, http_version: str, set_headers: SetHeaders, constant: tuple[bool, ...]) -> None:
        """`constant[i]` says whether set_headers.others[i] has no variables (its value is the text)."""
        self.suffix = f" HTTP/{http_version}\r\n"
        entries: list[tuple[str, bool]] = []  # (line, True) for constant ones, (name, False) to render
        for hv, fixed in zip(set_headers.others, constant, strict=True):
            if not fixed:
                entries.append((hv.name, False))
            elif hv.value:
                entries.append((f"{hv.name}: {_clean(hv.value)}\r\n", True))
        self.entries = tuple(entries)
        self.set_names = set_headers.names
        self.skip = REQUEST_DROP | set_headers.names

    def render(
        self,
        method: str,
        target: str,
        host: str,
        values: Iterable[str],
        client_headers: Sequence[tuple[str, str]] | None,
        connection: str | None,
        upgrade: str | None,
        framing: Framing,
    ) -> bytes:
        """`values`: the rendered variable proxy_set_header values, in configuration order. (Called
        once per request with positional arguments: keywords cost more than the call's work.)"""
        lines = [method, " ", target, self.suffix]
        if host:
            lines.append(f"Host: {_clean(host)}\r\n")
        if self.entries:
            rendered = iter(values)
            for text, fixed in self.entries:
                if fixed:
                    lines.append(text)
                    continue
                value = next(rendered)
                if value:
                    lines.append(f"{text}: {_clean(value)}\r\n")
        _own_lines(lines, self.set_names, connection, upgrade, framing)
        if client_headers is not None:
            self._client_lines(client_headers, lines)
        lines.append("\r\n")
        return _enc("".join(lines))

    def _client_lines(self, client_headers: Sequence[tuple[str, str]], lines: list[str]) -> None:
        # The names a Connection header lists are only known at its line: the lines go out at once,
        # and in the rare case that Connection names a header not dropped anyway (usually it names
        # itself, keep-alive or close only), they are made again without the listed ones.
        skip = self.skip
        start = len(lines)
        listed: set[str] | None = None
        for name, value in client_headers:
            lname = name.lower()
            if lname in skip:
                if lname == "connection":
                    tokens = connection_tokens([value]) - skip
                    if tokens:
                        listed = tokens if listed is None else listed | tokens
                continue
            lines.append(f"{name}: {value}\r\n")
        if listed:
            del lines[start:]
            for name, value in client_headers:
                lname = name.lower()
                if lname not in skip and lname not in listed:
                    lines.append(f"{name}: {value}\r\n")


# --------------------------------------------------------------------------------------------------------
# response side

# nginx hides these from upstream responses by default (ngx_http_proxy_hide_headers); Date and Server
# come from pyginx itself.
DEFAULT_HIDE = frozenset(
    {
        "date",
        "server",
        "x-pad",
        "x-accel-expires",
        "x-accel-redirect",
        "x-accel-limit-rate",
        "x-accel-buffering",
        "x-accel-charset",
    }
)

# Dropped from every upstream response: hop-by-hop, or framing that pyginx recomputes for the client.
RESPONSE_DROP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "content-length"}
)


def hidden_headers(hide: Iterable[str], passed: Iterable[str]) -> frozenset[str]:
    """nginx's hide set: the defaults plus proxy_hide_header, minus proxy_pass_header."""
    return (DEFAULT_HIDE | {h.lower() for h in hide}) - {p.lower() for p in passed}


@dataclass(frozen=True)
class RedirectRule:
    """One proxy_redirect rule: a literal prefix, or a regex (`~` / `~*`), and its replacement."""

    pattern: str
    replacement: str
    regex: re.Pattern[str] | None = None


def proxy_url(pp: ProxyPass) -> str:
    """The proxy_pass URL without its URI, as proxy_redirect default compares it."""
    if pp.unix is not None:
        return f"{pp.scheme}://unix:{pp.unix}:"
    return f"{pp.scheme}://{pp.proxy_host}"


def redirect_rules(
    pp: ProxyPass | None, location: Location | None, conf: ProxyRedirect
) -> tuple[RedirectRule, ...]:
    """The rules in effect: `off` none; `default` (also what an unset proxy_redirect means) first,
    then the explicit ones in order. nginx builds `default` as:
    the proxy_pass URL (with its URI) is replaced by the location prefix, or, when proxy_pass has
    no URI, `URL/` by `/`."""
    if conf.off:
        return ()
    rules: list[RedirectRule] = []
    if conf.default:
        rules.extend(_default_rule(pp, location))
    for pattern, replacement in conf.rules:
        if pattern.startswith("~*"):
            rules.append(RedirectRule(pattern, replacement, re.compile(pattern[2:], re.IGNORECASE)))
        elif pattern.startswith("~"):
            rules.append(RedirectRule(pattern, replacement, re.compile(pattern[1:])))
        else:
            rules.append(RedirectRule(pattern, replacement))
    return tuple(rules)


def _default_rule(pp: ProxyPass | None, location: Location | None) -> list[RedirectRule]:
    if pp is None or pp.has_variables:
        return []
    url = proxy_url(pp)
    if pp.uri is not None:
        if location is None or location.modifier not in ("", "=", "^~"):
            return []
        return [RedirectRule(url + pp.uri, location.match)]
    return [RedirectRule(url + "/", "/")]


_CAPTURE = re.compile(r"\$(\d)|\$\{(\d)\}")


def rewrite_redirect(
    value: str, rules: tuple[RedirectRule, ...], prefix: int = 0, render: Callable[[str], str] | None = None
) -> str | None:
    """Apply the first matching rule to `value[prefix:]`; None when none matches.

    Literal patterns match at the start, as nginx's; regex captures are $1..$9 in the replacement;
    `render` expands other variables in a replacement ($host ...).
    """
    head, tail = value[:prefix], value[prefix:]
    for rule in rules:
        if rule.regex is None:
            if not tail.startswith(rule.pattern):
                continue
            repl = (
                render(rule.replacement)
                if render is not None and "$" in rule.replacement
                else rule.replacement
            )
            return head + repl + tail[len(rule.pattern) :]
        m = rule.regex.match(tail)
        if m is None:
            continue
        groups = m.groups()

        def capture(cm: re.Match[str], groups: tuple[str | None, ...] = groups) -> str:
            i = int(cm.group(1) or cm.group(2))
            return (groups[i - 1] or "") if 0 < i <= len(groups) else ""

        repl = _CAPTURE.sub(capture, rule.replacement)
        if render is not None and "$" in repl:
            repl = render(repl)
        # nginx replaces the whole value (from the prefix) for a regex rule
        return head + repl
    return None


def response_headers(
    headers: Iterable[tuple[str, str]],
    *,
    hide: frozenset[str],
    upgrade: bool = False,
    rules: tuple[RedirectRule, ...] = (),
    render: Callable[[str], str] | None = None,
    absolute: Callable[[str], str] | None = None,
) -> list[tuple[str, str]]:
    """The upstream response headers as they go to the client.

    Dropped: hop-by-hop headers and those the upstream's Connection header names; Content-Length and
    Transfer-Encoding (the framing to the client is pyginx's); the hide set; Upgrade except on a 101
    that opens a tunnel. Location and Refresh go through proxy_redirect; a rewritten Location that is
    relative is made absolute with `absolute` (nginx's absolute_redirect, done by its header filter).
    """
    items = headers if isinstance(headers, list) else list(headers)
    names = [n.lower() for n, _ in items]
    drop = response_drop(hide, upgrade)
    out = filter_response(items, names, drop, rules=rules, render=render, absolute=absolute, upgrade=upgrade)
    if upgrade:
        out.append(("Connection", "upgrade"))
    return out


def response_drop(hide: frozenset[str], upgrade: bool) -> frozenset[str]:
    """Names never passed to the client: hop-by-hop, framing, the hide set, and Upgrade unless a
    tunnel opens. Computed once per location by the proxy."""
    drop = RESPONSE_DROP | hide
    return drop if upgrade else drop | {"upgrade"}


def filter_response(
    items: list[tuple[str, str]],
    names: list[str],
    drop: frozenset[str],
    *,
    rules: tuple[RedirectRule, ...] = (),
    render: Callable[[str], str] | None = None,
    absolute: Callable[[str], str] | None = None,
    upgrade: bool = False,
) -> list[tuple[str, str]]:
    """The core of response_headers: `names` are the lower-cased names of `items`, `drop` comes
    from response_drop()."""
    if "connection" in names:
        listed = _listed(items, names, drop, upgrade)
        if listed:
            drop = drop | listed
    if rules and ("location" in names or "refresh" in names):
        return [
            (item[0], _redirected(lname, item[1], rules, render, absolute))
            if lname == "location" or lname == "refresh"
            else item
            for lname, item in zip(names, items, strict=True)
            if lname not in drop
        ]
    # the usual case: one comprehension, no per-header branches
    return [item for lname, item in zip(names, items, strict=True) if lname not in drop]


# What upstreams usually put in Connection: nothing to remove beyond the hop-by-hop headers.
_PLAIN_CONNECTION = frozenset({"keep-alive", "close"})


def _listed(items: list[tuple[str, str]], names: list[str], drop: frozenset[str], upgrade: bool) -> set[str]:
    """Header names the upstream's Connection header lists, that are not dropped anyway."""
    if names.count("connection") == 1:
        value = items[names.index("connection")][1]
        if value.lower() in _PLAIN_CONNECTION:
            return set()
        values = [value]
    else:
        values = [v for n, (_, v) in zip(names, items, strict=True) if n == "connection"]
    listed = connection_tokens(values) - drop
    if upgrade:
        listed.discard("upgrade")
    return listed


def _redirected(
    lname: str,
    value: str,
    rules: tuple[RedirectRule, ...],
    render: Callable[[str], str] | None,
    absolute: Callable[[str], str] | None,
) -> str:
    """proxy_redirect applied to a Location or Refresh value."""
    if lname == "location":
        new = rewrite_redirect(value, rules, 0, render)
        if new is not None:
            return absolute(new) if absolute is not None else new
        return value
    at = value.lower().find("url=")
    if at >= 0:
        new = rewrite_redirect(value, rules, at + 4, render)
        if new is not None:
            return new
    return value
