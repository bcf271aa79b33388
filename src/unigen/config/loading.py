"""Loading configurations: YAML files, dotted overrides, method presets, fingerprints and commented YAML.

Precedence, lowest first: the dataclass defaults (:mod:`unigen.config.schema`), the ``run.method`` preset
and its ablations (:mod:`unigen.config.presets`), the YAML file, then ``--set`` overrides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from unigen.config.presets import preset_overrides
from unigen.config.schema import RunConfig, UniGenConfig
from unigen.errors import ConfigError


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) for YAML/JSON."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _scalar(value: Any, hint: Any, name: str) -> Any:
    """Check a YAML scalar against ``bool``/``int``/``float``/``str``."""
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is str and isinstance(value, str):
        return value
    if hint in (bool, int, float, str):
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[hint]
        raise ConfigError(f"{name} must be {kind}; got {value!r}")
    return value


def _number(value: Any, kind: type, name: str) -> Any:
    """One item of a list of numbers (``--set`` gives ``"0.5,0.5"``, so items may be strings)."""
    if isinstance(value, str):
        try:
            value = int(value) if kind is int else float(value)
        except ValueError:
            pass
    return _scalar(value, kind, f"{name} item")


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Convert a YAML value to the field's annotated type, or raise ConfigError."""
    hint = annotation
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping")
        return from_dict(hint, value, prefix=f"{name}.")
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        elif item in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # generate.length_shares=1
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list")
        if not all(isinstance(v, (str, int, float)) for v in value):
            raise ConfigError(f"{name} must be a list of names or numbers")
        if item in (int, float):
            return tuple(_number(v, item, name) for v in value)
        return tuple(str(v) for v in value)
    return _scalar(value, hint, name)


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build ``cls`` from a (partial) nested dict; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(prefix + k for k in unknown)}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {key} is not a section")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"relabel.temperature=0.1"`` -> ``("relabel.temperature", 0.1)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"override {text[:80]!r}: the value is not valid YAML "
                          f"({getattr(exc, 'problem', None) or type(exc).__name__})") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> UniGenConfig:
    """Load a YAML config (missing keys take defaults) and apply dotted overrides.

    Precedence: defaults < the ``run.method`` preset (and its ablations) < the file < ``overrides``.
    """
    data: dict[str, Any] = {} if path is None else read_yaml(path)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
    run = from_dict(RunConfig, data.get("run") or {}, prefix="run.")
    preset: dict[str, Any] = {}
    for key, value in preset_overrides(run.method, run.domain, run.ablations).items():
        _set_dotted(preset, key, value)
    return from_dict(UniGenConfig, _merge(preset, data))


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file whose top level is a mapping; every problem is a :class:`ConfigError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a {what}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        raise ConfigError(f"{where}: not valid YAML ({reason})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return loaded


def fingerprint_dict(cfg: Any) -> dict[str, Any]:
    """The output-affecting subset of a (nested) config as a plain dict."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        mode = f.metadata.get("fingerprint", True)
        value = getattr(cfg, f.name)
        if not mode or (mode == "unless_default" and value == f.metadata.get("legacy", f.default)):
            continue
        out[f.name] = fingerprint_dict(value) if dataclasses.is_dataclass(value) else value
    return json.loads(json.dumps(out))


def fingerprint(*parts: Any) -> str:
    """Stable 12-hex-digit hash of configs (their output-affecting fields) and plain values."""
    payload = [fingerprint_dict(p) if dataclasses.is_dataclass(p) else p for p in parts]
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def dump_yaml(cfg: Any, indent: int = 0) -> str:
    """YAML of a config with each setting's help as a trailing comment (round-trips through load)."""
    lines: list[str] = []
    pad = "  " * indent
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip().splitlines()[0]
            lines.append(f"{pad}{f.name}:  # {doc}")
            lines.append(dump_yaml(value, indent + 1))
            continue
        if isinstance(value, str) and "\n" in value:
            text = json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar
        else:
            plain = list(value) if isinstance(value, tuple) else value
            text = yaml.safe_dump(plain, default_flow_style=True, width=10_000).strip()
            text = text.removesuffix("...").strip()
        lines.append(f"{pad}{f.name}: {text}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)
