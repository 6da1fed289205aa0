"""Profiles: one active profile per token ``sub`` (HUTCH-API.md §7.1, §8).

Statements are built once, with bind parameters: building SQLAlchemy
expressions per request costs more than running them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from hutch.store.db import Database
from hutch.store.schema import NOT_DELETED, coin, profile, safe, safe_key

p = profile.c
FIELDS = {"name": p.hp_name, "message": p.hp_message, "picture": p.hp_picture,
          "sign_kid": p.hp_sign_kid}

#: WHERE clause of the caller's active profile; bind ``sub``.
ACTIVE = (p.hp_sub == bindparam("sub")) & (p.hp_deleted == NOT_DELETED)

_FIND = (select(p.hp_name, p.hp_message, p.hp_picture, p.hp_sign_kid, p.hp_last_updated)
         .where(ACTIVE).order_by(p.hp_id).limit(1))
_VALUES = {column: bindparam(f"v_{column.key}") for column in
           (*FIELDS.values(), p.hp_last_updated)}
_UPDATE = update(profile).where(ACTIVE).values(_VALUES)
_INSERT = insert(profile).values({p.hp_sub: bindparam("sub"), p.hp_deleted: 0, **_VALUES})
_IDS = select(p.hp_id).where(p.hp_sub == bindparam("sub")).scalar_subquery()
_SAFE_IDS = select(safe.c.hs_id).where(safe.c.hp_id.in_(_IDS)).scalar_subquery()
_DELETE_ALL = (
    delete(coin).where(coin.c.hs_id.in_(_SAFE_IDS)),
    delete(safe_key).where(safe_key.c.hs_id.in_(_SAFE_IDS)),
    delete(safe).where(safe.c.hp_id.in_(_IDS)),
    delete(profile).where(p.hp_sub == bindparam("sub")),
)


def find(db: Database, sub: str) -> dict[str, Any] | None:
    rows = db.select(_FIND, {"sub": sub})
    if not rows:
        return None
    row = rows[0]
    return {"name": row[0], "message": row[1], "picture": row[2], "sign_kid": row[3],
            "last_updated": row[4]}


def save(db: Database, sub: str, data: dict[str, Any], now: int) -> None:
    """Full replacement of the active profile, created when missing (upsert)."""
    params = {f"v_{column.key}": data.get(name) for name, column in FIELDS.items()}
    params["v_hp_last_updated"] = now
    params["sub"] = sub
    for attempt in range(2):
        try:
            with db.writing() as run:
                if not run(_UPDATE, params):
                    run(_INSERT, params)
            return
        except IntegrityError:
            # A concurrent PUT created the profile first (unique active sub): update it.
            if attempt:
                raise


def delete_all(db: Database, sub: str) -> None:
    """Remove every profile row of ``sub`` with its safes, keys and coins (§13.13)."""
    with db.write() as conn:
        for statement in _DELETE_ALL:
            conn.execute(statement, {"sub": sub})
