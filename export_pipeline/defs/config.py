"""How a setting is declared: once, on the field of the resource (or settings group) that
uses it, with its default, its environment variable and what it means.

    quota_mb: float = setting(0, "EXPORT_STORAGE_QUOTA_MB", "Most MB the storage may hold.")

`FromEnv.from_env(environ)` builds a group from the environment by reading exactly those
variables; nothing else in the package reads the environment for a setting. README's
configuration table and docker/'s variable lists are checked against `declared()`.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from dagster import EnvVar
from pydantic import Field

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def setting(
    default: Any,
    env: str,
    doc: str,
    *,
    secret: bool = False,
    aliases: tuple[str, ...] = (),
    none_when: tuple[str, ...] = (),
) -> Any:
    """A field read from the environment variable `env` (or the first of `aliases` that is
    set), `default` when none is. A `secret` reaches Dagster as an `EnvVar`, so the UI shows
    the variable's name, not its value. `none_when`: values that mean None (`auto`)."""
    extra = {"env": env, "aliases": list(aliases), "secret": secret, "none_when": list(none_when)}
    return Field(default=default, description=doc, json_schema_extra=extra)


def reveal(value: Any) -> Any:
    """A setting's value for code that is not a Dagster resource: a secret from the process
    environment arrives as an `EnvVar` (which only Dagster's config resolves, and which
    reads as the variable's name if used as a string), anything else as it is."""
    return value.get_value() if isinstance(value, EnvVar) else value


@dataclass(frozen=True)
class Declared:
    """One setting as declared: its variable, the group and field that hold it, its
    default (None: derived or none) and meaning."""

    env: str
    group: str
    field: str
    default: Any
    doc: str
    secret: bool
    aliases: tuple[str, ...] = ()


def _spec(info: Any) -> dict[str, Any] | None:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) and "env" in extra else None


def _parse(annotation: Any, raw: str, env: str) -> Any:
    """`raw` as the field's type: bool, int, float, a comma-separated list, or text."""
    kind = annotation
    if get_origin(kind) in (Union, types.UnionType):  # `int | None`: the type that is not None
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() not in _TRUE | _FALSE:
                raise ValueError(f"use one of {', '.join(sorted(_TRUE | _FALSE))}")
            return text.lower() in _TRUE
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if get_origin(kind) is list:
            return [part.strip() for part in text.split(",") if part.strip()]
    except ValueError as exc:
        name = getattr(kind, "__name__", kind)
        raise ValueError(f"{env}={raw!r} is not a valid {name}: {exc}") from None
    return text


class FromEnv:
    """Mixed into a ConfigurableResource or a Config: build it from the environment."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> Any:
        """The group with every declared field read from `environ` (os.environ by
        default) where its variable is set and not empty; `given` values win (what other
        settings derive, such as paths under EXPORT_PIPELINE_HOME)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, info in cls.model_fields.items():  # type: ignore[attr-defined]
            spec = _spec(info)
            if spec is None or name in given:
                continue
            for variable in (spec["env"], *spec["aliases"]):
                raw = env.get(variable)
                if raw and raw.strip().lower() in spec["none_when"]:
                    values[name] = None
                    break
                if raw:
                    value = _parse(info.annotation, raw, variable)
                    # A secret from the process environment reaches Dagster by name.
                    if spec["secret"] and os.environ.get(variable) == raw:
                        value = EnvVar(variable)
                    values[name] = value
                    break
        return cls(**{**values, **given})

    @classmethod
    def declared(cls, group: str) -> list[Declared]:
        """The settings this class declares (`group`: how `Settings` names it)."""
        found = []
        for name, info in cls.model_fields.items():  # type: ignore[attr-defined]
            spec = _spec(info)
            if spec is not None:
                default = None if info.is_required() else info.default
                found.append(
                    Declared(spec["env"], group, name, default, info.description or "",
                             spec["secret"], tuple(spec["aliases"]))
                )  # fmt: skip
        return found


def env_of(cls: type, name: str) -> str:
    """The variable the field `name` of `cls` is read from."""
    spec = _spec(cls.model_fields[name])  # type: ignore[attr-defined]
    if spec is None:
        raise KeyError(f"{cls.__name__}.{name} is not a setting")
    return spec["env"]
