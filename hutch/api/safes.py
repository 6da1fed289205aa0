"""/{prefix}/safe and /{prefix}/safe/{safe} (HUTCH-API.md §7.2)."""

from __future__ import annotations

from flask import Blueprint, Response

from hutch.api.common import current_user, hutch, no_content, now, signed, validated
from hutch.api.paging import requested_page
from hutch.store import safes

bp = Blueprint("safes", __name__)


@bp.get("/safe")
def list_safes() -> Response:
    db, sub = hutch().db, current_user()
    page = requested_page("safe", sub, None, precheck=lambda: safes.require_profile(db, sub))
    if page is None:
        kid, items = safes.list_all(db, sub)
        return signed({"list": items}, kid)
    kid, items, last = safes.list_page(db, sub, page.after, page.limit)
    return signed(page.answer(items, last), kid)


@bp.post("/safe")
def create_safe() -> Response:
    db, sub = hutch().db, current_user()
    data = validated(
        "safe",
        precheck=lambda: safes.require_profile(db, sub),
        duplicate=lambda name: safes.DUPLICATE if safes.name_taken(db, sub, name) else None,
    )
    safes.create(db, sub, data, now())
    return no_content()


@bp.get("/safe/<safe>")
def get_safe(safe: str) -> Response:
    kid, found = safes.get(hutch().db, current_user(), safe)
    return signed(found, kid)


@bp.put("/safe/<safe>")
def update_safe(safe: str) -> Response:
    db, sub = hutch().db, current_user()
    data = validated("safe_update", precheck=lambda: safes.locate(db, sub, safe))
    safes.update_one(db, sub, safe, data, now())
    return no_content()


@bp.delete("/safe/<safe>")
def delete_safe(safe: str) -> Response:
    safes.delete_one(hutch().db, current_user(), safe)
    return no_content()
