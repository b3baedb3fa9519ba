"""API keys: where they come from, when one is required, and the constant-time check.

A server that listens on anything but a loopback address refuses to start without a key. With a
key, a request is authorised by ``Authorization: Bearer <key>``, or by HTTP Basic credentials
whose password is the key (any user name): that is what OpenRLHF's client sends for a
``--reward.remote_url http://medreward:<key>@host:port/get_reward`` (aiohttp turns URL
credentials into a Basic header), so the trainer needs no change.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from pathlib import Path

from ..errors import InputError
from .config import API_KEY_ENV

__all__ = ["authorized", "check_bind", "is_loopback", "load_api_key"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost).

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("10.1.2.3")
    (True, True, False, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def load_api_key(key_file: Path | None, environ: dict[str, str] | None = None) -> str | None:
    """The key from ``key_file`` (its first line, stripped), else ``$MEDREWARD_API_KEY``, else ``None``."""
    if key_file is not None:
        try:
            text = key_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the API key file: {type(exc).__name__}") from None
        key = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not key:
            raise InputError("the API key file is empty")
        return key
    key = (os.environ if environ is None else environ).get(API_KEY_ENV, "").strip()
    return key or None


def check_bind(host: str, key: str | None) -> None:
    """Refuse to serve on a non-loopback address without a key (an open reward endpoint on the
    network lets anyone drive the judges it calls)."""
    if key is None and not is_loopback(host):
        raise InputError(
            f"refusing to listen on {host} without an API key: set ${API_KEY_ENV} or pass --api-key-file "
            "(or listen on 127.0.0.1)"
        )
    if key is not None and len(key) < 16:
        raise InputError("the API key is too short: use at least 16 characters (e.g. `openssl rand -hex 32`)")


def authorized(header: bytes | None, key: bytes) -> bool:
    """Whether an ``Authorization`` header value carries ``key`` (Bearer, or Basic with the key as
    password), compared in constant time.

    >>> authorized(b"Bearer s3cret-s3cret-s3cret", b"s3cret-s3cret-s3cret"), authorized(b"Bearer nope", b"s3cret")
    (True, False)
    >>> authorized(b"Basic " + base64.b64encode(b"medreward:s3cret"), b"s3cret"), authorized(None, b"s3cret")
    (True, False)
    """
    if not header:
        return False
    scheme, _, value = header.strip().partition(b" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == b"bearer":
        return hmac.compare_digest(value, key)
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        _, sep, password = decoded.partition(b":")
        return bool(sep) and hmac.compare_digest(password, key)
    return False
