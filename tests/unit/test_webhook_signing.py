"""The shared signature: a known vector, tampering of any part refused, the layout of the
parts unambiguous, constant-time comparison used, and bad input refused with a clear error."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from webhooks import signing
from webhooks.signing import sign, verify

SECRET = b"whsec_test"
PARTS = ["app_1", "stripe", "cus_123", "1700000000"]


def test_sign_is_hex_hmac_sha256_over_newline_joined_parts() -> None:
    expected = hmac.new(SECRET, b"app_1\nstripe\ncus_123\n1700000000", hashlib.sha256).hexdigest()
    assert sign(SECRET, PARTS) == expected
    assert len(expected) == 64


def test_verify_accepts_the_signature_and_uppercase_hex() -> None:
    signature = sign(SECRET, PARTS)
    assert verify(SECRET, PARTS, signature)
    assert verify(SECRET, PARTS, signature.upper())


@pytest.mark.parametrize("index", range(len(PARTS)))
def test_verify_refuses_any_changed_part(index: int) -> None:
    signature = sign(SECRET, PARTS)
    changed = list(PARTS)
    changed[index] += "x"
    assert not verify(SECRET, changed, signature)


def test_verify_refuses_another_secret_and_garbage() -> None:
    signature = sign(SECRET, PARTS)
    assert not verify(b"other", PARTS, signature)
    assert not verify(SECRET, PARTS, "")
    assert not verify(SECRET, PARTS, "zz" * 32)
    assert not verify(SECRET, PARTS, None)  # type: ignore[arg-type]
    assert not verify(b"", PARTS, signature)


def test_parts_with_a_newline_are_refused_so_layouts_cannot_collide() -> None:
    with pytest.raises(ValueError, match="part 0 contains a newline"):
        sign(SECRET, ["a\nb"])
    assert not verify(SECRET, ["a\nb"], sign(SECRET, ["a", "b"]))


def test_bad_arguments_name_the_problem() -> None:
    with pytest.raises(TypeError, match="not one string"):
        sign(SECRET, "app_1")
    with pytest.raises(TypeError, match="part 1 must be str"):
        sign(SECRET, ["a", 1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="secret is empty"):
        sign(b"", PARTS)


def test_verify_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    assert verify(SECRET, PARTS, sign(SECRET, PARTS))
    assert len(calls) == 1
