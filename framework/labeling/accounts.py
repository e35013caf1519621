"""Secrets of the labeling app: account tokens (random, stored only as their SHA-256, which is
enough for 192-bit random tokens), and the anti-forgery token each form carries, derived from the
account and the store's own secret so that another site cannot know it."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def form_token(store_secret: str, account: str) -> str:
    return hmac.new(store_secret.encode(), f"form:{account}".encode(), "sha256").hexdigest()


def form_token_ok(store_secret: str, account: str, given: str) -> bool:
    return hmac.compare_digest(form_token(store_secret, account), given or "")


def check_name(name: str) -> str:
    from framework.errors import ConfigError

    if not NAME.match(name or ""):
        raise ConfigError(f"labeler name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
                          f"starting with a letter or digit.")
    return name
