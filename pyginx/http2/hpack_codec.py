"""HPACK (RFC 7541) for one HTTP/2 connection: our response encoder, and the request decoder.

Responses are encoded without the dynamic table, as literals that reference the static table's names
(or its exact entries, for :status 200/304/404...). That keeps nothing per connection to get out of step,
costs a few bytes per header, and makes encoding a few dictionary lookups: nginx encodes its response
headers the same way (plus Huffman, which we skip: it is optional, and it would cost CPU for bytes).

Requests are decoded by the `hpack` library, whose decoder keeps the client's dynamic table. Browsers
and load tools send the same header block again and again once its fields are in the table (a block of
indexed references, which leaves the table as it is): such a block is decoded once and remembered while
the table is unchanged. Any block that changes the table (an insertion, a size update) forgets them all,
so a remembered result is always what decoding would give.
"""

from __future__ import annotations

from typing import Any, Final

import hpack
from hpack.table import HeaderTable

Header = tuple[bytes, bytes]

_PAIR_INDEX: Final[dict[Header, int]] = {}
_NAME_INDEX: Final[dict[bytes, int]] = {}
for _i, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _PAIR_INDEX.setdefault((_name, _value), _i)
    _NAME_INDEX.setdefault(_name, _i)

_CACHE_ENTRIES: Final = 64


def encode_int(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer with an N-bit prefix; `first` holds the pattern bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    n = len(data)
    if n < 127:
        return bytes((n,)) + data
    return encode_int(n, 7, 0) + data


def _name_prefix(name: bytes) -> bytes:
    """The start of a 'literal without indexing' field of this name (section 6.2.2)."""
    index = _NAME_INDEX.get(name, 0)
    if index:
        return encode_int(index, 4, 0)
    return b"\x00" + _string(name)


_PREFIXES: Final[dict[bytes, bytes]] = {name: _name_prefix(name) for name in _NAME_INDEX}


# a dynamic table size update to 0 (section 6.3): put before a block once the client lowered its
# SETTINGS_HEADER_TABLE_SIZE (section 4.2), which our table (always empty) then honours
TABLE_SIZE_ZERO: Final = b"\x20"


def encode(headers: list[Header]) -> bytes:
    """The header block of a response."""
    parts: list[bytes] = []
    for pair in headers:
        index = _PAIR_INDEX.get(pair, 0)
        if index:
            parts.append(bytes((0x80 | index,)))
            continue
        name, value = pair
        prefix = _PREFIXES.get(name)
        if prefix is None:
            prefix = _name_prefix(name)
            if len(_PREFIXES) < 512:  # bounded: header names come from configs and upstreams
                _PREFIXES[name] = prefix
        parts.append(prefix)
        parts.append(_string(value))
    return b"".join(parts)


class DecodedBlock:
    """A decoded header block; `prepared` is for the connection's reading of it (connection.py)."""

    __slots__ = ("headers", "prepared")

    def __init__(self, headers: list[Header]) -> None:
        self.headers = headers
        self.prepared: object = None


class HeaderDecoder:
    """The request side of one connection's HPACK state (see the module docstring)."""

    def __init__(self, max_header_list_size: int, max_table_size: int) -> None:
        self.decoder = hpack.Decoder(max_header_list_size=max_header_list_size)
        self.decoder.max_allowed_table_size = max_table_size
        self.known: dict[bytes, DecodedBlock] = {}

    def decode(self, block: bytes) -> DecodedBlock:
        """The header list of a block; hpack.HPACKError (OversizedHeaderListError for a block that
        inflates past the limit: an HPACK bomb) when it cannot be decoded."""
        known = self.known.get(block)
        if known is not None:
            return known
        table = self.decoder.header_table
        # Any: mypyc would unbox the entries (tuples) and box them again, and `is` would never hold
        entries: Any = table.dynamic_entries
        newest = entries[0] if entries else None
        count = len(entries)
        size = table.maxsize
        headers: list[Header] = [(bytes(n), bytes(v)) for n, v in self.decoder.decode(block, raw=True)]
        decoded = DecodedBlock(headers)
        unchanged = (
            (entries[0] if entries else None) is newest and len(entries) == count and table.maxsize == size
        )
        if unchanged:
            if len(self.known) >= _CACHE_ENTRIES:
                self.known.clear()
            self.known[block] = decoded
        elif self.known:
            self.known.clear()
        return decoded
