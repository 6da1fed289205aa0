"""Profiles: one active profile per token ``sub`` (HUTCH-API.md §7.1, §8)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from hutch.store.db import Database
from hutch.store.schema import coin, profile, safe, safe_key

p = profile.c
FIELDS = {"name": p.hp_name, "message": p.hp_message, "picture": p.hp_picture,
          "sign_kid": p.hp_sign_kid}


def active(sub: str):
    """The WHERE clause of the caller's active profile."""
    return (p.hp_sub == sub) & (p.hp_deleted == 0)


def find(db: Database, sub: str) -> dict[str, Any] | None:
    query = (select(p.hp_name, p.hp_message, p.hp_picture, p.hp_sign_kid, p.hp_last_updated)
             .where(active(sub)).order_by(p.hp_id).limit(1))
    with db.read() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return {"name": row[0], "message": row[1], "picture": row[2], "sign_kid": row[3],
            "last_updated": row[4]}


def save(db: Database, sub: str, data: dict[str, Any], now: int) -> None:
    """Full replacement of the active profile, created when missing (upsert)."""
    values = {column.key: data.get(name) for name, column in FIELDS.items()}
    values["hp_last_updated"] = now
    for attempt in range(2):
        try:
            with db.write() as conn:
                changed = conn.execute(update(profile).where(active(sub)).values(values)).rowcount
                if not changed:
                    conn.execute(insert(profile).values(hp_sub=sub, hp_deleted=0, **values))
            return
        except IntegrityError:
            # A concurrent PUT created the profile first (unique active sub): update it.
            if attempt:
                raise


def delete_all(db: Database, sub: str) -> None:
    """Remove every profile row of ``sub`` with its safes, keys and coins (§13.13)."""
    with db.write() as conn:
        profile_ids = select(p.hp_id).where(p.hp_sub == sub).scalar_subquery()
        safe_ids = select(safe.c.hs_id).where(safe.c.hp_id.in_(profile_ids)).scalar_subquery()
        conn.execute(delete(coin).where(coin.c.hs_id.in_(safe_ids)))
        conn.execute(delete(safe_key).where(safe_key.c.hs_id.in_(safe_ids)))
        conn.execute(delete(safe).where(safe.c.hp_id.in_(profile_ids)))
        conn.execute(delete(profile).where(p.hp_sub == sub))
