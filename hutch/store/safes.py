"""Safes of the caller's active profile (HUTCH-API.md §7.2, §8).

Each operation is one transaction and, on the happy path, one statement that
resolves the profile and the safe together. Statements are built once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from hutch.errors import NotFound, ProfileNotSet, ValidationFailed
from hutch.store.db import Database
from hutch.store.profiles import ACTIVE as ACTIVE_PROFILE
from hutch.store.schema import NOT_DELETED, Epoch, coin, profile, safe, safe_key

s = safe.c
DUPLICATE = "name already exist for a safe"
FIELDS = {"display_name": s.hs_display_name, "enc_type": s.hs_enc_type,
          "alg_type": s.hs_alg_type}
_COLUMNS = (s.hs_name, s.hs_display_name, s.hs_enc_type, s.hs_alg_type, s.hs_last_updated)

#: Subquery: the id of the caller's active safe; bind ``sub`` and ``safe``.
ACTIVE_IDS = (select(s.hs_id).join(profile, profile.c.hp_id == s.hp_id)
              .where(ACTIVE_PROFILE, s.hs_name == bindparam("safe"), s.hs_deleted == NOT_DELETED))


def _joined(named: bool, paged: bool = False):
    condition = (s.hp_id == profile.c.hp_id) & (s.hs_deleted == NOT_DELETED)
    if named:
        condition &= s.hs_name == bindparam("safe")
    if paged:  # keyset pagination: in the join, so a profile with no more safes has a row
        condition &= s.hs_id > bindparam("after", type_=s.hs_id.type)
    return (select(profile.c.hp_sign_kid, s.hs_id, *_COLUMNS)
            .select_from(profile.outerjoin(safe, condition))
            .where(ACTIVE_PROFILE).order_by(s.hs_id))


_LIST = _joined(named=False)
_PAGE = _joined(named=False, paged=True).limit(bindparam("limit", type_=s.hs_id.type))
_GET = _joined(named=True).limit(1)
_PROFILE_ID = select(profile.c.hp_id).where(ACTIVE_PROFILE).limit(1)
_TAKEN = ACTIVE_IDS.limit(1)
_INSERT = insert(safe).from_select(
    [s.hp_id, s.hs_name, *FIELDS.values(), s.hs_deleted, s.hs_last_updated],
    select(profile.c.hp_id, bindparam("name", type_=String()),
           *(bindparam(f"v_{key}", type_=column.type) for key, column in FIELDS.items()),
           bindparam("deleted", 0), bindparam("now", type_=Epoch()))
    .where(ACTIVE_PROFILE).limit(1),
)
_UPDATE = (update(safe).where(s.hs_name == bindparam("safe"), s.hs_deleted == NOT_DELETED,
                              s.hp_id == select(profile.c.hp_id).where(ACTIVE_PROFILE)
                              .scalar_subquery())
           .values({column: bindparam(f"v_{key}") for key, column in FIELDS.items()}
                   | {s.hs_last_updated: bindparam("now")}))
_DELETE_CHILDREN = (delete(coin).where(coin.c.hs_id.in_(bindparam("ids", expanding=True))),
                    delete(safe_key).where(safe_key.c.hs_id.in_(bindparam("ids", expanding=True))),
                    delete(safe).where(s.hs_id.in_(bindparam("ids", expanding=True))))


def _shape(row) -> dict[str, Any]:
    return {"name": row.hs_name, "display_name": row.hs_display_name,
            "enc_type": row.hs_enc_type, "alg_type": row.hs_alg_type,
            "last_updated": row.hs_last_updated}


def _values(data: dict[str, Any]) -> dict[str, Any]:
    return {f"v_{key}": data.get(key) for key in FIELDS}


def list_all(db: Database, sub: str) -> tuple[str | None, list[dict[str, Any]]]:
    rows = db.select(_LIST, {"sub": sub})
    if not rows:
        raise ProfileNotSet()
    return rows[0].hp_sign_kid, [_shape(row) for row in rows if row.hs_id is not None]


def list_page(db: Database, sub: str, after: int,
              limit: int) -> tuple[str | None, list[dict[str, Any]], int | None]:
    """At most ``limit`` safes with ids above ``after``, in id order, and the id to
    continue after (None when nothing remains): one query, asking for one row more."""
    rows = db.select(_PAGE, {"sub": sub, "after": after, "limit": limit + 1})
    if not rows:
        raise ProfileNotSet()
    found = [row for row in rows if row.hs_id is not None]
    last = found[limit - 1].hs_id if len(found) > limit else None
    return rows[0].hp_sign_kid, [_shape(row) for row in found[:limit]], last


def get(db: Database, sub: str, name: str) -> tuple[str | None, dict[str, Any]]:
    rows = db.select(_GET, {"sub": sub, "safe": name})
    if not rows:
        raise ProfileNotSet()
    row = rows[0]
    if row.hs_id is None:
        raise NotFound()
    return row.hp_sign_kid, _shape(row)


def locate(db: Database, sub: str, name: str) -> None:
    """Raise ProfileNotSet or NotFound unless the caller's safe ``name`` exists."""
    get(db, sub, name)


def require_profile(db: Database, sub: str) -> None:
    if not db.select(_PROFILE_ID, {"sub": sub}):
        raise ProfileNotSet()


def name_taken(db: Database, sub: str, name: str) -> bool:
    return bool(db.select(_TAKEN, {"sub": sub, "safe": name}))


def create(db: Database, sub: str, data: dict[str, Any], now: int) -> None:
    """Insert the safe under the caller's profile; 403 without one, 400 on a duplicate."""
    params = {"sub": sub, "name": data["name"], "now": now, **_values(data)}
    try:
        inserted = db.write_one(_INSERT, params)
    except IntegrityError:
        # The unique index on active names decides between concurrent writers (§13.15);
        # a profile deleted meanwhile fails the foreign key instead: that is a 403.
        require_profile(db, sub)
        raise ValidationFailed([DUPLICATE]) from None
    if not inserted:
        raise ProfileNotSet()


def update_one(db: Database, sub: str, name: str, data: dict[str, Any], now: int) -> None:
    params = {"sub": sub, "safe": name, "now": now, **_values(data)}
    changed = db.write_one(_UPDATE, params)
    if not changed:
        locate(db, sub, name)
        raise NotFound()


def delete_one(db: Database, sub: str, name: str) -> None:
    """Remove the safe with its keys and coins (the ciphertext goes too, §13.13)."""
    with db.write() as conn:
        ids = conn.execute(ACTIVE_IDS, {"sub": sub, "safe": name}).scalars().all()
        if ids:
            for statement in _DELETE_CHILDREN:
                conn.execute(statement, {"ids": ids})
    if not ids:
        locate(db, sub, name)
        raise NotFound()
