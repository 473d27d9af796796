"""Content types: nginx's conf/mime.types built in, `types` additions, `default_type`.

nginx picks the type from the request URI's "extension" (ngx_http_set_exten: the text after the last
dot of the last path segment, unless that dot starts the segment), lower-cased, looked up in the
`types` hash, else `default_type`. The table below is nginx's shipped conf/mime.types (1.31); CONFIG.md
makes `types` *add* to it rather than replace it as nginx's directive does.
"""

from __future__ import annotations

from functools import lru_cache

from pyginx.config.model import HttpSettings

# (type, extensions) in nginx's order. Where an extension appears twice the later line wins, as in
# nginx's hash built from the file (it only warns about duplicates); none does in the shipped table.
_NGINX_MIME_TYPES: tuple[tuple[str, str], ...] = (
    ("text/html", "html htm shtml"),
    ("text/css", "css"),
    ("text/xml", "xml"),
    ("image/gif", "gif"),
    ("image/jpeg", "jpeg jpg"),
    ("application/javascript", "js"),
    ("application/atom+xml", "atom"),
    ("application/rss+xml", "rss"),
    ("text/mathml", "mml"),
    ("text/plain", "txt"),
    ("text/vnd.sun.j2me.app-descriptor", "jad"),
    ("text/vnd.wap.wml", "wml"),
    ("text/x-component", "htc"),
    ("image/avif", "avif"),
    ("image/png", "png"),
    ("image/svg+xml", "svg svgz"),
    ("image/tiff", "tif tiff"),
    ("image/vnd.wap.wbmp", "wbmp"),
    ("image/webp", "webp"),
    ("image/x-icon", "ico"),
    ("image/x-jng", "jng"),
    ("image/x-ms-bmp", "bmp"),
    ("font/woff", "woff"),
    ("font/woff2", "woff2"),
    ("application/java-archive", "jar war ear"),
    ("application/json", "json"),
    ("application/mac-binhex40", "hqx"),
    ("application/msword", "doc"),
    ("application/pdf", "pdf"),
    ("application/postscript", "ps eps ai"),
    ("application/rtf", "rtf"),
    ("application/vnd.apple.mpegurl", "m3u8"),
    ("application/vnd.google-earth.kml+xml", "kml"),
    ("application/vnd.google-earth.kmz", "kmz"),
    ("application/vnd.ms-excel", "xls"),
    ("application/vnd.ms-fontobject", "eot"),
    ("application/vnd.ms-powerpoint", "ppt"),
    ("application/vnd.oasis.opendocument.graphics", "odg"),
    ("application/vnd.oasis.opendocument.presentation", "odp"),
    ("application/vnd.oasis.opendocument.spreadsheet", "ods"),
    ("application/vnd.oasis.opendocument.text", "odt"),
    ("application/vnd.openxmlformats-officedocument.presentationml.presentation", "pptx"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
    ("application/vnd.wap.wmlc", "wmlc"),
    ("application/wasm", "wasm"),
    ("application/x-7z-compressed", "7z"),
    ("application/x-cocoa", "cco"),
    ("application/x-java-archive-diff", "jardiff"),
    ("application/x-java-jnlp-file", "jnlp"),
    ("application/x-makeself", "run"),
    ("application/x-perl", "pl pm"),
    ("application/x-pilot", "prc pdb"),
    ("application/x-rar-compressed", "rar"),
    ("application/x-redhat-package-manager", "rpm"),
    ("application/x-sea", "sea"),
    ("application/x-shockwave-flash", "swf"),
    ("application/x-stuffit", "sit"),
    ("application/x-tcl", "tcl tk"),
    ("application/x-x509-ca-cert", "der pem crt"),
    ("application/x-xpinstall", "xpi"),
    ("application/xhtml+xml", "xhtml"),
    ("application/xspf+xml", "xspf"),
    ("application/zip", "zip"),
    ("application/octet-stream", "bin exe dll"),
    ("application/octet-stream", "deb"),
    ("application/octet-stream", "dmg"),
    ("application/octet-stream", "iso img"),
    ("application/octet-stream", "msi msp msm"),
    ("audio/midi", "mid midi kar"),
    ("audio/mpeg", "mp3"),
    ("audio/ogg", "ogg"),
    ("audio/x-m4a", "m4a"),
    ("audio/x-realaudio", "ra"),
    ("video/3gpp", "3gpp 3gp"),
    ("video/mp2t", "ts"),
    ("video/mp4", "mp4"),
    ("video/mpeg", "mpeg mpg"),
    ("video/quicktime", "mov"),
    ("video/webm", "webm"),
    ("video/x-flv", "flv"),
    ("video/x-m4v", "m4v"),
    ("video/x-mng", "mng"),
    ("video/x-ms-asf", "asx asf"),
    ("video/x-ms-wmv", "wmv"),
    ("video/x-msvideo", "avi"),
)

MIME_TYPES: dict[str, str] = {ext: mime for mime, exts in _NGINX_MIME_TYPES for ext in exts.split()}


def exten(uri: str) -> str:
    """nginx's ngx_http_set_exten: "/a/b.tar.GZ" -> "GZ", "/.htaccess" -> "", "/a.b/c" -> "".

    The scan stops at index 2 (nginx's `i > 1`), so a dot can never be the URI's second character.
    """
    i = len(uri) - 1
    while i > 1:
        ch = uri[i]
        if ch == "." and uri[i - 1] != "/":
            return uri[i + 1 :]
        if ch == "/":
            return ""
        i -= 1
    return ""


@lru_cache(maxsize=256)
def _table(extra_types: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The built-in table with a location's `types` pairs on top (cached per distinct `types`)."""
    if not extra_types:
        return MIME_TYPES
    table = dict(MIME_TYPES)
    for ext, mime in extra_types:
        table[ext.lower()] = mime
    return table


def lookup(
    ext: str,
    extra_types: tuple[tuple[str, str], ...] = (),
    default_type: str = "text/plain",
) -> str:
    """Content type for an extension (case-insensitive); `default_type` when unknown or empty."""
    if not ext:
        return default_type
    return _table(extra_types).get(ext.lower(), default_type)


def content_type_for(uri: str, settings: HttpSettings) -> str:
    """Content type of the file a URI names under a location's `types` and `default_type`, as
    ngx_http_set_content_type chooses it (also used by the core for `return` texts)."""
    return lookup(exten(uri), settings.types, settings.default_type)
