"""Prompt sets for the generation stage and the matching relabel templates, kept as data.

A *prompt set* is a tuple of :class:`Prompt` entries (one per domain). Every entry has

* ``generation``: the text the causal LM continues, with a ``{label}`` slot, e.g.
  ``The text in {label} sentiment is: "`` (docs/method.md §2), and
* ``relabel``: the template the relabel stage scores with the paper's mean-NLL rule, with
  ``{label}`` and ``{text}`` slots, e.g. ``The text in {label} sentiment is: "{text}"``. A domain
  prompt set relabels with its own domain template, as the paper code does (docs/method.md §2).

The label words are not part of the prompts: they come from ``UniGenConfig.labels`` (default
``("negative", "positive")``), so a third label (``neutral``) is a config change.

Sets: ``universal`` (UniGen), the five ZeroGen/SunGen domain prompts ``movie``, ``products``,
``restaurant``, ``electronics``, ``tweet``, and ``combined`` (the five domain prompts mixed in equal
shares; the paper's ablation).

Length classes (``generate.lengths``, off by default): a :class:`LengthClass` rewords every prompt of the
set for a text length and gives it its own new-token budget, e.g. ``long`` turns the universal prompt into
``The long review in {label} sentiment is: "`` (160 new tokens) and the movie prompt into ``The long movie
review in {label} sentiment is: "``. The variant's relabel template is worded the same way, so the nll rule
scores each text under the prompt that wrote it (:func:`get_prompt` with the row's ``length``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from unigen.errors import ConfigError


@dataclass(frozen=True)
class LengthClass:
    """A length-conditioned wording of the prompts and its default new-token budget.

    ``universal`` is the subject that replaces ``text`` in the universal prompt (``long review``);
    ``domain`` rewords a domain prompt's subject, ``{subject}`` standing for it (``long {subject}``).
    """

    name: str
    universal: str
    domain: str
    max_new_tokens: int


#: the built-in length classes ``generate.lengths`` can name (data: add a class here)
LENGTH_CLASSES: dict[str, LengthClass] = {
    c.name: c
    for c in (
        LengthClass("sentence", "sentence", "one-sentence {subject}", 31),
        LengthClass("short", "short review", "short {subject}", 64),
        LengthClass("long", "long review", "long {subject}", 160),
    )
}


@dataclass(frozen=True)
class LengthVariant:
    """One configured length class: its share of ``samples_per_label`` and its new-token budget."""

    length: LengthClass
    share: float
    max_new_tokens: int


@dataclass(frozen=True)
class Prompt:
    """One generation prompt and its relabel template (``length``: the length class, ``""`` for none)."""

    domain: str
    generation: str
    relabel: str
    subject: str = ""
    length: str = ""

    def __post_init__(self) -> None:
        if "{label}" not in self.generation:
            raise ValueError(f"prompt {self.domain!r}: generation prompt needs a {{label}} slot")
        if "{label}" not in self.relabel or "{text}" not in self.relabel:
            raise ValueError(f"prompt {self.domain!r}: relabel template needs {{label}} and {{text}}")

    def render(self, label: str) -> str:
        """The generation prompt for one label word."""
        return self.generation.format(label=label)

    def stem(self, label: str) -> str:
        """The prompt without its opening quote and colon, e.g. ``The text in positive sentiment is``.

        Used to spot prompt echoes in generated text.
        """
        return self.render(label).rstrip().rstrip('"').rstrip().rstrip(":").strip()

    def with_length(self, length: LengthClass) -> Prompt:
        """This prompt reworded for a length class (``The long review in {label} sentiment is: "``)."""
        if not self.subject or self.length:
            raise ValueError(f"prompt {self.domain!r} has no subject to reword for a length class")
        if self.domain == "universal":
            return _domain(self.domain, length.universal, length.name)
        return _domain(self.domain, length.domain.format(subject=self.subject), length.name)


def _domain(domain: str, subject: str, length: str = "") -> Prompt:
    return Prompt(domain, f'The {subject} in {{label}} sentiment is: "',
                  f'The {subject} in {{label}} sentiment is: "{{text}}"', subject, length)


UNIVERSAL = _domain("universal", "text")
DOMAIN_PROMPTS: dict[str, Prompt] = {
    p.domain: p
    for p in (
        _domain("movie", "movie review"),
        _domain("products", "product review"),
        _domain("restaurant", "restaurant review"),
        _domain("electronics", "electronics product review"),
        _domain("tweet", "tweet"),
    )
}

PROMPT_SETS: dict[str, tuple[Prompt, ...]] = {
    "universal": (UNIVERSAL,),
    **{name: (p,) for name, p in DOMAIN_PROMPTS.items()},
    "combined": tuple(DOMAIN_PROMPTS.values()),
}

ALL_PROMPTS: dict[str, Prompt] = {"universal": UNIVERSAL, **DOMAIN_PROMPTS}


def get_prompt_set(name: str) -> tuple[Prompt, ...]:
    """The prompts of a named set; unknown names raise :class:`ConfigError` listing the choices."""
    try:
        return PROMPT_SETS[name]
    except KeyError:
        raise ConfigError(f"unknown prompt set {name!r}; choose one of {', '.join(PROMPT_SETS)}") from None


def get_prompt(domain: str, length: str = "") -> Prompt:
    """A single prompt entry by its domain name (``universal``, ``movie``, ...), reworded for the length
    class ``length`` when given (a generated row's ``domain`` and ``length``)."""
    try:
        prompt = ALL_PROMPTS[domain]
    except KeyError:
        raise ConfigError(
            f"unknown prompt domain {domain!r}; choose one of {', '.join(ALL_PROMPTS)}"
        ) from None
    return prompt.with_length(get_length_class(length)) if length else prompt


def get_length_class(name: str) -> LengthClass:
    """A built-in length class by name; unknown names raise :class:`ConfigError` listing the choices."""
    try:
        return LENGTH_CLASSES[name]
    except KeyError:
        raise ConfigError(
            f"unknown length class {name!r}; choose one of {', '.join(LENGTH_CLASSES)}"
        ) from None


def length_variants(names: Sequence[str], shares: Sequence[float] = (),
                    tokens: Sequence[int] = ()) -> tuple[LengthVariant, ...]:
    """The length classes of ``generate.lengths`` with their shares (normalised; empty: equal) and
    new-token budgets (empty: each class's own), checked: every problem is a one-line :class:`ConfigError`.
    No names: ``()`` (one prompt per domain, the paper)."""
    if not names:
        if shares or tokens:
            raise ConfigError("generate.length_shares and generate.length_tokens need generate.lengths")
        return ()
    unknown = [n for n in names if n not in LENGTH_CLASSES]
    if unknown:
        raise ConfigError(f"generate.lengths: unknown length class {unknown[0]!r}; choose from "
                          f"{', '.join(LENGTH_CLASSES)}")
    classes = [LENGTH_CLASSES[n] for n in names]
    if len(set(names)) != len(names):
        raise ConfigError(f"generate.lengths names a class twice: {', '.join(names)}")
    for key, values in (("length_shares", shares), ("length_tokens", tokens)):
        if values and len(values) != len(names):
            raise ConfigError(f"generate.{key} needs one value per generate.lengths class ({len(names)}); "
                              f"got {len(values)}")
        if any(v <= 0 for v in values):
            raise ConfigError(f"generate.{key} must be positive; got {', '.join(map(str, values))}")
    weights = list(shares) or [1.0] * len(names)
    budgets = list(tokens) or [c.max_new_tokens for c in classes]
    return tuple(LengthVariant(c, w / sum(weights), int(b)) for c, w, b in zip(classes, weights, budgets))
