"""Settings files the CLI, ``serve`` and the Functions app read beneath the environment.

Order (first wins): the environment, then ``.env``, then ``local.settings.json``'s
``Values`` — both files in the working directory, or in ``RACE_SETTINGS_DIR`` when set.
A malformed file is one :class:`SettingsFileError` naming the file and the line and column
where reading stopped. Values are never logged; :meth:`SettingsSources.origins` says only
where each setting came from.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

DOTENV = ".env"
LOCAL_SETTINGS = "local.settings.json"
DIR_VARIABLE = "RACE_SETTINGS_DIR"
ENVIRONMENT = "environment"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class SettingsFileError(ValueError):
    """A settings file that cannot be read; the message names the file and the place."""


@dataclass(frozen=True)
class SettingsFile:
    path: Path
    values: dict[str, str]


@dataclass(frozen=True)
class SettingsSources:
    """The environment and the files beneath it, in order of precedence."""

    environ: Mapping[str, str]
    files: list[SettingsFile] = field(default_factory=list)

    def origin(self, name: str) -> str | None:
        """Where ``name`` (any case) is set: ``environment`` or a file path; None if unset."""
        wanted = name.lower()
        if any(k.lower() == wanted and v != "" for k, v in self.environ.items()):
            return ENVIRONMENT
        for source in self.files:
            if any(k.lower() == wanted and v != "" for k, v in source.values.items()):
                return str(source.path)
        return None

    def file_values(self) -> dict[str, str]:
        """Settings from the files that the environment does not set (an empty environment
        variable counts as unset), by the files' spelling; ``.env`` wins over the JSON."""
        set_in_env = {k.lower() for k, v in self.environ.items() if v != ""}
        merged: dict[str, str] = {}
        seen: set[str] = set()
        for source in self.files:
            for key, value in source.values.items():
                lowered = key.lower()
                if lowered in set_in_env or lowered in seen or value == "":
                    continue
                seen.add(lowered)
                merged[key] = value
        return merged

    def merged(self) -> dict[str, str]:
        """Environment plus file values beneath it: what agents look settings up in."""
        return {**self.file_values(), **self.environ}

    def origins(self, names: Iterable[str]) -> dict[str, str]:
        """``{name: origin}`` for each of ``names`` that is set somewhere."""
        found: dict[str, str] = {}
        for name in names:
            origin = self.origin(name)
            if origin is not None:
                found[name] = origin
        return found


def settings_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    configured = environ.get(DIR_VARIABLE, "").strip()
    return Path(configured) if configured else Path.cwd()


def read_sources(
    directory: Path | None = None, environ: Mapping[str, str] | None = None
) -> SettingsSources:
    environ = dict(os.environ if environ is None else environ)
    directory = settings_dir(environ) if directory is None else directory
    files: list[SettingsFile] = []
    dotenv = directory / DOTENV
    if dotenv.is_file():
        files.append(SettingsFile(dotenv, read_dotenv(dotenv)))
    local = directory / LOCAL_SETTINGS
    if local.is_file():
        files.append(SettingsFile(local, read_local_settings(local)))
    return SettingsSources(environ=environ, files=files)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SettingsFileError(
            f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise SettingsFileError(f"{path}: cannot be read: {exc.strerror}") from None


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (``export`` optional; ``#`` comments; values optionally in single
    or double quotes, on one line). Anything else is an error naming the line."""
    values: dict[str, str] = {}
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        where = f"{path}, line {number}"
        if not sep:
            # The line is not shown: it may hold a secret.
            raise SettingsFileError(f"{where}: expected KEY=value (this line has no '=')")
        if not _KEY.fullmatch(key):
            raise SettingsFileError(
                f"{where}: {_shown(key)} is not a setting name (letters, digits and _)"
            )
        values[key] = _dotenv_value(rest.strip(), where)
    return values


def _shown(text: str) -> str:
    """A name shown in an error: short, and never what follows an ``=`` (a value)."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _dotenv_value(text: str, where: str) -> str:
    if text[:1] in ("'", '"'):
        quote = text[0]
        end = text.find(quote, 1)
        if end < 0:
            raise SettingsFileError(f"{where}: the value's {quote} quote is never closed")
        tail = text[end + 1 :].strip()
        if tail and not tail.startswith("#"):
            raise SettingsFileError(f"{where}: unexpected text after the quoted value")
        value = text[1:end]
        if quote == '"':
            value = value.replace("\\n", "\n").replace('\\"', '"')
        return value
    # Unquoted: an inline comment starts at " #".
    hash_at = text.find(" #")
    return (text[:hash_at] if hash_at >= 0 else text).strip()


def read_local_settings(path: Path) -> dict[str, str]:
    """The ``Values`` object of a Functions ``local.settings.json`` (strings; numbers and
    booleans are taken as their text, as the host does)."""
    text = _read_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsFileError(
            f"{path}, line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}"
        ) from None
    if not isinstance(document, dict):
        raise SettingsFileError(f'{path}: must be a JSON object with a "Values" object')
    if document.get("IsEncrypted") is True:
        raise SettingsFileError(
            f"{path}: its values are encrypted (IsEncrypted: true): run `func settings "
            "decrypt` or set them in the environment"
        )
    values = document.get("Values", {})
    if not isinstance(values, dict):
        raise SettingsFileError(f'{path}: "Values" must be a JSON object of settings')
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[key] = str(value)
        elif value is None:
            continue
        else:
            raise SettingsFileError(
                f'{path}: "Values"."{key}" must be a string, not a JSON '
                f"{'object' if isinstance(value, dict) else 'array'}"
            )
    return out
