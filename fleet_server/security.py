"""Passwords and API tokens.

Passwords are hashed with Argon2 (pwdlib). API tokens are opaque random
strings handed out once; the database keeps only HMAC-SHA256(secret_key,
token), so a copy of the database alone does not let anyone call the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

_hasher = PasswordHash((Argon2Hasher(),))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def verify_password(password: str, password_hash: str | None) -> bool:
    """Constant work whether or not the user exists (no user-enumeration by timing)."""
    if password_hash is None:
        _hasher.verify(password, _dummy_hash())
        return False
    try:
        return _hasher.verify(password, password_hash)
    except Exception:  # an unreadable stored hash never authenticates
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), token.encode(), hashlib.sha256).hexdigest()
