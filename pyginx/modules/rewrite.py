"""The rewrite module (ngx_http_rewrite_module): `rewrite`, `return`, `set`, `if`, `break`,
`rewrite_log`, run in the server-rewrite and rewrite phases in the order they are written.

A level's directives compile into a script: a tuple of operations, run top to bottom. An `if` whose
condition holds switches the request to the `if` block's settings (inherited from the enclosing level,
as nginx's `if` is a nameless location) and runs the block's own operations inline, then the script
goes on after the block. `rewrite ... last` (or a changed URI at the end of the script) searches the
location again; `break` stops the script and keeps the current location; a redirect or `return`
answers the request. Scripts are not inherited: each server and location runs its own.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pyginx.config.model import HttpSettings, Return
from pyginx.config.parsers import Fields, p_return
from pyginx.config.units import split_args
from pyginx.config.values import Arg, Context, Env, Val
from pyginx.config.yamlload import YMap, YScalar
from pyginx.errors import ConfigError
from pyginx.module import DECLINED, DONE, Module, ModuleDirective, Phase, PhaseHandler

if TYPE_CHECKING:
    from pyginx.http.request import Request

REWRITE_CONTEXTS: frozenset[Context] = frozenset({"server", "location", "if", "sif"})
_REDIRECT_CODES = (301, 302, 303, 307, 308)
_FLAGS = ("last", "break", "redirect", "permanent")

# ---------------------------------------------------------------------------------------------------
# the script's operations (configuration data)


@dataclass(frozen=True)
class RewriteOp:
    regex: re.Pattern[str]
    replacement: str  # template; "?" at its end already removed (add_args False then)
    flag: str  # "" | last | break | redirect | permanent
    redirect: int  # 0, or the status of a redirect (301/302)
    add_args: bool  # append the request's arguments
    has_args: bool  # the replacement holds "?"


@dataclass(frozen=True)
class ReturnOp:
    ret: Return


@dataclass(frozen=True)
class SetOp:
    name: str
    value: str  # template


@dataclass(frozen=True)
class BreakOp:
    pass


@dataclass(frozen=True)
class Condition:
    """An `if` condition. kind: var | eq | ne | regex | file."""

    kind: str
    left: str  # a template (the variable or, for file tests, the path)
    right: str = ""
    regex: re.Pattern[str] | None = None
    negate: bool = False
    test: str = ""  # f d e x for file tests
    text: str = ""  # as written, for messages


@dataclass(frozen=True)
class IfOp:
    cond: Condition
    ops: tuple[Any, ...]
    block: Any = None  # the block as read (loader.Block) until resolve() merges it
    settings: HttpSettings | None = (
        None  # the block's merged settings (None: no directive besides the script)
    )


Op = RewriteOp | ReturnOp | SetOp | BreakOp | IfOp


@dataclass(frozen=True)
class RewriteConf:
    ops: tuple[Op, ...] = ()
    rewrite_log: bool = False


# ---------------------------------------------------------------------------------------------------
# parsing


def _p_rewrite(val: Val, env: Env) -> Fields:
    ops: list[Op] = []
    for entry in val.entries():
        arg_line = entry.line
        try:
            args = split_args(entry.raw_string().text) if isinstance(entry.node, YScalar) else None
        except ValueError as exc:
            raise entry.error(str(exc)) from exc
        if args is None:
            args = [a.text for a in entry.args()]
        if len(args) not in (2, 3):
            raise entry.nargs()
        pattern, replacement = args[0], args[1]
        flag = args[2] if len(args) == 3 else ""
        if flag and flag not in _FLAGS:
            raise entry.error(f'invalid parameter "{flag}"', arg_line)
        try:
            regex = re.compile(pcre_to_python(pattern))
        except re.error as exc:
            raise entry.error(f'pcre2_compile() failed: {exc} in "{pattern}"', arg_line) from exc
        env.define_regex_captures(pattern)
        env.use_vars(replacement, arg_line, entry.file)
        redirect = 0
        if replacement.startswith(("http://", "https://", "$scheme")):
            redirect = 302
        if flag == "redirect":
            redirect = 302
        elif flag == "permanent":
            redirect = 301
        add_args = True
        if replacement.endswith("?"):
            replacement = replacement[:-1]
            add_args = False
        ops.append(RewriteOp(regex, replacement, flag, redirect, add_args, "?" in replacement))
    return {"ops": tuple(ops)}


def _p_return(val: Val, env: Env) -> Fields:
    got = p_return(val, env)
    ret: Return = got["return_"]
    if ret.text is not None:
        env.use_vars(ret.text, val.line, val.file)
        if not _quoted_raw(val):
            ret = replace(ret, text=_unescape(ret.text))
    return {"ops": (ReturnOp(ret),)}


def _quoted_raw(val: Val) -> bool:
    node = val.node
    if not isinstance(node, YScalar):
        return True
    parts = node.text.strip().split(None, 1)
    return len(parts) == 2 and parts[1][:1] in ("'", '"')


def _unescape(text: str) -> str:
    """nginx's configuration reader turns \\t \\r \\n into the characters in unquoted tokens too."""
    if "\\" not in text:
        return text
    return text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")


def _p_set(val: Val, env: Env) -> Fields:
    ops: list[Op] = []
    pairs: list[tuple[str, str, int]] = []
    node = val.node
    if isinstance(node, YMap):
        for k, v in val.mapping():
            text = v.text if isinstance(v, YScalar) and v.value is not None else ""
            pairs.append((k.raw, text, k.line))
    else:
        for entry in val.entries():
            args = [a.text for a in entry.args()]
            if len(args) != 2:
                raise entry.nargs()
            pairs.append((args[0], args[1], entry.line))
    for name, value, line in pairs:
        if not name.startswith("$") or len(name) < 2:
            raise ConfigError(f'invalid variable name "{name}"', val.file, line)
        env.defined_vars.add(name[1:].lower())
        env.use_vars(value, line, val.file)
        ops.append(SetOp(name[1:].lower(), value))
    return {"ops": tuple(ops)}


def _p_break(val: Val, env: Env) -> Fields:
    node = val.node
    if isinstance(node, YScalar) and node.value not in (None, True, "", "on"):
        raise val.nargs()
    return {"ops": (BreakOp(),)}


def _p_rewrite_log(val: Val, env: Env) -> Fields:
    arg = val.one()
    text = arg.text.lower()
    if text in ("on", "true"):
        return {"rewrite_log": True}
    if text in ("off", "false"):
        return {"rewrite_log": False}
    raise val.error(f'invalid value "{arg.text}" in "rewrite_log" directive, it must be "on" or "off"')


_IF_RE = re.compile(r"^if\s*\((.*)\)\s*$", re.S)
_FILE_TESTS = {"-f": "f", "-d": "d", "-e": "e", "-x": "x"}


def parse_condition(text: str, val: Val, env: Env) -> Condition:
    """nginx's ngx_http_rewrite_if_condition, from the text between the parentheses."""
    try:
        args = split_args(text)
    except ValueError as exc:
        raise val.error(str(exc)) from exc
    if not args:
        raise val.error(f'invalid condition "{text}"')
    first = args[0]
    neg = first.startswith("!")
    test = _FILE_TESTS.get(first[1:] if neg else first)
    if test is not None:
        if len(args) != 2:
            raise val.error(f'invalid condition "{text}"')
        env.use_vars(args[1], val.line, val.file)
        return Condition("file", args[1], negate=neg, test=test, text=text)
    if not first.startswith("$") or len(first) < 2:
        raise val.error(f'invalid condition "{first}"')
    env.use_vars(first, val.line, val.file)
    if len(args) == 1:
        return Condition("var", first, text=text)
    if len(args) != 3:
        raise val.error(f'invalid condition "{text}"')
    op, right = args[1], args[2]
    if op in ("=", "!="):
        env.use_vars(right, val.line, val.file)
        return Condition("eq" if op == "=" else "ne", first, right, text=text)
    if op in ("~", "~*", "!~", "!~*"):
        flags = re.IGNORECASE if op.endswith("*") else 0
        try:
            regex = re.compile(pcre_to_python(right), flags)
        except re.error as exc:
            raise val.error(f'pcre2_compile() failed: {exc} in "{right}"') from exc
        env.define_regex_captures(right)
        return Condition("regex", first, right, regex=regex, negate=op.startswith("!"), text=text)
    raise val.error(f'unexpected "{op}" in condition')


def _p_if(val: Val, env: Env) -> Fields:
    from pyginx.config import loader  # the loader reads the block; it imports this module's table

    m = _IF_RE.match(val.key.strip())
    if m is None:
        raise val.error('invalid condition "' + val.key + '"')
    cond = parse_condition(m.group(1).strip(), val, env)
    node = val.node
    if isinstance(node, YScalar) and node.value is None:
        node = YMap([], node.line)
    if not isinstance(node, YMap):
        raise val.error('"if" must hold a mapping of directives')
    context: Context = "sif" if env.location is None else "if"
    block = loader.read_block(node, context, env)
    fields = block.modules.get(MODULE.name)
    ops = tuple(fields.get("ops", ())) if fields else ()
    return {"ops": (IfOp(cond, ops, block),)}


def pcre_to_python(pattern: str) -> str:
    """PCRE's named groups `(?<name>...)` are Python's `(?P<name>...)`."""
    return re.sub(r"\(\?<(?![=!])(\w+)>", r"(?P<\1>", pattern)


def _resolve(settings: HttpSettings, env: Env) -> HttpSettings:
    """Merge each `if` block with the level it stands in (its settings inherit from there)."""
    conf: RewriteConf = settings.conf(MODULE.name)
    if not any(isinstance(op, IfOp) and op.block is not None for op in conf.ops):
        return settings
    return replace(
        settings,
        modules={**settings.modules, MODULE.name: replace(conf, ops=_resolve_ops(conf.ops, settings, env))},
    )


def _resolve_ops(ops: tuple[Op, ...], around: HttpSettings, env: Env) -> tuple[Op, ...]:
    from pyginx.config import merge

    out: list[Op] = []
    for op in ops:
        if isinstance(op, IfOp) and op.block is not None:
            block = op.block
            own_mods = {k: v for k, v in block.modules.items() if k != MODULE.name}
            inner_fields = block.modules.get(MODULE.name, {})
            settings = merge.apply_if(around, block.of("settings"), own_mods)
            # the block's own script; rewrite_log and such inherit
            parent_conf: RewriteConf = around.conf(MODULE.name)
            inner_conf = replace(parent_conf, ops=(), **{k: v for k, v in inner_fields.items() if k != "ops"})
            settings = replace(settings, modules={**settings.modules, MODULE.name: inner_conf})
            inner_ops = _resolve_ops(op.ops, settings, env)
            settings = replace(
                settings, modules={**settings.modules, MODULE.name: replace(inner_conf, ops=inner_ops)}
            )
            out.append(IfOp(op.cond, inner_ops, None, settings))
        else:
            out.append(op)
    return tuple(out)


# ---------------------------------------------------------------------------------------------------
# running a script


# How a script ended: went on (None), answered (True), "break", or asked for a new location search.
_SEARCH = "search"


def _plan(settings: HttpSettings, level: str) -> list[tuple[Phase, PhaseHandler]]:
    conf: RewriteConf = settings.conf(MODULE.name)
    if not conf.ops:
        return []
    script = _compile(conf.ops)
    log = conf.rewrite_log

    if level == "server":

        def server_rewrite(req: Request) -> bool | None:
            outcome = _run(req, script, log)
            return DONE if outcome is True else DECLINED  # a changed URI is searched next anyway

        return [(Phase.SERVER_REWRITE, server_rewrite)]

    def rewrite(req: Request) -> bool | None:
        before = req.uri
        outcome = _run(req, script, log)
        if outcome is True:
            return DONE
        if outcome == _SEARCH or (outcome is None and req.uri != before):
            req.conn.ctx.search_again(req)
            return DONE
        return DECLINED

    return [(Phase.REWRITE, rewrite)]


@dataclass(frozen=True)
class _Compiled:
    kind: str
    op: Any
    getter: Any = None  # a compiled template
    inner: tuple[Any, ...] = ()


def _compile(ops: tuple[Op, ...]) -> tuple[_Compiled, ...]:
    from pyginx.http.variables import compile_template

    out: list[_Compiled] = []
    for op in ops:
        if isinstance(op, RewriteOp):
            if op.has_args and not op.redirect:
                # the arguments start at the "?" written in the replacement, not at one a capture
                # or a variable brings (nginx compiles the two parts apart: sc.compile_args)
                uri_text, _, args_text = op.replacement.partition("?")
                parts = (compile_replacement(uri_text, False), compile_replacement(args_text, True))
                out.append(_Compiled("rewrite", op, parts))
            else:
                out.append(_Compiled("rewrite", op, compile_replacement(op.replacement, bool(op.redirect))))
        elif isinstance(op, ReturnOp):
            text = op.ret.text
            out.append(_Compiled("return", op, compile_template(text) if text else None))
        elif isinstance(op, SetOp):
            out.append(_Compiled("set", op, compile_template(op.value)))
        elif isinstance(op, BreakOp):
            out.append(_Compiled("break", op))
        elif isinstance(op, IfOp):
            cond = op.cond
            out.append(_Compiled("if", op, compile_template(cond.left), _compile(op.ops)))
            if cond.kind in ("eq", "ne"):
                out[-1] = replace(out[-1], op=(op, compile_template(cond.right)))
    return tuple(out)


_CAPTURE = re.compile(r"\$([1-9])")
# NGX_ESCAPE_ARGS: the bytes nginx escapes in a capture copied into a redirect or into arguments
_ARGS_UNSAFE = frozenset(range(0x21)) | frozenset(b'"#%&+;<>?\\^`{|}') | frozenset(range(0x7F, 0x100))


def escape_args(value: str) -> str:
    raw = value.encode("utf-8", "surrogateescape")
    if not any(b in _ARGS_UNSAFE for b in raw):
        return value
    return "".join(f"%{b:02X}" if b in _ARGS_UNSAFE else chr(b) for b in raw)


def _quoted_uri(req: Request) -> bool:
    """nginx's r->quoted_uri || r->plus_in_uri: the request's path held a %XX escape or a "+"."""
    path = req.request_uri.partition("?")[0]
    return "%" in path or "+" in path


def compile_replacement(text: str, redirect: bool) -> Any:
    """A rewrite's replacement. Its captures $1..$9 are copied escaped (NGX_ESCAPE_ARGS) when the
    rewrite redirects or the capture stands after the "?", and the request's URI was escaped itself
    (ngx_http_script_copy_capture_code): the capture holds decoded bytes that must not change
    meaning in a Location or an argument."""
    from pyginx.http.variables import compile_template

    if not _CAPTURE.search(text):
        return compile_template(text)
    parts: list[Any] = []
    pos = 0
    in_args = False
    for m in _CAPTURE.finditer(text):
        literal = text[pos : m.start()]
        if literal:
            parts.append(compile_template(literal))
            in_args = in_args or "?" in literal
        parts.append(_capture(int(m.group(1)), redirect or in_args))
        pos = m.end()
    if pos < len(text):
        parts.append(compile_template(text[pos:]))

    def render(req: Request) -> str:
        return "".join(p(req) for p in parts)

    return render


def _capture(n: int, escape: bool) -> Any:
    def get(req: Request) -> str:
        groups = req.captures
        value = (groups[n] or "") if groups is not None and n < len(groups) else ""
        return escape_args(value) if escape and value and _quoted_uri(req) else value

    return get


def _run(req: Request, script: tuple[_Compiled, ...], log: bool) -> Any:
    """Run the operations; None = went to the end, True = answered, "break", or SEARCH."""
    for step in script:
        kind = step.kind
        if kind == "set":
            req.vars[step.op.name] = step.getter(req)
        elif kind == "rewrite":
            outcome = _rewrite(req, step.op, step.getter, log)
            if outcome is not None:
                return outcome
        elif kind == "if":
            op, right = step.op if isinstance(step.op, tuple) else (step.op, None)
            if _test(req, op.cond, step.getter, right, log):
                if op.settings is not None:
                    req.settings = op.settings
                outcome = _run(req, step.inner, log)
                if outcome is not None:
                    return outcome
        elif kind == "return":
            _return(req, step.op.ret, step.getter)
            return True
        elif kind == "break":
            return "break"
    return None


def _rewrite(req: Request, op: RewriteOp, replacement: Any, log: bool) -> Any:
    m = op.regex.search(req.uri)
    if m is None:
        if log:
            req.log_error("notice", f'"{op.regex.pattern}" does not match "{req.uri}"')
        return None
    if log:
        req.log_error("notice", f'"{op.regex.pattern}" matches "{req.uri}"')
    req.captures = (m.group(0), *m.groups())
    for name, value in m.groupdict().items():
        req.vars[name.lower()] = value or ""
    if isinstance(replacement, tuple):
        uri_part, args_part = replacement
        result = ""
        uri = uri_part(req)
        args = args_part(req)
    else:
        result = replacement(req)
    if op.redirect:
        location = result
        if op.add_args and req.args:
            location += ("&" if op.has_args else "?") + req.args
        if log:
            req.log_error("notice", f'rewritten redirect: "{location}"')
        req.redirect(op.redirect, location)
        return True
    if op.has_args:
        if op.add_args and req.args:
            args = f"{args}&{req.args}"
        req.args = args
    else:
        uri = result
        if not op.add_args:
            req.args = ""
    if log:
        req.log_error("notice", f'rewritten data: "{uri}", args: "{req.args}"')
    req.uri = uri
    req.internal = True
    if op.flag == "last":
        return _SEARCH
    if op.flag == "break":
        return "break"
    return None


def _test(req: Request, cond: Condition, left: Any, right: Any, log: bool) -> bool:
    value: str = left(req)
    kind = cond.kind
    if kind == "var":
        return value not in ("", "0")
    if kind == "eq":
        return bool(value == right(req))
    if kind == "ne":
        return bool(value != right(req))
    if kind == "regex":
        assert cond.regex is not None
        m = cond.regex.search(value)
        if m is not None:
            req.captures = (m.group(0), *m.groups())
            for name, got in m.groupdict().items():
                req.vars[name.lower()] = got or ""
        return (m is None) if cond.negate else (m is not None)
    # file tests: -f -d -e -x
    try:
        st = os.stat(value)
    except OSError:
        found = False
    else:
        mode = st.st_mode
        if cond.test == "f":
            found = stat.S_ISREG(mode)
        elif cond.test == "d":
            found = stat.S_ISDIR(mode)
        elif cond.test == "x":
            found = os.access(value, os.X_OK) and not stat.S_ISDIR(mode)
        else:
            found = True
    return not found if cond.negate else found


def _return(req: Request, ret: Return, text_getter: Any) -> None:
    """nginx's ngx_http_script_return_code: a code >= 400 without text is an error page (or a close
    for 444/408/499); anything else is ngx_http_send_response, which discards the body first (so
    `100 Continue` goes out), then sends a redirect with Location (even empty, for `return 302;`) or
    the text with the type by extension (also for `return 200;`)."""
    code = ret.code
    if ret.text is None and code >= 400:
        req.send_error(code)
        return
    if req.expect_continue:
        req.send_continue()
    text = text_getter(req) if text_getter is not None else ""
    if code in _REDIRECT_CODES:
        req.redirect(code, text)
        return
    from pyginx.handlers import mime

    headers = [("Content-Type", mime.content_type_for(req.uri, req.settings))]
    if code == 304:
        headers.append(("Content-Length", "0"))  # the header filter keeps it for a 304 it did not make
    req.respond(code, headers, text.encode("utf-8", "surrogateescape"))


MODULE = Module(
    name="rewrite",
    conf=RewriteConf,
    own=("ops",),
    directives=(
        ModuleDirective("rewrite", REWRITE_CONTEXTS, _p_rewrite, ordered=True),
        ModuleDirective("return", REWRITE_CONTEXTS, _p_return, ordered=True),
        ModuleDirective("set", REWRITE_CONTEXTS, _p_set, ordered=True),
        ModuleDirective("break", REWRITE_CONTEXTS, _p_break, ordered=True),
        ModuleDirective("if", frozenset({"server", "location"}), _p_if, ordered=True),  # not nested
        ModuleDirective("rewrite_log", REWRITE_CONTEXTS | {"http"}, _p_rewrite_log),
    ),
    plan=_plan,
    resolve=_resolve,
)

__all__ = ["MODULE", "Arg"]


def returns_of(settings: HttpSettings) -> tuple[Return, ...]:
    """The `return`s a level's own script holds at its top level (for tests and -T readers)."""
    conf: RewriteConf = settings.conf(MODULE.name)
    return tuple(op.ret for op in conf.ops if isinstance(op, ReturnOp))


def with_script(settings: HttpSettings, *ops: Op) -> HttpSettings:
    """`settings` with its own script replaced (used to build configurations in code)."""
    from pyginx.config.merge import default_modules

    mods = settings.modules or default_modules()
    return replace(
        settings,
        modules={
            **mods,
            MODULE.name: replace(settings.conf(MODULE.name) if settings.modules else RewriteConf(), ops=ops),
        },
    )
