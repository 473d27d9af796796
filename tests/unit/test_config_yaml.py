"""The YAML layer: line numbers on every key and value, duplicates recorded, anchors honoured."""

from __future__ import annotations

import pytest

from pyginx.config.yamlload import YMap, YScalar, YSeq, parse_yaml
from pyginx.errors import ConfigError


def test_lines_and_raw_text() -> None:
    root = parse_yaml("a: 1\nb:\n  - x\n  - 1.10\nc: on\nd: 'on'\n", "/f.yaml")
    assert isinstance(root, YMap)
    keys = [(k.raw, k.line) for k, _ in root.items]
    assert keys == [("a", 1), ("b", 2), ("c", 5), ("d", 6)]
    seq = root.get("b")
    assert isinstance(seq, YSeq) and seq.line == 3
    first, second = seq.items
    assert isinstance(first, YScalar) and first.line == 3
    assert isinstance(second, YScalar) and second.line == 4
    assert second.value == 1.1 and second.text == "1.10"  # the text as written reaches the parser
    c, d = root.get("c"), root.get("d")
    assert isinstance(c, YScalar) and c.value is True and c.text == "on"
    assert isinstance(d, YScalar) and d.value == "on" and d.quoted


def test_booleans_and_null_as_arguments() -> None:
    root = parse_yaml("a: true\nb: false\nc:\nd: 0755\n", "/f.yaml")
    assert isinstance(root, YMap)
    texts = {k.raw: v.text for k, v in root.items if isinstance(v, YScalar)}
    assert texts == {"a": "on", "b": "off", "c": "", "d": "0755"}


def test_duplicate_key_is_recorded_with_its_line() -> None:
    root = parse_yaml("a: 1\nb: 2\na: 3\n", "/f.yaml")
    assert isinstance(root, YMap)
    assert root.duplicate is not None and root.duplicate.raw == "a" and root.duplicate.line == 3
    value = root.get("a")
    assert isinstance(value, YScalar) and value.value == 1  # the first one is kept


def test_merge_keys_may_be_overridden_without_a_duplicate() -> None:
    text = "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n"
    root = parse_yaml(text, "/f.yaml")
    assert isinstance(root, YMap)
    use = root.get("use")
    assert isinstance(use, YMap) and use.duplicate is None
    assert {k.raw: v.value for k, v in use.items if isinstance(v, YScalar)} == {"x": 1, "y": 3}


def test_empty_document() -> None:
    assert parse_yaml("# nothing\n", "/f.yaml") is None


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: 1\nb: [\n", "/f.yaml")
    # the unclosed "[" is on line 2 (PyYAML notices at the end of the file, line 3)
    assert info.value.file == "/f.yaml" and info.value.line == 2
    assert info.value.message == 'unexpected end of file, expecting "," or "]" to close the "[" opened here'


def test_complex_key_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml("? [a, b]\n: 1\n", "/f.yaml")
    assert info.value.message == "a mapping key must be a plain name"
