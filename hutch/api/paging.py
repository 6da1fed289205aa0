"""Lists in pages: ``?limit=N`` and ``?after=CURSOR`` (README "Lists in pages").

Without either parameter a list is answered whole, byte for byte as the original
does. With them the answer is ``{"list": [...], "next": CURSOR}``, and ``next`` is
left out once nothing remains. Pages are keyset pagination on the row id, the order
lists already use, so an entry that exists for the whole walk is given exactly once
whatever is inserted or deleted meanwhile, and each page is one query.

A cursor is the id of the last entry given, encrypted and authenticated (AES-GCM)
under a key derived from the signing keys, with the list it belongs to (kind,
caller, safe) as associated data. So it tells a client nothing (ids count rows
server-wide), cannot be edited or forged, and is refused with 400 on another list or
by another user; the query is scoped to the caller's own list in any case. Cursors
stay valid across workers and servers that share the signing JWKS, and end (400,
start again) when the signing keys change.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app, request

from hutch.errors import ValidationFailed
from hutch.jose import json_bytes

MAX_LIMIT = 1000
LIMIT_MESSAGE = f"limit must be an integer between 1 and {MAX_LIMIT}"
AFTER_MESSAGE = "after must be the next value of a previous page of this same list"
_LABEL = b"hutch list cursor v1"
_NONCE = 12
_ID = struct.Struct(">Q")
# 12-byte nonce + 8-byte id + 16-byte tag = 36 bytes = 48 base64url characters.
_CURSOR = re.compile(r"^[A-Za-z0-9_-]{48}$")
_DIGITS = re.compile(r"^[0-9]{1,4}$")


@dataclass(frozen=True)
class Page:
    """One page asked for: at most ``limit`` entries whose ids are above ``after``."""

    limit: int
    after: int
    scope: bytes

    def answer(self, entries: list[dict[str, Any]], last: int | None) -> dict[str, Any]:
        """The signed payload: ``next`` only while entries remain after ``last``."""
        payload: dict[str, Any] = {"list": entries}
        if last is not None:
            payload["next"] = _seal(self.scope, last)
        return payload


def requested_page(kind: str, sub: str, safe: str | None,
                   precheck: Callable[[], None]) -> Page | None:
    """The page the query string asks for, or None for the whole list.

    Bad values are a 400 with every problem (HUTCH-API.md §6); ``precheck`` raises
    403/404 first, as for a bad body (§7.5). ``after`` without ``limit`` pages by
    the maximum.
    """
    limits, afters = request.args.getlist("limit"), request.args.getlist("after")
    if not limits and not afters:
        return None
    scope = json_bytes([kind, sub, safe])
    problems, limit, after = [], MAX_LIMIT, 0
    if limits:
        if len(limits) == 1 and _DIGITS.match(limits[0]) and 1 <= int(limits[0]) <= MAX_LIMIT:
            limit = int(limits[0])
        else:
            problems.append(LIMIT_MESSAGE)
    if afters:
        opened = _open(scope, afters[0]) if len(afters) == 1 else None
        if opened is None:
            problems.append(AFTER_MESSAGE)
        else:
            after = opened
    if problems:
        precheck()
        raise ValidationFailed(problems)
    return Page(limit=limit, after=after, scope=scope)


def _cipher() -> AESGCM:
    cipher = current_app.extensions.get("hutch.cursors")
    if cipher is None:  # once per app; a race only derives the same key twice
        signing = current_app.extensions["hutch"].signing
        cipher = current_app.extensions["hutch.cursors"] = AESGCM(signing.secret(_LABEL))
    return cipher


def _seal(scope: bytes, row_id: int) -> str:
    nonce = os.urandom(_NONCE)
    sealed = nonce + _cipher().encrypt(nonce, _ID.pack(row_id), scope)
    return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")


def _open(scope: bytes, cursor: str) -> int | None:
    """The id inside a cursor made for ``scope``, or None for anything else."""
    if not _CURSOR.match(cursor):
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor)
        plain = _cipher().decrypt(raw[:_NONCE], raw[_NONCE:], scope)
    except (binascii.Error, ValueError, InvalidTag):
        return None
    return _ID.unpack(plain)[0]
