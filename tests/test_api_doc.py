"""docs/api.md against the OpenAPI document the server serves (issue R, item 13).

Every route of /openapi.json has a ``#### METHOD /path`` section in docs/api.md that
names each status code the document lists for it, and docs/api.md describes no route
the server does not have. When a route is added, the failure says what to write.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS")
ROUTE_HEADING = re.compile(rf"^(#+) ({'|'.join(METHODS)}) (/\S*)\s*$")
HEADING = re.compile(r"^(#+) ")


def documented_routes(text: str) -> dict[tuple[str, str], str]:
    """(METHOD, path) -> the text under its heading, up to the next heading."""
    sections: dict[tuple[str, str], str] = {}
    current: tuple[str, str] | None = None
    lines: list[str] = []
    for line in [*text.splitlines(), "# end"]:
        if HEADING.match(line):
            if current is not None:
                assert current not in sections, f"docs/api.md: two sections for {current}"
                sections[current] = "\n".join(lines)
            found = ROUTE_HEADING.match(line)
            current = (found.group(2), found.group(3)) if found else None
            lines = []
        elif current is not None:
            lines.append(line)
    return sections


def served_routes(document: dict) -> dict[tuple[str, str], list[str]]:
    """(METHOD, path) -> the status codes /openapi.json lists for it."""
    return {(method.upper(), path): sorted(operation["responses"])
            for path, operations in document["paths"].items()
            for method, operation in operations.items()}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory, key_files) -> dict:
    """The document of an app on the embedded layout (SQLite; the routes are the same on
    every backend), fetched the way a client does."""
    from hutch import create_app
    from hutch.settings import load_settings
    from hutch.store import migrate
    from hutch.store.db import DatabaseSettings, create_db_engine
    from tests.helpers import ISSUER

    folder = tmp_path_factory.mktemp("apidoc")
    url = f"sqlite:///{folder / 'hutch.db'}"
    engine = create_db_engine(DatabaseSettings(url=url))
    migrate.upgrade(engine)
    engine.dispose()
    config = folder / "hutch.config"
    config.write_text(f'sign_key = "{key_files["sign"]}"\n[database]\nurl = "{url}"\n'
                      f'[oidc]\nserver_public_jwks = "{key_files["idp"]}"\niss = "{ISSUER}"\n')
    app = create_app(load_settings(config, environ={}))
    try:
        answer = app.test_client().get("/openapi.json")
        assert answer.status_code == 200
        return answer.get_json()
    finally:
        app.extensions["hutch"].db.dispose()


def test_every_served_route_is_documented_with_each_of_its_statuses(openapi):
    documented = documented_routes(API_DOC.read_text(encoding="utf-8"))
    problems = []
    for (method, path), statuses in served_routes(openapi).items():
        section = documented.get((method, path))
        if section is None:
            problems.append(
                f"- {method} {path} is served but docs/api.md has no section for it: add a "
                f"heading line '#### {method} {path}' under the resource it belongs to, then "
                f"say what it does and when it answers each of {', '.join(statuses)}")
            continue
        missing = [code for code in statuses if not re.search(rf"\b{code}\b", section)]
        if missing:
            problems.append(
                f"- docs/api.md '#### {method} {path}' does not mention status "
                f"{', '.join(missing)}, which /openapi.json lists for it: add when it is "
                "answered and with what body (§8 lists the bodies every route can give)")
    assert not problems, "docs/api.md is behind /openapi.json:\n" + "\n".join(problems)


def test_every_documented_route_is_served(openapi):
    served = served_routes(openapi)
    extra = [f"{method} {path}" for method, path in documented_routes(
        API_DOC.read_text(encoding="utf-8")) if (method, path) not in served]
    assert not extra, (f"docs/api.md documents {', '.join(extra)}, which /openapi.json does not "
                       "list: remove the section, fix its METHOD /path to the served one, or "
                       "describe the route in hutch/api/openapi.py (OPERATIONS)")


def test_the_readme_points_at_the_repository_s_own_api_reference():
    readme = (API_DOC.parent.parent / "README.md").read_text(encoding="utf-8")
    assert "docs/api.md" in readme
    for absent in ("HUTCH-API.md", "RUNTIME-INTERFACE.md"):
        assert absent not in readme, f"README.md cites {absent}, which is not in the repository"
