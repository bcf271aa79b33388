"""How a setting is declared and checked: :func:`setting` (default, help text, fingerprint mode) and the
checks every config dataclass's ``__post_init__`` uses (a :class:`~unigen.errors.ConfigError`, one line)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from unigen.errors import ConfigError

_NO_LEGACY = object()


def setting(default: Any, help: str, *, fingerprint: bool | str = True, legacy: Any = _NO_LEGACY) -> Any:
    """A config field with a help string; ``fingerprint=False`` marks output-neutral settings.

    ``fingerprint="unless_default"`` marks a setting added after results were cached: it enters the
    fingerprint only when it differs from its *legacy* value (the behaviour before it existed; by default
    its default), so existing stage folders stay valid even after the default changes.
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults so configs stay hashable")
    if fingerprint not in (True, False, "unless_default"):
        raise ValueError(f"fingerprint must be True, False or 'unless_default'; got {fingerprint!r}")
    legacy = default if legacy is _NO_LEGACY else legacy
    return field(default=default, metadata={"help": help, "fingerprint": fingerprint, "legacy": legacy})


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{name} must be one of {', '.join(choices)}; got {value!r}")
