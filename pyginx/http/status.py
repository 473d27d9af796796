"""Status lines and nginx's built-in error pages, pre-built as bytes once."""

from __future__ import annotations

from pyginx import __version__

REASONS: dict[int, str] = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",  # nginx's wording
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Not Allowed",  # nginx's wording
    406: "Not Acceptable",
    408: "Request Time-out",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    421: "Misdirected Request",
    429: "Too Many Requests",
    494: "Request Header Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
    505: "HTTP Version Not Supported",
    507: "Insufficient Storage",
}

# nginx's status-line table (ngx_http_header_filter_module.c): a status not in it (300, 305, 418 ...)
# is sent as "HTTP/1.1 300 " with no reason phrase.
STATUS_LINE_REASONS = frozenset(
    {200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308}
    | {400, 401, 402, 403, 404, 405, 406, 408, 409, 410, 411, 412, 413, 414, 415, 416, 421, 429}
    | {500, 501, 502, 503, 504, 505, 507}
)

# Error pages nginx has a body for (ngx_http_error_pages); the title differs from the status line for
# 302 ("Found") and 401 ("Authorization Required").
PAGE_TITLES: dict[int, str] = {
    code: REASONS[code]
    for code in (301, 303, 307, 308, 400, 402, 403, 404, 405, 406, 408, 409, 410, 411, 412, 413, 414)
    + (415, 416, 421, 429, 500, 501, 502, 503, 504, 505, 507)
}
PAGE_TITLES[302] = "Found"
PAGE_TITLES[401] = "Authorization Required"

# After these, nginx's special response handler turns keep-alive off (ngx_http_special_response_handler).
# Only error pages: `return 400 "text"` or a proxied 500 keep the connection.
CLOSING_STATUSES = frozenset({400, 413, 414, 495, 496, 497, 500, 501})

# nginx's internal statuses answered as 400 with their own page (and logged as 400)
INTERNAL_400: dict[int, str] = {
    494: "Request Header Or Cookie Too Large",
    495: "The SSL certificate error",
    496: "No required SSL certificate was sent",
    497: "The plain HTTP request was sent to HTTPS port",
}

# add_header and expires apply only to these unless `always` (ngx_http_headers_filter_module.c).
HEADER_FILTER_STATUSES = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})

# nginx's msie_padding: appended to error pages (4xx, 5xx) for MSIE and Chrome user agents.
MSIE_PADDING = b"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" * 6

STATUS_LINES: dict[int, bytes] = {}


def reason(status: int) -> str:
    return REASONS.get(status, "Unknown")


def status_line(status: int) -> bytes:
    """`HTTP/1.1 200 OK\\r\\n`, cached per status; nginx's table decides which have a reason."""
    line = STATUS_LINES.get(status)
    if line is None and status in INTERNAL_400:  # nginx's internal statuses: 400 on the wire
        line = STATUS_LINES[status] = b"HTTP/1.1 400 Bad Request\r\n"
    if line is None:
        if status in STATUS_LINE_REASONS:
            line = f"HTTP/1.1 {status} {REASONS[status]}\r\n".encode()
        else:
            line = f"HTTP/1.1 {status:03d} \r\n".encode()
        if len(STATUS_LINES) < 1000:  # statuses come from the configuration and upstreams: bounded
            STATUS_LINES[status] = line
    return line


def server_header(tokens: bool) -> bytes:
    return f"Server: pyginx/{__version__}\r\n".encode() if tokens else b"Server: pyginx\r\n"


def _page(status: int, tokens: bool) -> bytes:
    if status in INTERNAL_400:
        head = f"400 {INTERNAL_400[status]}"
        heading = f"<center><h1>400 Bad Request</h1></center>\r\n<center>{INTERNAL_400[status]}</center>"
    else:
        head = f"{status} {PAGE_TITLES[status]}"
        heading = f"<center><h1>{head}</h1></center>"
    server = f"pyginx/{__version__}" if tokens else "pyginx"
    return (
        f"<html>\r\n<head><title>{head}</title></head>\r\n<body>\r\n"
        f"{heading}\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


_pages: dict[tuple[int, bool], bytes] = {}


def error_page_body(status: int, tokens: bool = True) -> bytes:
    """nginx's built-in HTML body for an error status (empty for statuses nginx sends bodiless)."""
    if status not in PAGE_TITLES and status not in INTERNAL_400:
        return b""  # nginx has pages only for the statuses it knows (ngx_http_error_pages)
    key = (status, tokens)
    body = _pages.get(key)
    if body is None:
        body = _pages[key] = _page(status, tokens)
    return body


def upstream_status_line(status: int, reason: str) -> bytes:
    """The status line nginx sends for a proxied response: the upstream's code and reason phrase as
    they came (ngx_http_proxy_process_status_line keeps them), `HTTP/1.1 200` when it had none."""
    text = f"HTTP/1.1 {status:03d} {reason}\r\n" if reason else f"HTTP/1.1 {status:03d}\r\n"
    return text.encode("latin-1", "replace")
