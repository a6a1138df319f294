"""app.redact: passwords in URIs and registered secrets never reach users or logs."""

from __future__ import annotations

import pytest

from app.redact import add_secret, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mongodb://admin:s3cret@db:27017/avalon", "mongodb://admin:***@db:27017/avalon"),
        ("mongodb+srv://u:p%40ss@cluster.example.net", "mongodb+srv://u:***@cluster.example.net"),
        ("sftp://bob:p@ss@host/x", "sftp://bob:***@host/x"),  # unencoded '@' in the password
        ("connect 'mongodb://a:b@h' failed", "connect 'mongodb://a:***@h' failed"),
        ("mongodb://db.example.com:27017/avalon", "mongodb://db.example.com:27017/avalon"),
        ("mongodb://user@db/avalon", "mongodb://user@db/avalon"),
        ("https://h/x?token=abc&x=1", "https://h/x?token=***&x=1"),
        ("no secrets here", "no secrets here"),
    ],
)
def test_uri_passwords_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_registered_secrets_are_masked_everywhere() -> None:
    add_secret("correct-horse")
    assert redact("login failed for correct-horse!") == "login failed for ***!"


def test_secrets_given_per_call_and_longest_first() -> None:
    text = redact("abcd and abcdef", secrets=["abcd", "abcdef"])
    assert text == "*** and ***"


def test_very_short_values_are_not_treated_as_secrets() -> None:
    add_secret("ab")
    add_secret(None)
    assert redact("ab cd") == "ab cd"


def test_redact_accepts_any_object() -> None:
    assert redact(ValueError("mongodb://u:pw@h")) == "mongodb://u:***@h"
