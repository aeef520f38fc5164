"""Database URLs with their password hidden, wherever it is written.

A password can sit in the userinfo (``postgresql://user:pw@host/db``), in a query
parameter (``?password=pw``), or inside an ODBC connection string
(``?odbc_connect=DRIVER=…;PWD=pw;``, URL-encoded or not). :func:`safe_url` hides it in
every one of those places, even in a URL SQLAlchemy cannot parse; :func:`url_secrets` lists
each form the password takes (raw, URL-encoded, decoded) so that error text from a driver
can be scrubbed as well (:func:`scrub`).
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

MASK = "***"

_SECRET_KEYS = frozenset(
    {"password", "pwd", "pass", "passwd", "secret", "token", "access_token", "sslpassword"}
)
"""Query parameters (and ODBC keywords) whose value is a secret (compared lowercased)."""

_ODBC_KEYS = frozenset({"odbc_connect", "connection_string", "dsn", "conn_str"})
"""Query parameters holding a whole ``KEY=value;`` connection string."""

# ``KEY=value`` inside a connection string: the value runs to ``;`` unless braced (ODBC).
_ODBC_PAIR = re.compile(
    r"(?P<key>(?:pwd|password|pass|passwd|secret|token|sslpassword))(?P<eq>\s*=\s*)"
    r"(?P<value>\{(?:[^}]|\}\})*\}?|[^;&]*)",
    re.IGNORECASE,
)
# The same, URL-encoded (``PWD%3Dsecret%3B``).
_ODBC_PAIR_ENCODED = re.compile(
    r"(?P<key>(?:pwd|password|pass|passwd|secret|token|sslpassword))(?P<eq>%3D)"
    r"(?P<value>(?:(?!%3B)[^&;])*)",
    re.IGNORECASE,
)
# ``scheme://user:password@`` in raw text (also when the rest does not parse).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][\w+.\-]*://[^:/@\s]*:)(?P<value>[^@\s]*)(?=@)")


def _mask_connection_string(value: str) -> str:
    value = _ODBC_PAIR.sub(lambda m: f"{m['key']}{m['eq']}{MASK}", value)
    return _ODBC_PAIR_ENCODED.sub(lambda m: f"{m['key']}{m['eq']}{MASK}", value)


def mask_text(text: str) -> str:
    """``text`` with anything that looks like a password in a URL or a connection string
    masked: userinfo passwords, ``password=`` / ``PWD=`` pairs (raw or URL-encoded)."""
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}", text)
    text = re.sub(
        r"(?P<key>[?&;](?:password|pwd|pass|passwd|secret|token|access_token|sslpassword)=)"
        r"(?P<value>[^&;\s]*)",
        lambda m: f"{m['key']}{MASK}",
        text,
        flags=re.IGNORECASE,
    )
    return _mask_connection_string(text)


def _parse(url: str | URL) -> URL | None:
    if isinstance(url, URL):
        return url
    try:
        return make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return None


def _misparsed(parsed: URL) -> bool:
    """A URL whose user or host holds ``=``, ``;`` or braces: a raw connection string that
    an ``@`` in it split at the wrong place; shown as masked text, not by its parts."""
    parts = (parsed.username or "", parsed.host or "")
    return any(mark in part for part in parts for mark in "=;{}")


def safe_url(url: str | URL) -> str:
    """The URL for logs and messages, with the password hidden in any position (userinfo,
    ``?password=``, ``odbc_connect=…PWD=…``); a URL that does not parse is masked as text."""
    parsed = _parse(url)
    if parsed is None or _misparsed(parsed):
        return mask_text(str(url))
    query: dict[str, str | tuple[str, ...]] = {}
    for key, value in parsed.query.items():
        values = (value,) if isinstance(value, str) else tuple(value)
        if key.lower() in _SECRET_KEYS:
            masked = tuple(MASK for _ in values)
        else:
            masked = tuple(_mask_connection_string(v) for v in values)
        query[key] = masked[0] if len(masked) == 1 else masked
    hidden = parsed.set(query=query)
    rendered = hidden.render_as_string(hide_password=True)
    # Whatever rendering re-encoded: mask once more as text (belt and braces).
    return mask_text(rendered)


def url_secrets(url: str | URL) -> list[str]:
    """Every form the URL's password takes (raw, URL-encoded, decoded), longest first: to
    scrub from driver error text and logs. Empty when the URL has no password."""
    raw: set[str] = set()
    parsed = _parse(url)
    if parsed is not None:
        if parsed.password:
            raw.add(str(parsed.password))
        for key, value in parsed.query.items():
            values = (value,) if isinstance(value, str) else tuple(value)
            for item in values:
                if key.lower() in _SECRET_KEYS and item:
                    raw.add(item)
                elif key.lower() in _ODBC_KEYS or "=" in item:
                    raw.update(_odbc_passwords(item))
    text = str(url) if not isinstance(url, URL) else ""
    for match in _USERINFO.finditer(text):
        raw.add(match["value"])
    for pattern in (_ODBC_PAIR, _ODBC_PAIR_ENCODED):
        for match in pattern.finditer(text):
            raw.add(match["value"])
    forms: set[str] = set()
    for value in raw:
        for form in (value, value.strip("{}")):
            forms.update(
                {form, unquote(form), unquote_plus(form), quote(form, safe=""), quote_plus(form)}
            )
    return sorted((f for f in forms if len(f) >= 3), key=len, reverse=True)


def _odbc_passwords(value: str) -> set[str]:
    found = set()
    for text in (value, unquote_plus(value)):
        for match in _ODBC_PAIR.finditer(text):
            found.add(match["value"])
    return {f for f in found if f}


def scrub(text: str, url: str | URL) -> str:
    """``text`` with every form of ``url``'s password replaced, and URL-like passwords
    masked (for driver errors and messages that may quote the connection string)."""
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return mask_text(text)
