"""The Docker image's parts that can be checked without a Docker engine (issue R, item 14):
the entrypoint script, run with a stand-in ``hutch``, and the pinned dependencies that
both the image and CI install."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
FAKE_HUTCH = """#!/bin/sh
echo "$*" >> "$HUTCH_CALLS"
[ "${1:-}" = init ] && exit "${FAKE_INIT_STATUS:-0}"
exit 0
"""


def run_entrypoint(tmp_path: Path, *args: str, **env: str) -> tuple[int, list[str]]:
    """Run the entrypoint with a fake ``hutch`` that records each call's arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "hutch"
    fake.write_text(FAKE_HUTCH)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    calls.unlink(missing_ok=True)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
    environ.update(PATH=f"{bin_dir}:{environ['PATH']}", HUTCH_CALLS=str(calls), **env)
    result = subprocess.run(["/bin/sh", str(ENTRYPOINT), *args], cwd=work, env=environ,
                            capture_output=True, text=True, timeout=30, check=False)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return result.returncode, lines


@pytest.mark.parametrize("config", [["--config", "/etc/hutch/hutch.config"],
                                    ["--config=/etc/hutch/hutch.config"]])
def test_the_config_given_to_the_container_reaches_init_and_serve(tmp_path, config):
    status, calls = run_entrypoint(tmp_path, *config, "--port", "8080")
    assert status == 0
    assert calls == ["init --config /etc/hutch/hutch.config",
                     shlex.join(["serve", *config, "--port", "8080"])]


def test_an_explicit_serve_command_is_the_same_as_none(tmp_path):
    _, calls = run_entrypoint(tmp_path, "serve", "--config", "x.config")
    assert calls == ["init --config x.config", "serve --config x.config"]


def test_a_config_from_the_environment_is_initialised_too(tmp_path):
    _, calls = run_entrypoint(tmp_path, "--workers", "2", HUTCH_CONFIG="/etc/hutch.config")
    assert calls == ["init", "serve --workers 2"]


def test_the_embedded_default_is_prepared_by_serve_alone(tmp_path):
    """serve refuses to start empty after a lost database; init would create one."""
    _, calls = run_entrypoint(tmp_path)
    assert calls == ["serve"]


def test_a_failed_init_does_not_serve(tmp_path):
    status, calls = run_entrypoint(tmp_path, "--config", "bad.config", FAKE_INIT_STATUS="2")
    assert status == 2
    assert calls == ["init --config bad.config"]


@pytest.mark.parametrize("command", [["token", "--sub", "alice"], ["keys", "generate"],
                                     ["db", "upgrade", "--config", "x"], ["init"]])
def test_other_hutch_commands_run_as_given(tmp_path, command):
    _, calls = run_entrypoint(tmp_path, *command)
    assert calls == [shlex.join(command)]


def test_the_real_hutch_initialises_the_config_it_is_given(tmp_path):
    """With the real command: init creates the configured signing key and database, and
    serve reads the same file (it stops, exit 2, on the identity provider's key file that
    this config names but nobody wrote; init does not read it)."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "hutch").exists():
        pytest.skip("the hutch console script is not installed beside this Python")
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "hutch.config"
    config.write_text('sign_key = "sign.jwks"\n[database]\n'
                      f'url = "sqlite:///{folder}/hutch.db"\n[oidc]\n'
                      'server_public_jwks = "idp.jwks"\niss = "https://idp.example/"\n')
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
    environ["PATH"] = f"{bin_dir}:{environ['PATH']}"
    result = subprocess.run(["/bin/sh", str(ENTRYPOINT), "--config", str(config)], cwd=tmp_path,
                            env=environ, capture_output=True, text=True, timeout=60,
                            check=False)
    assert (folder / "sign.jwks").exists() and (folder / "hutch.db").exists(), result.stderr
    assert not (tmp_path / "hutch-instance").exists()  # not the embedded default
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"oidc.server_public_jwks: cannot read {folder / 'idp.jwks'}" in result.stderr


# Pinned dependencies ----------------------------------------------------------------------


def constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and not re.search(r"[<>=!~;, ]", version), \
                f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = version
    return pins


def declared() -> list[Requirement]:
    """setup.cfg's install_requires and every extra (test, redis)."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    texts = [setup["options"]["install_requires"]]
    texts += [setup["options.extras_require"][extra] for extra in setup["options.extras_require"]]
    return [Requirement(line.strip()) for text in texts for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_every_declared_dependency_is_pinned_exactly_and_within_its_range():
    pins = constraints()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, (f"constraints.txt does not pin {requirement.name} (setup.cfg); "
                              "regenerate it: pip freeze --exclude-editable > constraints.txt")
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {name}=={pins[name]}, outside setup.cfg's {requirement}"
    assert "psycopg-binary" in pins  # psycopg[binary]'s extra


def test_this_environment_runs_the_pinned_versions():
    """CI installs with -c constraints.txt: what the tests run on is what the image gets."""
    pins = constraints()
    wrong = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and dist.version != pins[name]:
            wrong[name] = (dist.version, pins[name])
    assert not wrong, f"installed (version, pinned): {wrong}; install with -c constraints.txt"


def test_the_image_and_ci_install_from_the_constraints():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml setup.cfg README.md constraints.txt" in dockerfile
    assert "pip install -c constraints.txt ." in dockerfile
    assert "-c constraints.txt" in (ROOT / ".ci" / "run").read_text()
    assert 'ENTRYPOINT ["/bin/sh", "/usr/local/bin/hutch-entrypoint"]' in dockerfile
    assert "COPY docker/entrypoint.sh /usr/local/bin/hutch-entrypoint" in dockerfile


def test_the_image_runs_the_python_ci_tests_on():
    base = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)
    major, minor = sys.version_info[:2]
    assert base == f"python:{major}.{minor}-slim-bookworm", \
        f"the image uses {base}, the tests run on Python {major}.{minor}"
