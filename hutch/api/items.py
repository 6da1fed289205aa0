"""The views shared by safe keys and coins: both are items of a safe (§7.3, §7.4)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response

from hutch.api.common import current_user, no_content, now, signed, validated
from hutch.api.paging import requested_page
from hutch.store.items import Items


def item_blueprint(name: str, segment: str, items: Callable[[], Items], schema: str) -> Blueprint:
    """Routes /safe/<safe>/<segment> and /safe/<safe>/<segment>/<item>."""
    bp = Blueprint(name, __name__)

    @bp.get(f"/safe/<safe>/{segment}")
    def list_items(safe: str) -> Response:
        store, sub = items(), current_user()
        page = requested_page(segment, sub, safe, precheck=lambda: store.locate(sub, safe))
        if page is None:
            kid, found = store.list_all(sub, safe)
            return signed({"list": found}, kid)
        kid, found, last = store.list_page(sub, safe, page.after, page.limit)
        return signed(page.answer(found, last), kid)

    @bp.post(f"/safe/<safe>/{segment}")
    def create_item(safe: str) -> Response:
        store, sub = items(), current_user()
        data = validated(
            schema,
            precheck=lambda: store.locate(sub, safe),  # §13.10: a missing safe is 404 first
            duplicate=lambda n: store.kind.duplicate_message
            if store.name_taken(sub, safe, n) else None,
        )
        store.create(sub, safe, data, now())
        return no_content()

    @bp.get(f"/safe/<safe>/{segment}/<item>")
    def get_item(safe: str, item: str) -> Response:
        kid, found = items().get(current_user(), safe, item)
        return signed(found, kid)

    @bp.put(f"/safe/<safe>/{segment}/<item>")
    def update_item(safe: str, item: str) -> Response:
        store, sub = items(), current_user()
        data = validated(schema + "_update", precheck=lambda: store.locate(sub, safe, item))
        store.update_one(sub, safe, item, data, now())
        return no_content()

    @bp.delete(f"/safe/<safe>/{segment}/<item>")
    def delete_item(safe: str, item: str) -> Response:
        items().delete_one(current_user(), safe, item)
        return no_content()

    return bp
