"""Reading the JSON configs that travel with weights (segmenter, localizer, aggregation settings): one parse,
one check of the keys against the config dataclass, the same messages everywhere."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from radvlsm.errors import ConfigError


def read_json_object(text: str, source: Path | None, what: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object; :class:`ConfigError` naming ``source`` when it is not valid JSON or
    not an object (``what``: "a segmenter config", "aggregation settings" …)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {what} must be a JSON object")
    return raw


def check_keys(raw: dict[str, Any], cls: type, source: Path | None, what: str,
               version: int | None = None) -> dict[str, Any]:
    """``raw`` with JSON lists turned into tuples, after checking that every key is a field of the dataclass
    ``cls`` (:class:`ConfigError` "unknown <what> keys") and, with ``version``, that ``raw``'s ``version`` is
    not newer than it."""
    unknown = sorted(set(raw) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"{source}: unknown {what} keys {unknown}")
    if version is not None and raw.get("version", version) > version:
        raise ConfigError(f"{source}: config version {raw['version']} is newer than this radvlsm supports")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
