"""The key exchange groups a server context offers, which Python's ssl module cannot set.

OpenSSL's default list includes X448, P-521 and finite-field groups; Mozilla's TLS guidelines
allow X25519, P-256 and P-384 only. `SSL_CTX_set1_groups_list` is reached through ctypes on the
SSL_CTX that CPython's context object holds right after its object header. That pointer is
checked first (OpenSSL must report the options Python reports) and any doubt falls back to
`set_ecdh_curve` (P-256 alone: compliant, without X25519).
"""

from __future__ import annotations

import ctypes
import logging
import ssl
import sys
from functools import cache

log = logging.getLogger(__name__)

GROUPS = b"X25519:P-256:P-384"
_SSL_CTRL_SET_GROUPS_LIST = 92  # openssl/ssl.h


@cache
def _libssl() -> ctypes.CDLL | None:
    if sys.implementation.name != "cpython":
        return None
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)  # its libssl's symbols resolve through it
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    except (OSError, AttributeError, ImportError):
        return None
    return lib


def restrict_groups(context: ssl.SSLContext) -> None:
    """Offer only X25519, P-256 and P-384 for key exchange on `context`."""
    lib = _libssl()
    if lib is not None:
        pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
        if pointer and lib.SSL_CTX_get_options(pointer) == int(context.options):
            groups = ctypes.c_char_p(GROUPS)
            if lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups) == 1:
                return
    _fallback_note()
    context.set_ecdh_curve("prime256v1")


@cache
def _fallback_note() -> None:
    log.info("TLS key exchange limited to P-256 (this Python cannot set a list of groups)")
