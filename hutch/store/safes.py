"""Safes of the caller's active profile (HUTCH-API.md §7.2, §8).

Each operation is one transaction and, on the happy path, one statement that
resolves the profile and the safe together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from hutch.errors import NotFound, ProfileNotSet, ValidationFailed
from hutch.store.db import Database
from hutch.store.profiles import active as active_profile
from hutch.store.schema import Epoch, coin, profile, safe, safe_key

s = safe.c
DUPLICATE = "name already exist for a safe"
FIELDS = {"display_name": s.hs_display_name, "enc_type": s.hs_enc_type,
          "alg_type": s.hs_alg_type}
_COLUMNS = (s.hs_name, s.hs_display_name, s.hs_enc_type, s.hs_alg_type, s.hs_last_updated)


def _shape(row) -> dict[str, Any]:
    return {"name": row.hs_name, "display_name": row.hs_display_name,
            "enc_type": row.hs_enc_type, "alg_type": row.hs_alg_type,
            "last_updated": row.hs_last_updated}


def _profile_join(sub: str, name: str | None = None):
    """FROM h_profile LEFT JOIN h_safe (of that name, if given), for the caller."""
    condition = (s.hp_id == profile.c.hp_id) & (s.hs_deleted == 0)
    if name is not None:
        condition &= s.hs_name == name
    return profile.outerjoin(safe, condition), active_profile(sub)


def active_ids(sub: str, name: str):
    """Subquery: id of the caller's active safe ``name``."""
    return (select(s.hs_id).join(profile, profile.c.hp_id == s.hp_id)
            .where(active_profile(sub), s.hs_name == name, s.hs_deleted == 0))


def list_all(db: Database, sub: str) -> tuple[str | None, list[dict[str, Any]]]:
    joined, where = _profile_join(sub)
    query = (select(profile.c.hp_sign_kid, s.hs_id, *_COLUMNS).select_from(joined)
             .where(where).order_by(s.hs_id))
    with db.read() as conn:
        rows = conn.execute(query).all()
    if not rows:
        raise ProfileNotSet()
    return rows[0].hp_sign_kid, [_shape(row) for row in rows if row.hs_id is not None]


def get(db: Database, sub: str, name: str) -> tuple[str | None, dict[str, Any]]:
    joined, where = _profile_join(sub, name)
    query = (select(profile.c.hp_sign_kid, s.hs_id, *_COLUMNS).select_from(joined)
             .where(where).order_by(s.hs_id).limit(1))
    with db.read() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise ProfileNotSet()
    if row.hs_id is None:
        raise NotFound()
    return row.hp_sign_kid, _shape(row)


def locate(db: Database, sub: str, name: str) -> None:
    """Raise ProfileNotSet or NotFound unless the caller's safe ``name`` exists."""
    get(db, sub, name)


def require_profile(db: Database, sub: str) -> None:
    with db.read() as conn:
        found = conn.execute(select(profile.c.hp_id).where(active_profile(sub)).limit(1)).first()
    if found is None:
        raise ProfileNotSet()


def name_taken(db: Database, sub: str, name: str) -> bool:
    with db.read() as conn:
        return conn.execute(active_ids(sub, name).limit(1)).first() is not None


def create(db: Database, sub: str, data: dict[str, Any], now: int) -> None:
    """Insert the safe under the caller's profile; 403 without one, 400 on a duplicate."""
    source = select(
        profile.c.hp_id,
        literal(data["name"]),
        *(literal(data.get(key), column.type) for key, column in FIELDS.items()),
        literal(0),
        literal(now, Epoch()),
    ).where(active_profile(sub)).limit(1)
    target = [s.hp_id, s.hs_name, *FIELDS.values(), s.hs_deleted, s.hs_last_updated]
    try:
        with db.write() as conn:
            inserted = conn.execute(insert(safe).from_select(target, source)).rowcount
    except IntegrityError:
        # The unique index on active names decides between concurrent writers (§13.15).
        raise ValidationFailed([DUPLICATE]) from None
    if not inserted:
        raise ProfileNotSet()


def update_one(db: Database, sub: str, name: str, data: dict[str, Any], now: int) -> None:
    values = {column.key: data.get(key) for key, column in FIELDS.items()}
    values["hs_last_updated"] = now
    with db.write() as conn:
        changed = conn.execute(
            update(safe).where(s.hs_id.in_(active_ids(sub, name).scalar_subquery()))
            .values(values)
        ).rowcount
    if not changed:
        locate(db, sub, name)
        raise NotFound()


def delete_one(db: Database, sub: str, name: str) -> None:
    """Remove the safe with its keys and coins (the ciphertext goes too, §13.13)."""
    with db.write() as conn:
        ids = conn.execute(active_ids(sub, name)).scalars().all()
        if ids:
            conn.execute(delete(coin).where(coin.c.hs_id.in_(ids)))
            conn.execute(delete(safe_key).where(safe_key.c.hs_id.in_(ids)))
            conn.execute(delete(safe).where(s.hs_id.in_(ids)))
    if not ids:
        locate(db, sub, name)
        raise NotFound()
