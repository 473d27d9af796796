"""The SSL_CTX settings Python's ssl module does not expose: the session timeout (nginx's
ssl_session_timeout, OpenSSL's default is 2 h where nginx's is 5 min), the verify depth
(ssl_verify_depth, proxy_ssl_verify_depth) and the session cache mode (ssl_session_cache off).

They are set through libssl with ctypes on the SSL_CTX that CPython's SSLContext wraps. The pointer is
found where CPython keeps it (right after the object header) and trusted only after a probe on a fresh
context reads back OpenSSL's known defaults through it; if the probe fails (another Python, another
layout), `available` is False and the settings keep OpenSSL's defaults (-t warns then).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ssl
import sys

_OFFSET = object.__basicsize__  # PySSLContext: PyObject_HEAD, then `SSL_CTX *ctx`
_lib: ctypes.CDLL | None = None


def _ctx_pointer(ctx: ssl.SSLContext) -> int:
    return int(ctypes.c_void_p.from_address(id(ctx) + _OFFSET).value or 0)


def _load() -> ctypes.CDLL | None:
    if sys.implementation.name != "cpython":
        return None
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)  # resolves the libssl symbols _ssl is linked with
        lib.SSL_CTX_get_timeout.restype = ctypes.c_long
        lib.SSL_CTX_get_timeout.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_set_timeout.restype = ctypes.c_long
        lib.SSL_CTX_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
        lib.SSL_CTX_get_verify_depth.restype = ctypes.c_int
        lib.SSL_CTX_get_verify_depth.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_set_verify_depth.restype = None
        lib.SSL_CTX_set_verify_depth.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pointer = _ctx_pointer(probe)
        if not pointer:
            return None
        # a fresh TLS server context has OpenSSL's defaults: 7200 s and depth -1 (unlimited)
        if lib.SSL_CTX_get_timeout(pointer) != 7200 or lib.SSL_CTX_get_verify_depth(pointer) != -1:
            return None
        lib.SSL_CTX_set_timeout(pointer, 300)
        if lib.SSL_CTX_get_timeout(pointer) != 300:
            return None
        return lib
    except (OSError, AttributeError, ImportError, ValueError):
        return None


_lib = _load()
available = _lib is not None


def set_session_timeout(ctx: ssl.SSLContext, seconds: float) -> bool:
    if _lib is None:
        return False
    _lib.SSL_CTX_set_timeout(_ctx_pointer(ctx), max(1, int(seconds)))
    return True


def set_verify_depth(ctx: ssl.SSLContext, depth: int) -> bool:
    if _lib is None:
        return False
    _lib.SSL_CTX_set_verify_depth(_ctx_pointer(ctx), depth)
    return True


_SET_SESS_CACHE_MODE = 44  # SSL_CTRL_SET_SESS_CACHE_MODE
_GET_SESS_CACHE_MODE = 45
SESS_CACHE_OFF = 0


def set_session_cache_off(ctx: ssl.SSLContext) -> bool:
    """`ssl_session_cache off|none`: no server-side session cache (tickets, if on, still resume)."""
    if _lib is None:
        return False
    _lib.SSL_CTX_ctrl(_ctx_pointer(ctx), _SET_SESS_CACHE_MODE, SESS_CACHE_OFF, None)
    return True


def session_timeout(ctx: ssl.SSLContext) -> int | None:
    return int(_lib.SSL_CTX_get_timeout(_ctx_pointer(ctx))) if _lib is not None else None
