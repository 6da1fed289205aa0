"""Lists in pages (`?limit=N&after=CURSOR`): safes, keys and coins, on every backend.

Without the parameters a list is the original's whole list; with them, pages of
keyset pagination whose cursors are useless on any other list or to any other user.
"""

from __future__ import annotations

import threading

import pytest

from hutch.api.paging import AFTER_MESSAGE, LIMIT_MESSAGE, MAX_LIMIT
from tests.helpers import Api, rejected, written


@pytest.fixture(params=["safe", "key", "coin"])
def listing(request, profile_ready):
    """(url of an empty list, add(name)); for keys and coins, 'dev' owns safe 's1'."""
    api = profile_ready
    if request.param == "safe":
        return "/api/safe", lambda name: api.post("/api/safe", json={"name": name})
    assert written(api.post("/api/safe", json={"name": "s1"}))
    url = f"/api/safe/s1/{request.param}"
    return url, lambda name: api.post(url, json={"name": name, "data": "x" * 10})


def names(answer) -> list[str]:
    return [entry["name"] for entry in answer.payload["list"]]


def walk(api: Api, url: str, limit: int, between=None) -> list[list[str]]:
    """Every page of ``url`` in order; each page but the last carries ``next``."""
    pages, query = [], f"limit={limit}"
    while True:
        if pages and between is not None:
            between()
        answer = api.get(f"{url}?{query}")
        assert answer.status_code == 200
        pages.append(names(answer))
        if "next" not in answer.payload:
            return pages
        assert set(answer.payload) == {"list", "next"}
        assert len(pages) < 100, "the walk never ends"
        query = f"limit={limit}&after={answer.payload['next']}"


def test_a_walk_gives_every_entry_once_in_list_order(api, listing):
    url, add = listing
    for n in range(25):
        assert written(add(f"n{n:02d}"))
    whole = api.get(url)
    assert set(whole.payload) == {"list"}  # no parameters: the original's answer
    pages = walk(api, url, 10)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [name for page in pages for name in page] == names(whole)
    # Entries of a page have exactly the members of the whole list's entries.
    first = api.get(f"{url}?limit=10").payload
    assert first["list"] == whole.payload["list"][:10]


def test_the_last_page_has_no_next_and_an_empty_list_is_one_page(api, listing):
    url, add = listing
    everything = names(api.get(url))
    assert api.get(f"{url}?limit=5").payload == {"list": api.get(url).payload["list"]}
    for n in range(3 - len(everything)):
        assert written(add(f"m{n}"))
    assert walk(api, url, 3) == [names(api.get(url))]  # exactly full: no next
    assert [len(p) for p in walk(api, url, 2)] == [2, 1]
    assert [len(p) for p in walk(api, url, 1)] == [1, 1, 1]


def test_after_alone_continues_with_pages_of_the_maximum(api, listing):
    url, add = listing
    for n in range(6):
        add(f"n{n}")
    every = names(api.get(url))
    first = api.get(f"{url}?limit=2").payload
    rest = api.get(f"{url}?after={first['next']}").payload
    assert set(rest) == {"list"} and [e["name"] for e in rest["list"]] == every[2:]


@pytest.mark.parametrize("query, messages", [
    ("limit=0", [LIMIT_MESSAGE]),
    (f"limit={MAX_LIMIT + 1}", [LIMIT_MESSAGE]),
    ("limit=-1", [LIMIT_MESSAGE]),
    ("limit=1.5", [LIMIT_MESSAGE]),
    ("limit=ten", [LIMIT_MESSAGE]),
    ("limit=", [LIMIT_MESSAGE]),
    ("limit=%EF%BC%91", [LIMIT_MESSAGE]),  # a fullwidth digit one: int() would take it
    ("limit=1&limit=2", [LIMIT_MESSAGE]),
    ("after=", [AFTER_MESSAGE]),
    ("limit=2&after=17", [AFTER_MESSAGE]),
    ("limit=2&after=" + "A" * 48, [AFTER_MESSAGE]),
    ("limit=2&after=" + "A" * 4000, [AFTER_MESSAGE]),
    ("limit=x&after=%00", [LIMIT_MESSAGE, AFTER_MESSAGE]),
])
def test_bad_limits_and_cursors_are_400_with_a_clear_message(api, listing, query, messages):
    url, _ = listing
    rejected(api.get(f"{url}?{query}"), *messages)


def test_an_edited_cursor_is_refused(api, listing):
    url, add = listing
    for n in range(3):
        add(f"n{n}")
    cursor = api.get(f"{url}?limit=1").payload["next"]
    for position in (0, 20, 47):
        changed = "B" if cursor[position] != "B" else "C"
        edited = cursor[:position] + changed + cursor[position + 1:]
        rejected(api.get(f"{url}?limit=1&after={edited}"), AFTER_MESSAGE)
    assert api.get(f"{url}?limit=1&after={cursor}").status_code == 200


def test_a_cursor_is_useless_on_another_list_and_to_another_user(api, other, profile_ready):
    """Cursors are bound to (kind, caller, safe): mallory's cursor gives dev nothing, and
    dev's cursor gives mallory nothing of dev's, even for lists with the same names."""
    for user in (api, other):
        if user is other:
            assert other.put("/api/profile", json={"name": "M"}).status_code == 200
        for safe in ("s1", "s2"):
            assert written(user.post("/api/safe", json={"name": safe}))
            for n in range(3):
                assert written(user.post(f"/api/safe/{safe}/coin",
                                         json={"name": f"{user.sub}{n}", "data": "secret"}))
                assert written(user.post(f"/api/safe/{safe}/key",
                                         json={"name": f"{user.sub}{n}", "data": "secret"}))
    dev_coins = api.get("/api/safe/s1/coin?limit=1").payload["next"]
    mallory_coins = other.get("/api/safe/s1/coin?limit=1").payload["next"]
    # Another user's cursor on the caller's own list of the same name: 400, not a page.
    rejected(other.get(f"/api/safe/s1/coin?limit=1&after={dev_coins}"), AFTER_MESSAGE)
    rejected(api.get(f"/api/safe/s1/coin?limit=1&after={mallory_coins}"), AFTER_MESSAGE)
    # The caller's own cursor on another safe, another kind, or the safes list: 400.
    rejected(api.get(f"/api/safe/s2/coin?limit=1&after={dev_coins}"), AFTER_MESSAGE)
    rejected(api.get(f"/api/safe/s1/key?limit=1&after={dev_coins}"), AFTER_MESSAGE)
    rejected(api.get(f"/api/safe?limit=1&after={dev_coins}"), AFTER_MESSAGE)
    dev_safes = api.get("/api/safe?limit=1").payload["next"]
    rejected(other.get(f"/api/safe?limit=1&after={dev_safes}"), AFTER_MESSAGE)
    # ...and whatever mallory pages through holds only mallory's entries.
    seen = [name for page in walk(other, "/api/safe/s1/coin", 1) for name in page]
    assert seen == ["mallory0", "mallory1", "mallory2"]


def test_a_cursor_hides_the_row_id(api, listing):
    url, add = listing
    for n in range(2):
        add(f"n{n}")
    first, second = (api.get(f"{url}?limit=1").payload["next"] for _ in range(2))
    assert first != second  # a fresh nonce each time: equal ids do not look equal
    assert len(first) == 48 and first.isascii()


def test_a_missing_profile_or_safe_comes_before_a_bad_parameter(client, idp, api):
    nobody = Api(client, idp, "nobody")
    answer = nobody.get("/api/safe?limit=0")
    assert answer.status_code == 403 and answer.get_json()["error"] == "profile not set"
    assert nobody.get("/api/safe/s1/coin?limit=5").status_code == 403
    assert api.put("/api/profile", json={"name": "Dev"}).status_code == 200
    assert api.get("/api/safe/none/coin?limit=0").status_code == 404
    assert api.get("/api/safe/none/key?limit=5").status_code == 404
    assert api.get("/api/safe?limit=5").payload == {"list": []}


def test_pages_stay_exact_while_another_client_inserts_and_deletes(app, idp, api, listing):
    """Keyset pagination: entries there for the whole walk appear exactly once, in order,
    whatever another client adds or removes meanwhile, before or after the cursor. A
    thread writes all along; between pages, originals already listed and not yet
    reached are deleted too, so every page is read after a change."""
    url, add = listing
    for n in range(25):
        assert written(add(f"n{n:02d}"))
    originals = names(api.get(url))
    doomed = originals[5:25:4]  # some listed before they go, some never reached
    writer = Api(app.test_client(), idp, "dev")
    stop, problems, made = threading.Event(), [], []

    def body(name: str) -> dict:
        return {"name": name} if url == "/api/safe" else {"name": name, "data": "y"}

    def churn() -> None:
        try:
            n = 0
            while not stop.is_set() and n < 2000:
                assert written(writer.post(url, json=body(f"z{n}")))
                if n % 2:
                    assert writer.delete(f"{url}/z{n - 1}").status_code == 200
                n += 1
            made.append(n)
        except AssertionError as exc:  # surfaced in the main thread
            problems.append(exc)

    def between_pages() -> None:
        if doomed:
            assert writer.delete(f"{url}/{doomed.pop()}").status_code == 200

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        seen = [name for page in walk(api, url, 3, between_pages) for name in page]
    finally:
        stop.set()
        thread.join()
    assert not problems, problems
    assert made and made[0] > 0
    assert len(seen) == len(set(seen)), "an entry was given twice"
    gone = set(originals[5:25:4])
    kept = [name for name in originals if name not in gone]
    assert [name for name in seen if name in set(kept)] == kept
