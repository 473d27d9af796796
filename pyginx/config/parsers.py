"""Value parsers for the http/server/location directives: each turns one directive into model fields.

A parser takes the directive occurrence (`Val`) and the load state (`Env`) and returns the fields it
sets, e.g. `{"keepalive_timeout": 75.0, "keepalive_header_timeout": None}`; the loader stores them per
level and the merge applies them. Parsers for listen, logs, upstreams and proxy_pass live in their own
modules; the table in directives.py names them all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pyginx.config.model import (
    NEXT_UPSTREAM_FLAGS,
    Expires,
    HeaderValue,
    OpenFileCache,
    ProxyRedirect,
    Return,
    TryFiles,
)
from pyginx.config.units import parse_flag, parse_number, parse_size, parse_time, split_args
from pyginx.config.values import Arg, Env, Val
from pyginx.config.yamlload import YMap, YScalar, YSeq

# field name -> value for one model class; values are heterogeneous by nature (each field its own type)
Fields = dict[str, Any]
Parser = Callable[[Val, Env], Fields]

_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# ---------------------------------------------------------------------------------------------------------
# argument helpers shared by the modules that parse directives


def arg_flag(val: Val, arg: Arg) -> bool:
    value = parse_flag(arg.text)
    if value is None:
        raise val.invalid(arg, ', it must be "on" or "off"')
    return value


def arg_size(val: Val, arg: Arg) -> int:
    value = parse_size(arg.text)
    if value is None:
        raise val.invalid(arg)
    return value


def arg_time(val: Val, arg: Arg, seconds_only: bool = False) -> float:
    value = parse_time(arg.text, seconds_only)
    if value is None:
        raise val.invalid(arg)
    return value


def arg_number(val: Val, arg: Arg, minimum: int = 0) -> int:
    value = parse_number(arg.text)
    if value is None or value < minimum:
        raise val.invalid(arg)
    return value


# ---------------------------------------------------------------------------------------------------------
# factories for the many one-argument directives


def flag(field: str) -> Parser:
    def parse(val: Val, env: Env) -> Fields:
        return {field: arg_flag(val, val.one())}

    return parse


def size(field: str) -> Parser:
    def parse(val: Val, env: Env) -> Fields:
        return {field: arg_size(val, val.one())}

    return parse


def time(field: str, seconds_only: bool = False) -> Parser:
    def parse(val: Val, env: Env) -> Fields:
        return {field: arg_time(val, val.joined(), seconds_only)}

    return parse


def number(field: str, minimum: int = 0) -> Parser:
    def parse(val: Val, env: Env) -> Fields:
        return {field: arg_number(val, val.one(), minimum)}

    return parse


def enum(field: str, choices: tuple[str, ...]) -> Parser:
    """One word out of `choices` (YAML booleans arrive as "on"/"off")."""

    def parse(val: Val, env: Env) -> Fields:
        arg = val.one()
        if arg.text not in choices:
            raise val.invalid(arg, ", it must be " + " or ".join(f'"{c}"' for c in choices))
        return {field: arg.text}

    return parse


def word(field: str) -> Parser:
    def parse(val: Val, env: Env) -> Fields:
        return {field: val.one().text}

    return parse


def words(field: str, lower: bool = False) -> Parser:
    def parse(val: Val, env: Env) -> Fields:
        items = [a.text.lower() if lower else a.text for a in val.args()]
        return {field: tuple(items)}

    return parse


def count_and_size(field: str) -> Parser:
    """`4 8k` (large_client_header_buffers, proxy_buffers): a positive count and a positive size."""

    def parse(val: Val, env: Env) -> Fields:
        args = val.args()
        if len(args) != 2:
            raise val.nargs()
        count = arg_number(val, args[0], minimum=1)
        nbytes = arg_size(val, args[1])
        if nbytes == 0:
            raise val.invalid(args[1])
        return {field: (count, nbytes)}

    return parse


# ---------------------------------------------------------------------------------------------------------
# files


def p_root(val: Val, env: Env) -> Fields:
    path = val.one().text
    # nginx drops a trailing slash from root (not from alias, where it matters for the mapping)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    # root replaces an inherited alias: nginx merges the two as one setting
    return {"root": env.path(path), "alias": None}


def p_alias(val: Val, env: Env) -> Fields:
    return {"alias": env.path(val.one().text)}


def p_index(val: Val, env: Env) -> Fields:
    args = val.args()
    for n, arg in enumerate(args):
        if arg.text.startswith("/") and n != len(args) - 1:
            raise val.error(f'only the last index in "{val.name}" directive should be absolute', arg.line)
    return {"index": tuple(a.text for a in args)}


def p_try_files(val: Val, env: Env) -> Fields:
    args = val.args()
    if len(args) < 2:
        raise val.nargs()
    last = args[-1]
    code: int | None = None
    if last.text.startswith("="):
        code = parse_number(last.text[1:])
        if code is None or code > 999:
            raise val.error(f'invalid code "{last.text}"', last.line)
    return {"try_files": TryFiles(tuple(a.text for a in args[:-1]), last.text, code)}


def p_types(val: Val, env: Env) -> Fields:
    """`types` as nginx writes it, mime -> extensions ({text/html: html htm}); ext -> mime also works."""
    pairs: list[tuple[str, str]] = []
    for key, node in val.mapping():
        sub = Val(val.name, node, key.line, val.file)
        values = [a.text for a in sub.args()]
        if "/" in key.raw:
            pairs.extend((ext.lower().lstrip("."), key.raw) for ext in values)
        elif len(values) == 1 and "/" in values[0]:
            pairs.append((key.raw.lower().lstrip("."), values[0]))
        else:
            raise val.error(
                f'invalid value in "{val.name}" directive: "{key.raw}" is not a MIME type', key.line
            )
    return {"types": tuple(pairs)}


def p_disable_symlinks(val: Val, env: Env) -> Fields:
    args = val.args()
    if args[0].text not in ("off", "on", "if_not_owner") or len(args) > 2:
        raise val.invalid(args[0]) if len(args) <= 2 else val.nargs()
    frm: str | None = None
    if len(args) == 2:
        if not args[1].text.startswith("from=") or args[0].text == "off":
            raise val.invalid_param(args[1])
        frm = args[1].text[5:]
    return {"disable_symlinks": args[0].text, "disable_symlinks_from": frm}


def p_open_file_cache(val: Val, env: Env) -> Fields:
    args = val.args()
    if len(args) == 1 and args[0].text == "off":
        return {"open_file_cache": OpenFileCache(max=0)}
    maximum: int | None = None
    inactive = 60.0
    for arg in args:
        if arg.text.startswith("max="):
            maximum = arg_number(val, Arg(arg.text[4:], arg.line), minimum=1)
        elif arg.text.startswith("inactive="):
            inactive = arg_time(val, Arg(arg.text[9:], arg.line), seconds_only=True)
        else:
            raise val.invalid_param(arg)
    if maximum is None:
        raise val.error(f'"{val.name}" must have the "max" parameter')
    return {"open_file_cache": OpenFileCache(max=maximum, inactive=inactive)}


def p_expires(val: Val, env: Env) -> Fields:
    args = val.args()
    modified = False
    if args[0].text == "modified":
        modified, args = True, args[1:]
    if not args:
        raise val.nargs()
    arg = Arg(" ".join(a.text for a in args), args[0].line)  # `expires: 1h 30m` needs no quotes
    if not modified and arg.text in ("off", "epoch", "max"):
        return {"expires": Expires(kind=arg.text)}  # type: ignore[arg-type]
    text, sign = arg.text, 1.0
    if text.startswith("-"):
        text, sign = text[1:], -1.0
    elif text.startswith("+"):
        text = text[1:]
    seconds = parse_time(text, seconds_only=True)
    if seconds is None:
        raise val.invalid(arg)
    return {"expires": Expires(kind="time", seconds=sign * seconds, modified=modified)}


# ---------------------------------------------------------------------------------------------------------
# responses


def p_return(val: Val, env: Env) -> Fields:
    node = val.node
    if isinstance(node, YSeq):
        args = val.args()
        if len(args) > 2:
            raise val.nargs()
        first, rest = args[0], (args[1].text if len(args) == 2 else None)
    else:
        raw = val.raw_string()
        parts = raw.text.strip().split(None, 1)
        if not parts:
            raise val.nargs()
        first = Arg(parts[0], raw.line)
        rest = parts[1].strip() if len(parts) == 2 else None
        if rest is not None and rest[:1] in ("'", '"'):
            try:
                unquoted = split_args(rest)
            except ValueError as exc:
                raise val.error(str(exc), raw.line) from exc
            if len(unquoted) != 1:
                raise val.nargs()
            rest = unquoted[0]
    if first.text.isascii() and first.text.isdigit():
        code = int(first.text)
        if code > 999:
            raise val.error(f'invalid return code "{first.text}"', first.line)
        return {"return_": Return(code, rest)}
    if first.text.startswith(("http://", "https://", "$scheme")):
        if rest is not None:
            raise val.nargs()
        return {"return_": Return(302, first.text)}
    raise val.error(f'invalid return code "{first.text}"', first.line)


def _error_page_line(val: Val, codes: list[Arg], target: list[Arg]) -> list[tuple[int, str, int | None]]:
    """`CODES... [=[response]] URI` -> (code, uri, override) for each code."""
    override: int | None = None
    if len(target) == 2:
        eq, uri = target
        if not eq.text.startswith("="):
            raise val.invalid(eq)
        if eq.text == "=":
            override = 0  # `=` alone: answer with the status of the error page's own response
        else:
            override = parse_number(eq.text[1:])
            if override is None or override > 999:
                raise val.invalid(eq)
    elif len(target) == 1:
        uri = target[0]
    else:
        raise val.nargs()
    if uri.text.startswith("="):
        raise val.nargs()
    if override is None and not uri.text.startswith(("/", "@", "$")):
        override = 302  # a full URL: nginx redirects to it with 302 unless told another code
    out: list[tuple[int, str, int | None]] = []
    if not codes:
        raise val.nargs()
    for arg in codes:
        code = parse_number(arg.text)
        if code is None:
            raise val.invalid(arg)
        if not 300 <= code <= 599:
            raise val.error(f'value "{arg.text}" must be between 300 and 599', arg.line)
        out.append((code, uri.text, override))
    return out


def p_error_page(val: Val, env: Env) -> Fields:
    """{404: /404.html, "502 503": /50x.html, 404: "=200 /x"}, or nginx's lines as strings / a list."""
    pages: list[tuple[int, str, int | None]] = []
    node = val.node
    if isinstance(node, YMap):
        for key, target_node in val.mapping():
            codes = [Arg(c, key.line) for c in key.raw.split()]
            target = Val(val.name, target_node, key.line, val.file).args()
            pages.extend(_error_page_line(val, codes, target))
    else:
        for entry in val.entries():
            args = entry.args() if isinstance(entry.node, YScalar) else []
            if len(args) < 2:
                raise val.nargs()
            split = len(args) - 2 if args[-2].text.startswith("=") else len(args) - 1
            pages.extend(_error_page_line(val, args[:split], args[split:]))
    return {"error_page": tuple(pages)}


def _header_pairs(val: Val) -> list[tuple[str, str, int]]:
    """(name, value, line) from a mapping, a list of mappings, or a list of "Name value" strings."""
    pairs: list[tuple[str, str, int]] = []
    nodes = val.node.items if isinstance(val.node, YSeq) else [val.node]
    for node in nodes:
        if isinstance(node, YMap):
            for key, vnode in Val(val.name, node, node.line, val.file).mapping():
                if isinstance(vnode, YScalar):
                    pairs.append((key.raw, vnode.text, key.line))
                else:
                    raise val.error(
                        f'invalid value in "{val.name}" directive: header "{key.raw}" needs a plain value',
                        key.line,
                    )
        elif isinstance(node, YScalar) and isinstance(node.value, str):
            parts = node.raw.strip().split(None, 1)
            if len(parts) != 2:
                raise val.nargs()
            value = parts[1]
            if value[:1] in ("'", '"'):
                try:
                    value = " ".join(split_args(value))
                except ValueError as exc:
                    raise val.error(str(exc), node.line) from exc
            pairs.append((parts[0], value, node.line))
        else:
            raise val.nargs()
    for name, _, line in pairs:
        if not _HEADER_NAME_RE.fullmatch(name):
            raise val.error(f'invalid header name "{name}" in "{val.name}" directive', line)
    return pairs


def p_add_header(val: Val, env: Env) -> Fields:
    headers: list[HeaderValue] = []
    for name, value, _ in _header_pairs(val):
        always = False
        parts = value.rsplit(None, 1)
        if len(parts) == 2 and parts[1] == "always":
            value, always = parts[0], True
        headers.append(HeaderValue(name, value, always))
    return {"add_header": tuple(headers)}


def p_proxy_set_header(val: Val, env: Env) -> Fields:
    return {"proxy_set_header": tuple(HeaderValue(n, v) for n, v, _ in _header_pairs(val))}


# ---------------------------------------------------------------------------------------------------------
# connections


def p_keepalive_timeout(val: Val, env: Env) -> Fields:
    args = val.args()
    if len(args) > 2:
        raise val.nargs()
    header = arg_time(val, args[1], seconds_only=True) if len(args) == 2 else None
    return {"keepalive_timeout": arg_time(val, args[0]), "keepalive_header_timeout": header}


def p_server_tokens(val: Val, env: Env) -> Fields:
    arg = val.one()
    if arg.text == "build":  # nginx prints its build name; pyginx has only the version
        return {"server_tokens": True}
    return {"server_tokens": arg_flag(val, arg)}


def p_max_ranges(val: Val, env: Env) -> Fields:
    return {"max_ranges": arg_number(val, val.one())}


# ---------------------------------------------------------------------------------------------------------
# proxy


def p_proxy_next_upstream(val: Val, env: Env) -> Fields:
    flags: list[str] = []
    for arg in val.args():
        if arg.text not in NEXT_UPSTREAM_FLAGS:
            raise val.invalid(arg)
        flags.append(arg.text)
    if "off" in flags:
        flags = ["off"]
    return {"proxy_next_upstream": tuple(flags)}


def p_proxy_redirect(val: Val, env: Env) -> Fields:
    default = False
    off = False
    rules: list[tuple[str, str]] = []
    for entry in val.entries():
        args = entry.args()
        if len(args) == 1 and args[0].text in ("default", "off"):
            if args[0].text == "off":
                off = True
            else:
                default = True
        elif len(args) == 2:
            rules.append((args[0].text, args[1].text))
        else:
            raise val.nargs()
    if off:
        if default or rules:
            raise val.error(f'invalid parameter "off" in "{val.name}" directive: "off" stands alone')
        return {"proxy_redirect": ProxyRedirect(default=False, off=True)}
    return {"proxy_redirect": ProxyRedirect(default=default, rules=tuple(rules))}


def p_proxy_http_version(val: Val, env: Env) -> Fields:
    arg = val.one()
    if arg.text not in ("1.0", "1.1"):
        raise val.invalid(arg, ', it must be "1.0" or "1.1"')
    return {"proxy_http_version": arg.text}


def p_proxy_set_body(val: Val, env: Env) -> Fields:
    return {"proxy_set_body": val.raw_string().text}
