"""YAML configs validated against dataclass schemas, with errors that name the bad key."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar, get_args, get_origin

import yaml

from ceod.contracts.errors import CeodError

T = TypeVar("T")

def _config_dir() -> Path:
    """The packaged configs (package data of ceod.configs, through importlib.resources)."""
    from importlib.resources import files
    return Path(str(files("ceod.configs")))


CONFIG_DIR = _config_dir()


class ConfigError(CeodError, ValueError):
    """A config file or override is invalid; the message names the key and what to do."""


def check_choice(key: str, value: Any, known: Iterable[str]) -> None:
    """A value that must name an entry of a registry (a backbone, a loss distance ...)."""
    if value not in known:
        raise ConfigError(f"config key '{key}': {value!r} is not one of {sorted(known)}")


def _check_value(key: str, value: Any, annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_value(key, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"config key '{key}': bad value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        inner = get_args(annotation)
        item_type = inner[0] if inner else Any
        items = [_check_value(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=f"{key}.")
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return value
    return value


def from_dict(schema: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `schema` from `data`, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        import difflib
        close = difflib.get_close_matches(unknown[0], list(fields), n=1, cutoff=0.5)
        hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'{hint} (known keys here: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _check_value(prefix + name, value, hints[name]) for name, value in data.items()}
    try:
        obj = schema(**kwargs)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}': {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict form of a config dataclass (for checkpoints and metrics.json)."""
    return dataclasses.asdict(obj)


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (`train.epochs`) in a nested dict; None values are ignored."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """`--set train.lr=0.001 --set model.backbone=resnet18` -> {dotted key: YAML-parsed value}."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. train.lr=0.001")
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item}: the value is not valid YAML") from None
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` layered on `base`, section by section (lists and values are replaced whole)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        names = sorted(p.stem.partition("-")[2] for p in CONFIG_DIR.glob("*-*.yaml"))
        raise ConfigError(f"config file not found: {path} (pass --config PATH to a YAML file, "
                          f"or a packaged layer's name: {', '.join(names)})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a YAML mapping of keys, got {type(data).__name__}")
    return data


def read_packaged(name: str) -> dict[str, Any]:
    """A packaged YAML file of configs/ (the defaults, variants, presets)."""
    return _read_yaml(CONFIG_DIR / name)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections -> dotted keys ({"loss": {"weight": 1}} -> {"loss.weight": 1})."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _layer_path(path: str | Path, default_name: str) -> Path:
    """A YAML file, or the name of a packaged layer: `--config paper` is configs/classifier-paper.yaml
    for the classifier (the paper's form of the loss), `--config casting` configs/segmenter-casting.yaml."""
    given = Path(path)
    if given.is_file():
        return given
    packaged = CONFIG_DIR / f"{Path(default_name).stem}-{path}.yaml"
    return packaged if packaged.is_file() else given


def load_config(schema: type[T], path: str | Path | None, default_name: str,
                overrides: dict[str, Any] | None = None) -> T:
    """The packaged `configs/<default_name>` (the one source of defaults), a user YAML layered on it
    (only the keys it sets change), then dotted overrides (CLI flags, --set)."""
    cfg_path = _layer_path(path, default_name) if path else CONFIG_DIR / default_name
    data = _read_yaml(CONFIG_DIR / default_name)
    if path:
        data = merge(data, _read_yaml(cfg_path))
    data = apply_overrides(data, overrides or {})
    try:
        return from_dict(schema, data)
    except ConfigError as exc:  # name the user's file where there is one; flags name their key already
        raise ConfigError(f"{cfg_path}: {exc}" if path else str(exc)) from None
