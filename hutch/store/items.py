"""Safe keys and coins: the items of one safe (HUTCH-API.md §7.3, §7.4).

Both kinds behave the same and differ only in columns, so one class serves
both, configured by an ``ItemKind``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import Column, String, Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import literal_column

from hutch.errors import NotFound, ProfileNotSet, ValidationFailed
from hutch.store import safes
from hutch.store.db import Database
from hutch.store.profiles import ACTIVE as ACTIVE_PROFILE
from hutch.store.schema import NOT_DELETED, Epoch, coin, profile, safe, safe_key


@dataclass(frozen=True)
class ItemKind:
    table: Table
    prefix: str                     # column prefix: hk / hc
    shape: tuple[tuple[str, str], ...]  # (wire member, column), in response order
    duplicate_message: str

    def col(self, suffix: str) -> Column:
        return self.table.c[f"{self.prefix}_{suffix}"]

    @cached_property
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
    """The items of one kind; every statement is built once, here."""

    def __init__(self, db: Database, kind: ItemKind):
        self.db = db
        self.kind = kind
        self._wires = tuple(wire for wire, _ in kind.shape)
        table, sc = kind.table, safe.c
        name, deleted, ident = kind.col("name"), kind.col("deleted"), kind.col("id")
        # `=` a scalar subquery, not IN: MariaDB scans the whole item table for IN here.
        owned = table.c.hs_id == safes.ACTIVE_IDS.scalar_subquery()
        columns = [table.c[column] for _, column in kind.shape]
        mutable = kind.mutable

        def lookup(named: bool, paged: bool = False):
            """One query: the profile, LEFT JOIN the safe, LEFT JOIN its item(s)."""
            condition = deleted == NOT_DELETED
            if named:
                condition &= name == bindparam("name")
            if paged:
                # Keyset pagination. The page's ids are chosen first, from the safe's index,
                # so only its rows are read: ordering whole rows would read (and sort) every
                # item's data. `id + 0` keeps planners off the primary key, whose walk
                # from the cursor would cross every user's rows; the cost stays with the
                # safe's own size. In the join, so a safe with no more items still has a row.
                key = ident + literal_column("0")
                page = (select(ident.label("page_id"))
                        .where(owned, deleted == NOT_DELETED,
                               key > bindparam("after", type_=ident.type))
                        .order_by(key).limit(bindparam("limit", type_=ident.type))
                        .subquery("page"))
                # IN (SELECT ... FROM (... LIMIT)): MariaDB refuses LIMIT right inside IN.
                condition &= ident.in_(select(page.c.page_id))
            joined = profile.outerjoin(
                safe, (sc.hp_id == profile.c.hp_id) & (sc.hs_name == bindparam("safe"))
                & (sc.hs_deleted == NOT_DELETED),
            ).outerjoin(table, (table.c.hs_id == sc.hs_id) & condition)
            return (select(*columns, profile.c.hp_sign_kid, sc.hs_id, ident)
                    .select_from(joined).where(ACTIVE_PROFILE).order_by(ident))

        self._list = lookup(named=False)
        self._page = lookup(named=False, paged=True)
        self._get = lookup(named=True).limit(1)
        self._taken = (select(ident).where(owned, name == bindparam("name"), deleted == NOT_DELETED)
                       .limit(1))
        self._insert = insert(table).from_select(
            [table.c.hs_id, name, *mutable.values(), deleted, kind.col("last_updated")],
            select(sc.hs_id, bindparam("name", type_=String()),
                   *(bindparam(f"v_{wire}", type_=column.type) for wire, column in mutable.items()),
                   bindparam("deleted", 0), bindparam("now", type_=Epoch()))
            .join(profile, profile.c.hp_id == sc.hp_id)
            .where(ACTIVE_PROFILE, sc.hs_name == bindparam("safe"), sc.hs_deleted == NOT_DELETED)
            .limit(1),
        )
        self._update = (
            update(table).where(owned, name == bindparam("name"), deleted == NOT_DELETED)
            .values({column: bindparam(f"v_{wire}") for wire, column in mutable.items()}
                    | {kind.col("last_updated"): bindparam("now")})
        )
        self._delete = delete(table).where(owned, name == bindparam("name"))

    def _shape(self, row) -> dict[str, Any]:
        # The shape's columns come first in every select; zip stops after them.
        return dict(zip(self._wires, row, strict=False))

    def _values(self, data: dict[str, Any]) -> dict[str, Any]:
        return {f"v_{wire}": data.get(wire) for wire in self.kind.mutable}

    def list_all(self, sub: str, safe_name: str) -> tuple[str | None, list[dict[str, Any]]]:
        rows = self.db.select(self._list, {"sub": sub, "safe": safe_name})
        if not rows:
            raise ProfileNotSet()
        if rows[0].hs_id is None:
            raise NotFound()  # §13.10: a missing safe is 404, not an empty list.
        return rows[0].hp_sign_kid, [self._shape(r) for r in rows if r[-1] is not None]

    def list_page(self, sub: str, safe_name: str, after: int,
                  limit: int) -> tuple[str | None, list[dict[str, Any]], int | None]:
        """At most ``limit`` items with ids above ``after``, in id order, and the id to
        continue after (None when nothing remains): one query, asking for one row more."""
        rows = self.db.select(self._page, {"sub": sub, "safe": safe_name, "after": after,
                                           "limit": limit + 1})
        if not rows:
            raise ProfileNotSet()
        if rows[0].hs_id is None:
            raise NotFound()  # §13.10, as for the whole list
        kid = rows[0].hp_sign_kid
        found = [row for row in rows if row[-1] is not None]
        last = found[limit - 1][-1] if len(found) > limit else None
        return kid, [self._shape(row) for row in found[:limit]], last

    def get(self, sub: str, safe_name: str, name: str) -> tuple[str | None, dict[str, Any]]:
        rows = self.db.select(self._get, {"sub": sub, "safe": safe_name, "name": name})
        if not rows:
            raise ProfileNotSet()
        row = rows[0]
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
        return bool(self.db.select(self._taken, {"sub": sub, "safe": safe_name, "name": name}))

    def create(self, sub: str, safe_name: str, data: dict[str, Any], now: int) -> None:
        params = {"sub": sub, "safe": safe_name, "name": data["name"], "now": now,
                  **self._values(data)}
        try:
            inserted = self.db.write_one(self._insert, params)
        except IntegrityError:
            self.locate(sub, safe_name)  # the safe may have gone meanwhile
            raise ValidationFailed([self.kind.duplicate_message]) from None
        if not inserted:
            self.locate(sub, safe_name)
            raise NotFound()

    def update_one(self, sub: str, safe_name: str, name: str, data: dict[str, Any],
                   now: int) -> None:
        params = {"sub": sub, "safe": safe_name, "name": name, "now": now,
                  **self._values(data)}
        changed = self.db.write_one(self._update, params)
        if not changed:
            self.locate(sub, safe_name, name)
            raise NotFound()

    def delete_one(self, sub: str, safe_name: str, name: str) -> None:
        with self.db.write() as conn:
            removed = conn.execute(self._delete, {"sub": sub, "safe": safe_name,
                                                  "name": name}).rowcount
        if not removed:
            self.locate(sub, safe_name, name)
            raise NotFound()
