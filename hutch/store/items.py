"""Safe keys and coins: the items of one safe (HUTCH-API.md §7.3, §7.4).

Both kinds behave the same and differ only in columns, so one class serves
both, configured by an ``ItemKind``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, delete, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from hutch.errors import NotFound, ProfileNotSet, ValidationFailed
from hutch.store import safes
from hutch.store.db import Database
from hutch.store.profiles import active as active_profile
from hutch.store.schema import Epoch, coin, profile, safe, safe_key


@dataclass(frozen=True)
class ItemKind:
    table: Table
    prefix: str                     # column prefix: hk / hc
    shape: tuple[tuple[str, str], ...]  # (wire member, column), in response order
    duplicate_message: str

    def col(self, suffix: str) -> Column:
        return self.table.c[f"{self.prefix}_{suffix}"]

    @property
    def mutable(self) -> dict[str, Column]:
        fixed = ("name", "last_updated")
        return {wire: self.table.c[column] for wire, column in self.shape if wire not in fixed}


SAFE_KEYS = ItemKind(
    safe_key, "hk",
    (("type", "hk_type"), ("name", "hk_name"), ("display_name", "hk_display_name"),
     ("data", "hk_data"), ("last_updated", "hk_last_updated")),
    "name already exist for a safe key",
)
COINS = ItemKind(
    coin, "hc",
    (("name", "hc_name"), ("data", "hc_data"), ("last_updated", "hc_last_updated")),
    "name already exist for a safe coin",
)


class Items:
    def __init__(self, db: Database, kind: ItemKind):
        self.db = db
        self.kind = kind
        self._columns = [kind.table.c[column] for _, column in kind.shape]

    def _shape(self, row) -> dict[str, Any]:
        return {wire: row[i] for i, (wire, _) in enumerate(self.kind.shape)}

    def _lookup(self, sub: str, safe_name: str, name: str | None):
        """One query: profile, LEFT JOIN the safe, LEFT JOIN its item(s)."""
        kind, sc = self.kind, safe.c
        condition = kind.col("deleted") == 0
        if name is not None:
            condition &= kind.col("name") == name
        joined = profile.outerjoin(
            safe, (sc.hp_id == profile.c.hp_id) & (sc.hs_name == safe_name) & (sc.hs_deleted == 0)
        ).outerjoin(kind.table, (kind.table.c.hs_id == sc.hs_id) & condition)
        return (select(*self._columns, profile.c.hp_sign_kid, sc.hs_id, kind.col("id"))
                .select_from(joined).where(active_profile(sub)).order_by(kind.col("id")))

    def list_all(self, sub: str, safe_name: str) -> tuple[str | None, list[dict[str, Any]]]:
        with self.db.read() as conn:
            rows = conn.execute(self._lookup(sub, safe_name, None)).all()
        if not rows:
            raise ProfileNotSet()
        if rows[0].hs_id is None:
            raise NotFound()  # §13.10: a missing safe is 404, not an empty list.
        return rows[0].hp_sign_kid, [self._shape(r) for r in rows if r[-1] is not None]

    def get(self, sub: str, safe_name: str, name: str) -> tuple[str | None, dict[str, Any]]:
        with self.db.read() as conn:
            row = conn.execute(self._lookup(sub, safe_name, name).limit(1)).first()
        if row is None:
            raise ProfileNotSet()
        if row[-1] is None:
            raise NotFound()
        return row.hp_sign_kid, self._shape(row)

    def locate(self, sub: str, safe_name: str, name: str | None = None) -> None:
        """Raise ProfileNotSet or NotFound unless the safe (and item, if named) exist."""
        if name is None:
            safes.locate(self.db, sub, safe_name)
        else:
            self.get(sub, safe_name, name)

    def name_taken(self, sub: str, safe_name: str, name: str) -> bool:
        query = self._owned(sub, safe_name, select(self.kind.col("id"))).where(
            self.kind.col("name") == name, self.kind.col("deleted") == 0).limit(1)
        with self.db.read() as conn:
            return conn.execute(query).first() is not None

    def _owned(self, sub: str, safe_name: str, query):
        return query.where(self.kind.table.c.hs_id.in_(
            safes.active_ids(sub, safe_name).scalar_subquery()))

    def create(self, sub: str, safe_name: str, data: dict[str, Any], now: int) -> None:
        kind, sc = self.kind, safe.c
        mutable = kind.mutable
        source = (
            select(sc.hs_id, literal(data["name"]),
                   *(literal(data.get(wire), column.type) for wire, column in mutable.items()),
                   literal(0), literal(now, Epoch()))
            .join(profile, profile.c.hp_id == sc.hp_id)
            .where(active_profile(sub), sc.hs_name == safe_name, sc.hs_deleted == 0)
            .limit(1)
        )
        target = [kind.table.c.hs_id, kind.col("name"), *mutable.values(), kind.col("deleted"),
                  kind.col("last_updated")]
        try:
            with self.db.write() as conn:
                inserted = conn.execute(insert(kind.table).from_select(target, source)).rowcount
        except IntegrityError:
            self.locate(sub, safe_name)  # the safe may have gone meanwhile
            raise ValidationFailed([kind.duplicate_message]) from None
        if not inserted:
            self.locate(sub, safe_name)
            raise NotFound()

    def update_one(self, sub: str, safe_name: str, name: str, data: dict[str, Any],
                   now: int) -> None:
        kind = self.kind
        values = {column.key: data.get(wire) for wire, column in kind.mutable.items()}
        values[kind.col("last_updated").key] = now
        statement = self._owned(sub, safe_name, update(kind.table)).where(
            kind.col("name") == name, kind.col("deleted") == 0)
        with self.db.write() as conn:
            changed = conn.execute(statement.values(values)).rowcount
        if not changed:
            self.locate(sub, safe_name, name)
            raise NotFound()

    def delete_one(self, sub: str, safe_name: str, name: str) -> None:
        kind = self.kind
        statement = self._owned(sub, safe_name, delete(kind.table)).where(
            kind.col("name") == name)
        with self.db.write() as conn:
            removed = conn.execute(statement).rowcount
        if not removed:
            self.locate(sub, safe_name, name)
            raise NotFound()
