"""pyradiomics parameter files: checked against pyradiomics' own schema, and what radvlsm imposes on top.

pyradiomics' extractor (:class:`radiomics.featureextractor.RadiomicsFeatureExtractor`) is configured by a
parameter file (YAML or JSON). Every file, the built-in ones included, is first checked against
pyradiomics' *own* schema (``radiomics/schemas/paramSchema.yaml`` with ``schemaFuncs.py``, through pykwalify,
exactly as the extractor validates a file it is given); a file that fails gives a :class:`ConfigError` naming the
file and each offending key (``setting.binWidth: Value 'abc' is not of type 'float'``, ``unknown key 'binWidht'
in setting (did you mean 'binWidth'?)``), never a pykwalify traceback. The built-in sets are
``params/default_2d.yaml`` and ``params/default_3d.yaml`` beside this module (:data:`DEFAULT_PARAMS`; their
comments say why each value).

**What radvlsm imposes.** Whatever a parameter file says, 2-D images are extracted with ``force2D: true,
force2Ddimension: 0`` and every mask with ``label: 1`` (radvlsm masks are binary); a file that says otherwise gets
a warning. With IBSI processing (:mod:`radvlsm.fusion.resampling`) the file's resampling is done by radvlsm and
pyradiomics is told ``resampledPixelSpacing: null`` (:func:`build_param_set`).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from radvlsm.errors import ConfigError
from radvlsm.fusion.resampling import Interpolation

__all__ = ["DEFAULT_PARAMS", "ParamSet", "build_param_set", "load_params", "quiet_pykwalify"]

log = logging.getLogger(__name__)

_PARAMS_DIR = Path(__file__).resolve().with_name("params")
#: The built-in pyradiomics parameter files, by dimension.
DEFAULT_PARAMS: Mapping[str, Path] = MappingProxyType(
    {"2d": _PARAMS_DIR / "default_2d.yaml", "3d": _PARAMS_DIR / "default_3d.yaml"}
)

#: Settings radvlsm imposes whatever the parameter file says: 2-D images are one-slice volumes, masks binary.
_FORCED_2D: Mapping[str, Any] = MappingProxyType({"force2D": True, "force2Ddimension": 0})
_FORCED_ALL: Mapping[str, Any] = MappingProxyType({"label": 1})


@dataclass(frozen=True)
class ParamSet:
    """A validated parameter file and what radvlsm imposes on top of it.

    Attributes:
        path: the file.
        params: its content after validation, as plain data (``setting``, ``imageType``, ``featureClass`` …).
        overrides: settings radvlsm passes to the extractor over the file's (``label: 1``; for 2-D also
            ``force2D: true, force2Ddimension: 0``; with IBSI processing ``resampledPixelSpacing: null``, radvlsm
            resampling instead), only those that differ from the file.
        interpolation: with IBSI processing, the file's resampling done by radvlsm (``None``: none, or
            pyradiomics resamples).
    """

    path: Path
    params: Mapping[str, Any]
    overrides: Mapping[str, Any]
    interpolation: Interpolation | None = None


@contextlib.contextmanager
def quiet_pykwalify() -> Iterator[None]:
    """pykwalify logs ``validation.valid`` at INFO and each error at ERROR before raising: we report instead."""
    lg = logging.getLogger("pykwalify")
    old = lg.level
    lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            # pykwalify loads pyradiomics' schemaFuncs.py with the deprecated importlib load_module().
            warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
            yield
    finally:
        lg.setLevel(old)


@cache
def _schema() -> dict[str, Any]:
    import radiomics

    schema_file, _ = radiomics.getParameterValidationFiles()
    with Path(schema_file).open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _schema_keys(path: str) -> list[str]:
    """The keys pyradiomics' schema allows at a pykwalify path such as ``/setting`` or ``/imageType/LoG``."""
    node: Any = _schema()
    for part in (p for p in path.split("/") if p):
        mapping = node.get("mapping", {}) if isinstance(node, dict) else {}
        nxt = mapping.get(part)
        if nxt is None:
            nxt = next((v for k, v in mapping.items() if str(k).startswith("regex;")), None)
        if nxt is None:
            return []
        node = nxt
    mapping = node.get("mapping", {}) if isinstance(node, dict) else {}
    return [k for k in mapping if not str(k).startswith("regex;")]


_UNDEFINED_KEY = re.compile(r"^Key '(?P<key>.*)' was not defined\. Path: '(?P<path>.*)'$")
_WITH_PATH = re.compile(r"^(?P<msg>.*?)\.? ?(?:Value )?[Pp]ath: '(?P<path>[^']*)'(?P<rest>.*)$")


def _dotted(path: str) -> str:
    return ".".join(p for p in path.split("/") if p)


def _explain_schema_error(line: str) -> str:
    """One pykwalify error line → a sentence naming the key (``setting.binWidth: …``)."""
    line = line.strip().rstrip(".")
    m = _UNDEFINED_KEY.match(line)
    if m:
        key, where = m["key"], m["path"]
        text = f"unknown key '{key}' in {_dotted(where) or 'the top level'}"
        close = difflib.get_close_matches(key, _schema_keys(where), n=1, cutoff=0.6)
        return f"{text} (did you mean '{close[0]}'?)" if close else text
    m = _WITH_PATH.match(line)
    if m:
        return f"{_dotted(m['path']) or 'top level'}: {m['msg']}{m['rest'].rstrip('.')}"
    return line


def load_params(path: str | Path) -> dict[str, Any]:
    """Read a pyradiomics parameter file and check it against pyradiomics' own schema.

    The check is pyradiomics' (pykwalify with ``radiomics/schemas/paramSchema.yaml`` and ``schemaFuncs.py``),
    run the way :class:`~radiomics.featureextractor.RadiomicsFeatureExtractor` runs it on a file path.

    Returns:
        The file's content as plain data (``dict`` / ``list`` / scalars).

    Raises:
        ConfigError: naming the file and every problem found: missing or unreadable file, YAML/JSON syntax (with
            the line), unknown keys (with the closest valid one), values of the wrong type or range, unknown
            image types, feature classes or features.
    """
    import pykwalify.core
    import pykwalify.errors
    import radiomics
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: pyradiomics parameter file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file (a pyradiomics parameter file, YAML or JSON, is expected)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the parameter file: {exc}") from exc
    if not any(ln.strip() and not ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise ConfigError(
            f"{path}: the parameter file is empty (expected a mapping with 'setting', 'imageType' and/or "
            "'featureClass')"
        )
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"{path}: a pyradiomics parameter file must be named .yaml, .yml or .json")
    schema_file, schema_funcs = radiomics.getParameterValidationFiles()
    with quiet_pykwalify():
        try:
            core = pykwalify.core.Core(source_file=str(path), schema_files=[schema_file], extensions=[schema_funcs])
            data = core.validate(raise_exception=True)
        except pykwalify.errors.SchemaError as exc:
            lines = [ln.strip()[2:] for ln in str(exc.msg).splitlines() if ln.strip().startswith("- ")]
            problems = [_explain_schema_error(ln) for ln in lines] or [str(exc.msg)]
            raise ConfigError(f"{path}: invalid pyradiomics parameters: {'; '.join(problems)}") from exc
        except pykwalify.errors.PyKwalifyException as exc:
            raise ConfigError(f"{path}: not a usable pyradiomics parameter file: {exc.msg}") from exc
        except (YAMLError, json.JSONDecodeError) as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"{path}: cannot parse the parameter file: {detail}") from exc
        except (ValueError, TypeError) as exc:  # pyradiomics' schemaFuncs (image types, feature classes …)
            raise ConfigError(f"{path}: invalid pyradiomics parameters: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'setting', 'imageType' and/or 'featureClass'")
    return json.loads(json.dumps(data))


def build_param_set(path: Path, dimension: Literal["2d", "3d"], ibsi: bool = False) -> ParamSet:
    """Validate ``path`` (:func:`load_params`) and work out radvlsm's overrides for cases of ``dimension``; with
    ``ibsi``, also the interpolation radvlsm does in pyradiomics' place (``ConfigError`` when it has none)."""
    params = load_params(path)
    settings = params.get("setting") or {}
    forced = dict(_FORCED_ALL) | (dict(_FORCED_2D) if dimension == "2d" else {})
    defaults = {"force2D": False, "force2Ddimension": 0, "label": 1}  # pyradiomics' defaults
    overrides = {k: v for k, v in forced.items() if settings.get(k, defaults[k]) != v}
    for key, value in overrides.items():
        if key in settings:
            log.warning(
                "%s: setting %s: %r ignored, radvlsm uses %s: %r for %s", path, key, settings[key], key, value,
                "2-D images" if key.startswith("force2D") else "its binary masks",
            )
    interpolation = Interpolation.from_settings(settings, str(path)) if ibsi else None
    if interpolation is not None:
        overrides["resampledPixelSpacing"] = None
    return ParamSet(
        path=path, params=MappingProxyType(params), overrides=MappingProxyType(overrides),
        interpolation=interpolation,
    )
