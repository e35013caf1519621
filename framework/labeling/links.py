"""The links the labeling app's accounts sign in with."""

from urllib.parse import quote


def login_link(host: str, port: int, token: str) -> str:
    return f"http://{host}:{port}/login?token={quote(token)}"
