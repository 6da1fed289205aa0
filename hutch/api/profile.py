"""/{prefix}/profile (HUTCH-API.md §7.1)."""

from __future__ import annotations

from flask import Blueprint, Response

from hutch.api.common import current_user, hutch, no_content, now, signed, validated
from hutch.errors import NotFound
from hutch.store import profiles

bp = Blueprint("profile", __name__)


@bp.get("/profile")
def get_profile() -> Response:
    found = profiles.find(hutch().db, current_user())
    if found is None:
        raise NotFound()
    return signed(found, found["sign_kid"])


@bp.put("/profile")
def put_profile() -> Response:
    data = validated("profile", precheck=lambda: None)
    profiles.save(hutch().db, current_user(), data, now())
    return no_content()


@bp.delete("/profile")
def delete_profile() -> Response:
    profiles.delete_all(hutch().db, current_user())
    return no_content()
