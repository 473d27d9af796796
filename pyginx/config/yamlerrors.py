"""PyYAML's syntax errors in pyginx's words, at the line where the mistake is.

PyYAML reports what its parser expected (`expected <block end>, but found '<block mapping start>'`)
and where it noticed, which for an unclosed quote or bracket is the end of the file. A configuration
error must say what is wrong in the user's terms and name the line to fix, as nginx's do
(`unexpected end of file, expecting ";" or "}" in FILE:LINE`). Pure functions of the error and text.
"""

from __future__ import annotations

import re

import yaml

# characters that YAML reserves at the start of a plain value, and nginx values that start with them:
# `*:8080` (an alias to YAML), `@named` (reserved), `%` and `` ` `` (reserved), `&` (an anchor)
_RESERVED_STARTS = "*@`%&!"

_FOUND = re.compile(r"but (?:found|got) '?(<[a-z ]+>|.)'?$")
_TOKEN_WORDS = {
    "<stream end>": "end of file",
    "<scalar>": "value",
    "<block mapping start>": "key",
    "<block sequence start>": "list",
    "<block end>": "end of block",
}
# `root:html`: a key and a colon with no space after it is one plain string to YAML
_NO_SPACE_KEY = re.compile(r"^\s*(?:- )?([A-Za-z_][\w-]*):(?=[^\s:/])(\S.*)$")


def describe(exc: yaml.MarkedYAMLError, text: str) -> tuple[str, int | None]:
    """(message, 1-based line) for a PyYAML error in `text`."""
    lines = text.splitlines()
    problem = exc.problem or exc.context or "invalid YAML"
    context = exc.context or ""
    pmark, cmark = exc.problem_mark, exc.context_mark
    pline = pmark.line if pmark is not None else None
    cline = cmark.line if cmark is not None else None
    found = _found(problem)

    def at(index: int | None) -> int | None:
        return index + 1 if index is not None else None

    if problem.startswith("found character '\\t'"):
        return "a tab character cannot indent YAML, use spaces", at(pline)
    if context.startswith("while scanning a quoted scalar") and cmark is not None:
        quote = _char_at(lines, cmark.line, cmark.column) or '"'
        return f"unexpected end of file, expecting the closing {quote} of the value started here", at(cline)
    if context.startswith("while parsing a flow"):
        # PyYAML's mark is where the list began or, for `[` with nothing after it, the end of the file
        unclosed = _unclosed(lines, pline if pline is not None else len(lines))
        if unclosed is not None:
            opener, cline = unclosed
        else:
            opener = _char_at(lines, cline, cmark.column) if cline is not None and cmark else "["
        closer = {"[": "]", "{": "}"}.get(opener, "]")
        opener = opener if opener in "[{" else "["
        return (
            f'unexpected {found or "text"}, expecting "," or "{closer}" to close the "{opener}" opened here',
            at(cline),
        )
    hint = _quote_hint(lines, pline) if pline is not None else ""
    if hint:
        return hint, at(pline)
    if problem.startswith("found undefined alias"):
        return problem, at(pline)
    if problem == "mapping values are not allowed here" and pline is not None:
        missing = _no_space_before(lines, pline)
        if missing is not None:
            index, key, value = missing
            return f'a ":" must be followed by a space: "{key}: {value}"', index + 1
        return 'unexpected ":" (a value holding ": " must be quoted)', at(pline)
    if problem.startswith("expected <block end>"):
        if found == "key":
            return "unexpected indentation (the keys of one block must line up)", at(pline)
        if problem.endswith("'-'"):
            return 'unexpected "-" (a list item where the block holds keys)', at(pline)
        if found == "value":
            return "unexpected text after a quoted value (quote the whole value)", at(pline)
    return f"YAML syntax error: {problem}", at(pline if pline is not None else cline)


def _found(problem: str) -> str:
    m = _FOUND.search(problem)
    if m is None:
        return ""
    token = m.group(1)
    return _TOKEN_WORDS.get(token, f'"{token}"')


def _unclosed(lines: list[str], upto: int) -> tuple[str, int] | None:
    """The last `[` or `{` still open at line index `upto` (quotes and comments skipped)."""
    stack: list[tuple[str, int]] = []
    for index, line in enumerate(lines[: upto + 1]):
        quote = ""
        for pos, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "'\"" and (pos == 0 or line[pos - 1] in " [{,:"):
                quote = ch
            elif ch == "#" and (pos == 0 or line[pos - 1] in " \t"):
                break
            elif ch in "[{":
                stack.append((ch, index))
            elif ch in "]}" and stack:
                stack.pop()
    return stack[-1] if stack else None


def _char_at(lines: list[str], line: int, column: int) -> str:
    if 0 <= line < len(lines) and 0 <= column < len(lines[line]):
        return lines[line][column]
    return ""


def _quote_hint(lines: list[str], index: int) -> str:
    """The usual cause of a YAML error in a config: an unquoted value like `*:8080` or `@named`."""
    if not 0 <= index < len(lines):
        return ""
    _, sep, value = lines[index].partition(": ")
    if not sep:
        _, sep, value = lines[index].partition("- ")
    value = value.strip()
    if sep and value[:1] in _RESERVED_STARTS:
        return f"a value starting with \"{value[0]}\" must be quoted in YAML: '{value}'"
    return ""


def _no_space_before(lines: list[str], index: int) -> tuple[int, str, str] | None:
    """`root:html` on a line before the one PyYAML complains about (it read the two as one value)."""
    for i in range(index - 1, max(-1, index - 20), -1):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _NO_SPACE_KEY.match(lines[i])
        if m is not None:
            return i, m.group(1), m.group(2)
        if ": " in stripped or stripped.endswith(":"):
            return None  # a well-formed key: the mistake is where PyYAML says
    return None
