"""log_format, access_log and error_log: nginx's logging directives.

access_log names a format by name, so the loader reads `log_format` (http level) before any
`access_log`; `Env.log_formats` holds the formats known so far, with `combined` always defined.
"""

from __future__ import annotations

from pyginx.config.model import AccessLog, ErrorLog
from pyginx.config.parsers import Fields, arg_size, arg_time
from pyginx.config.values import Arg, Env, Val
from pyginx.config.yamlload import YScalar, YSeq

COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
ESCAPES = ("default", "json", "none")  # log_format ... escape=
LOG_LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")


def p_log_format(val: Val, env: Env) -> Fields:
    """{name: "template"} or {name: [part, part]}: parts are joined as nginx joins its arguments."""
    formats: dict[str, str] = {}
    for key, node in val.mapping():
        name = key.raw
        if name in env.log_formats or name in formats:
            raise val.error(f'duplicate "log_format" name "{name}"', key.line)
        escape = ""  # nginx's optional first argument `escape=default|json|none`
        if isinstance(node, YScalar) and isinstance(node.value, str) and node.value:
            template = node.raw
            if template.startswith("escape="):
                words = template.split(None, 1)
                escape, template = words[0], words[1] if len(words) > 1 else ""
        elif isinstance(node, YSeq) and node.items and all(isinstance(i, YScalar) for i in node.items):
            parts = [i.text for i in node.items if isinstance(i, YScalar)]
            if parts[0].startswith("escape="):
                escape, parts = parts[0], parts[1:]
            template = "".join(parts)
        else:
            raise val.error(f'invalid number of arguments in "{val.name}" directive', key.line)
        if escape:
            mode = escape[7:]
            if mode not in ESCAPES:
                raise val.error(f'unknown log format escaping "{mode}"', key.line)
            # kept in front of the template; compile_format (http/accesslog.py) reads it back
            template = f"escape={mode} {template}"
        formats[name] = template
    env.log_formats.update(formats)
    return {"log_formats": formats}


def p_access_log(val: Val, env: Env) -> Fields:
    """`path [format [buffer=size] [flush=time]]` or `off`; a list gives several logs."""
    logs: list[AccessLog] = []
    for entry in val.entries():
        args = entry.args()
        if args[0].text == "off":
            if len(args) != 1:
                raise val.nargs()
            logs = [AccessLog(path=None, pos=val.pos)]
            break
        if args[0].text.startswith("syslog:"):
            raise val.error("syslog logging is not supported by pyginx", args[0].line)
        path = env.path(args[0].text)
        fmt = "combined"
        rest = args[1:]
        if rest and "=" not in rest[0].text:
            fmt = rest[0].text
            rest = rest[1:]
            if fmt not in env.log_formats:
                raise val.error(f'unknown log format "{fmt}"', args[1].line)
        buffer = 0
        flush: float | None = None
        for arg in rest:
            if arg.text.startswith("buffer="):
                buffer = arg_size(val, Arg(arg.text[7:], arg.line))
            elif arg.text.startswith("flush="):
                flush = arg_time(val, Arg(arg.text[6:], arg.line))
            else:
                raise val.invalid_param(arg)
        if flush is not None and buffer == 0:
            raise val.error(f'no buffer is defined for access_log "{args[0].text}"', args[0].line)
        logs.append(AccessLog(path=path, format_name=fmt, buffer_size=buffer, flush=flush, pos=val.pos))
    return {"access_log": tuple(logs)}


def p_error_log(val: Val, env: Env) -> Fields:
    """`path [level]` or `stderr [level]` (main, http, server, location)."""
    args = val.args()
    if len(args) > 2:
        raise val.nargs()
    target = args[0].text
    if target.startswith("syslog:") or target.startswith("memory:"):
        raise val.error(f'"{target.split(":")[0]}:" logging is not supported by pyginx', args[0].line)
    level = "error"
    if len(args) == 2:
        level = args[1].text
        if level not in LOG_LEVELS:
            raise val.error(f'invalid log level "{level}"', args[1].line)
    path = None if target == "stderr" else env.path(target)
    return {"error_log": ErrorLog(path=path, level=level)}
