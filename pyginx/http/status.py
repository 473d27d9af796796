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

# After these, nginx turns keep-alive off for the connection (ngx_http_special_response_handler).
CLOSING_STATUSES = frozenset({400, 408, 413, 414, 494, 500, 501, 505})

# add_header and expires apply only to these unless `always` (ngx_http_headers_filter_module.c).
HEADER_FILTER_STATUSES = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})

_status_lines: dict[int, bytes] = {}


def reason(status: int) -> str:
    return REASONS.get(status, "Unknown")


def status_line(status: int) -> bytes:
    """`HTTP/1.1 200 OK\\r\\n`, cached per status."""
    line = _status_lines.get(status)
    if line is None and status == 494:  # nginx's internal "header too large": 400 on the wire
        line = _status_lines[494] = b"HTTP/1.1 400 Bad Request\r\n"
    if line is None:
        text = REASONS.get(status)
        line = (f"HTTP/1.1 {status} {text}\r\n" if text else f"HTTP/1.1 {status} \r\n").encode()
        _status_lines[status] = line
    return line


def server_header(tokens: bool) -> bytes:
    return f"Server: pyginx/{__version__}\r\n".encode() if tokens else b"Server: pyginx\r\n"


def _page(status: int, tokens: bool) -> bytes:
    title = f"{status} {reason(status)}"
    special = {
        494: "<center>Request Header Or Cookie Too Large</center>\r\n",
    }.get(status, "")
    if status == 494:
        title = "400 Request Header Or Cookie Too Large"
        special = ""
    server = f"pyginx/{__version__}" if tokens else "pyginx"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n{special}"
        f"<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


_pages: dict[tuple[int, bool], bytes] = {}


def error_page_body(status: int, tokens: bool = True) -> bytes:
    """nginx's built-in HTML body for an error status (empty for statuses nginx sends bodiless)."""
    if status < 300 or status == 304 or status not in REASONS:
        return b""  # nginx has pages only for the statuses it knows (ngx_http_error_pages)
    key = (status, tokens)
    body = _pages.get(key)
    if body is None:
        body = _pages[key] = _page(status, tokens)
    return body
