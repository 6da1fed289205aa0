"""How many bytes a user stores, for the storage quota (``quota_bytes``, README "Storage quota").

A user's usage is the UTF-8 bytes of every string they stored in their live profile,
safes, keys and coins (names, display names, types, messages, the profile picture,
key and coin data), plus ``ROW_BYTES`` for each safe, key and coin: a million empty
coins cost the database more than their names. Deleted rows are not counted.

One statement adds it all up in the database, leaving out the row a write is about to
replace. Its cost grows with what is stored where lengths must be read from the
values themselves (measured with 64 MiB of coins: SQLite ~23 ms, MariaDB ~5 ms,
PostgreSQL < 1 ms, which reads the length from the value's header), so the quota
itself bounds it.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Integer, bindparam, func, literal, not_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from hutch.store.db import Database
from hutch.store.profiles import ACTIVE as ACTIVE_PROFILE
from hutch.store.schema import NOT_DELETED, coin, profile, safe, safe_key

#: What each safe, key and coin row costs beyond its strings.
ROW_BYTES = 128

#: What a write replaces: None for a new row.
Target = Literal["profile", "safe", "key", "coin"] | None


class Octets(FunctionElement):
    """The bytes of a text value in UTF-8 (0 for NULL), whatever the dialect stores."""

    type = Integer()
    inherit_cache = True


@compiles(Octets)
def _octets(element, compiler, **kw) -> str:  # PostgreSQL: octets, not characters
    return f"COALESCE(octet_length({compiler.process(element.clauses, **kw)}), 0)"


@compiles(Octets, "sqlite")
def _octets_sqlite(element, compiler, **kw) -> str:  # length() of TEXT counts characters
    return f"COALESCE(length(CAST({compiler.process(element.clauses, **kw)} AS BLOB)), 0)"


@compiles(Octets, "mysql")
@compiles(Octets, "mariadb")
def _octets_mysql(element, compiler, **kw) -> str:  # LENGTH() is bytes here
    return f"COALESCE(LENGTH({compiler.process(element.clauses, **kw)}), 0)"


def _bytes(*columns) -> object:
    total = Octets(columns[0])
    for column in columns[1:]:
        total = total + Octets(column)
    return total


def _sum(expression, *conditions, joined) -> object:
    return func.coalesce(select(func.sum(expression)).select_from(joined)
                         .where(*conditions).scalar_subquery(), 0)


def _usage(target: Target):
    """Usage of ``sub``, leaving out the profile, safe ``safe`` or item ``safe``/``name``."""
    p, s, k, c = profile.c, safe.c, safe_key.c, coin.c
    live_safes = (ACTIVE_PROFILE, s.hs_deleted == NOT_DELETED)
    of_safes = profile.join(safe, s.hp_id == p.hp_id)
    same_safe = s.hs_name == bindparam("safe")
    profiles = _sum(_bytes(p.hp_name, p.hp_message, p.hp_picture), ACTIVE_PROFILE,
                    *([literal(False)] if target == "profile" else []), joined=profile)
    safes = _sum(_bytes(s.hs_name, s.hs_display_name, s.hs_enc_type, s.hs_alg_type) + ROW_BYTES,
                 *live_safes, *([not_(same_safe)] if target == "safe" else []), joined=of_safes)
    keys = _sum(_bytes(k.hk_type, k.hk_name, k.hk_display_name, k.hk_data) + ROW_BYTES,
                *live_safes, k.hk_deleted == NOT_DELETED,
                *([not_(same_safe & (k.hk_name == bindparam("name")))] if target == "key"
                  else []),
                joined=of_safes.join(safe_key, k.hs_id == s.hs_id))
    coins = _sum(_bytes(c.hc_name, c.hc_data) + ROW_BYTES,
                 *live_safes, c.hc_deleted == NOT_DELETED,
                 *([not_(same_safe & (c.hc_name == bindparam("name")))] if target == "coin"
                   else []),
                 joined=of_safes.join(coin, c.hs_id == s.hs_id))
    return select((profiles + safes + keys + coins).label("used"))


_USAGE = {target: _usage(target) for target in (None, "profile", "safe", "key", "coin")}


def usage(db: Database, sub: str, target: Target = None, safe_name: str | None = None,
          name: str | None = None) -> int:
    """The bytes ``sub`` stores, without the row ``target`` names (it is being replaced)."""
    rows = db.select(_USAGE[target], {"sub": sub, "safe": safe_name or "", "name": name or ""})
    return int(rows[0].used or 0)
