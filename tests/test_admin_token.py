"""The admin token guards everything, so a weak one is refused at start-up with a message
that says why (and never repeats the token): too short, or holding spaces, control or
non-ASCII characters (a secret file written with a trailing newline, say)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import free_port

from common import config
from common.tokens import (
    MIN_ADMIN_TOKEN_LENGTH,
    TokenError,
    TokenStore,
    check_admin_token,
    load_or_create_admin_token,
)
from pipit.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
STRONG = "0123456789abcdef"  # exactly the minimum
WEAK = [
    ("1", "at least 16 characters"),
    ("letmein", "at least 16 characters"),
    ("x" * (MIN_ADMIN_TOKEN_LENGTH - 1), "at least 16 characters"),
    ("correct horse battery staple", "without spaces"),
    ("0123456789abcdef\n", "without spaces"),
    ("\t0123456789abcdef", "without spaces"),
    ("0123456789abcdef\x00", "without spaces"),
    ("0123456789abcdef\x7f", "without spaces"),
    ("ｐａｓｓｗｏｒｄ１２３４５６７８", "printable ASCII"),
]


@pytest.mark.parametrize(("token", "reason"), WEAK, ids=[repr(t) for t, _ in WEAK])
def test_weak_tokens_are_refused_from_the_environment_and_the_flag(token: str, reason: str):
    for args, environ in (
        (None, {"PIPIT_ADMIN_TOKEN": token}),
        (build_parser().parse_args(["up", "--admin-token", token]), {}),
    ):
        with pytest.raises(SystemExit) as caught:
            config.load(args, environ=environ)
        message = str(caught.value)
        assert "--admin-token / PIPIT_ADMIN_TOKEN" in message
        assert reason in message
        if len(token) > 2:
            assert token.strip() not in message  # a secret is never echoed


def test_strong_and_empty_tokens_are_accepted():
    assert config.load(environ={"PIPIT_ADMIN_TOKEN": STRONG}).admin_token == STRONG
    assert config.load(environ={"PIPIT_ADMIN_TOKEN": "p." + "A-z_9" * 8}).admin_token
    assert config.load(environ={"PIPIT_ADMIN_TOKEN": ""}).admin_token == ""  # generate one


def test_the_services_refuse_a_weak_token_however_it_arrives(tmp_path: Path):
    with pytest.raises(TokenError):
        TokenStore("short", None)
    kept = tmp_path / "admin_token"
    kept.write_text("short\n")
    with pytest.raises(TokenError) as caught:
        load_or_create_admin_token("", tmp_path)
    assert str(kept) in str(caught.value)
    assert "delete the file" in str(caught.value)
    generated, created = load_or_create_admin_token("", tmp_path / "fresh")
    assert created and check_admin_token(generated) == generated


def _pipit(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipit.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ports() -> dict[str, str]:
    return {
        "PIPIT_INGEST_PORT": str(free_port()),
        "PIPIT_QUERY_PORT": str(free_port()),
        "PIPIT_GATEWAY_PORT": str(free_port()),
        "PIPIT_METRICS_PORT": "0",
    }


@pytest.mark.e2e
def test_pipit_up_refuses_to_start_with_a_weak_token(tmp_path: Path):
    env = {**_ports(), "PIPIT_DATA_DIR": str(tmp_path / "data"), "PIPIT_ADMIN_TOKEN": "1"}
    done = _pipit(["up"], env)
    assert done.returncode != 0
    assert "listening" not in done.stdout
    assert "the admin token must be at least 16 characters, this one has 1" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was opened


@pytest.mark.e2e
def test_pipit_query_refuses_a_weak_flag_and_a_weak_kept_token(tmp_path: Path):
    env = {**_ports(), "PIPIT_DATA_DIR": str(tmp_path), "PIPIT_ADMIN_TOKEN": ""}
    done = _pipit(["query", "--admin-token", "hunter2"], env)
    assert done.returncode != 0 and "at least 16 characters" in done.stderr
    assert "hunter2" not in done.stderr
    (tmp_path / "admin_token").write_text("hunter2\n")
    done = _pipit(["query"], env)
    assert done.returncode != 0 and "listening" not in done.stdout
    assert f"{tmp_path / 'admin_token'}: the admin token must be" in done.stderr


def test_the_example_secret_is_long_enough():
    example = (ROOT / "k8s/base/secrets/admin-token.example").read_text()
    assert check_admin_token(example) == example
