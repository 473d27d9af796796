"""Parsers of the ssl_*, proxy_ssl_* and http2* directives (TLS and HTTP/2, issue 13).

Pure parsing: files are only named here (absolute paths with the line that named them); reading the
certificates and keys is pyginx/tls/contexts.py's job, at `-t`, start and reload, where their errors
are reported with the same file and line.
"""

from __future__ import annotations

from pyginx.config.model import SourcePos, TlsFile
from pyginx.config.parsers import Fields, Parser, arg_number, arg_size
from pyginx.config.values import Arg, Env, Val

PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def _file(val: Val, env: Env, text: str, line: int) -> TlsFile:
    return TlsFile(env.path(text), SourcePos(val.file, line))


def files(field: str) -> Parser:
    """ssl_certificate / ssl_certificate_key: one path, or a YAML list (an RSA and an ECDSA pair)."""

    def parse(val: Val, env: Env) -> Fields:
        return {field: tuple(_file(val, env, a.text, a.line) for a in val.args())}

    return parse


def one_file(field: str) -> Parser:
    def parse(val: Val, env: Env) -> Fields:
        arg = val.one()
        return {field: _file(val, env, arg.text, arg.line)}

    return parse


def protocols(field: str) -> Parser:
    def parse(val: Val, env: Env) -> Fields:
        out: list[str] = []
        for arg in val.args():
            if arg.text not in PROTOCOLS:
                raise val.invalid(arg)
            out.append(arg.text)
        return {field: tuple(out)}

    return parse


def p_ssl_session_cache(val: Val, env: Env) -> Fields:
    """`off | none | [builtin[:size]] [shared:name:size]`: checked as nginx checks it. pyginx keeps
    OpenSSL's cache in each worker; resumption across workers comes from session tickets."""
    args = val.args()
    for arg in args:
        text = arg.text
        if text in ("off", "none"):
            if len(args) > 1:
                raise val.invalid(arg)
            continue
        if text == "builtin" or text.startswith("builtin:"):
            if text != "builtin":
                arg_number(val, Arg(text[8:], arg.line), minimum=1)
            continue
        if text.startswith("shared:"):
            name, sep, size = text[7:].partition(":")
            if not name or not sep or arg_size(val, Arg(size, arg.line)) < 8192:
                raise val.invalid(arg)
            continue
        raise val.invalid(arg)
    return {"ssl_session_cache": " ".join(a.text for a in args)}


def p_ssl_ecdh_curve(val: Val, env: Env) -> Fields:
    text = val.one().text
    return {"ssl_ecdh_curve": text}


def p_ssl_verify_client(val: Val, env: Env) -> Fields:
    arg = val.one()
    if arg.text not in ("on", "off", "optional", "optional_no_ca"):
        raise val.invalid(arg, ', it must be "on", "off", "optional" or "optional_no_ca"')
    return {"ssl_verify_client": arg.text}


def p_ssl_ciphers(field: str) -> Parser:
    def parse(val: Val, env: Env) -> Fields:
        return {field: ":".join(a.text for a in val.args())}

    return parse


def p_http2_max_concurrent_streams(val: Val, env: Env) -> Fields:
    return {"http2_max_concurrent_streams": arg_number(val, val.one(), minimum=1)}


def p_http2_recv_buffer_size(val: Val, env: Env) -> Fields:
    arg = val.one()
    size = arg_size(val, arg)
    if size <= 32:  # nginx: more than twice its 16-byte state buffer
        raise val.error(f'"{val.name}" value is too small', arg.line)
    return {"http2_recv_buffer_size": size}
