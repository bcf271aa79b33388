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
"""

from __future__ import annotations

from dataclasses import dataclass

from unigen.errors import ConfigError


@dataclass(frozen=True)
class Prompt:
    """One generation prompt and its relabel template."""

    domain: str
    generation: str
    relabel: str

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


def _domain(domain: str, subject: str) -> Prompt:
    return Prompt(domain, f'The {subject} in {{label}} sentiment is: "',
                  f'The {subject} in {{label}} sentiment is: "{{text}}"')


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


def get_prompt(domain: str) -> Prompt:
    """A single prompt entry by its domain name (``universal``, ``movie``, ...)."""
    try:
        return ALL_PROMPTS[domain]
    except KeyError:
        raise ConfigError(
            f"unknown prompt domain {domain!r}; choose one of {', '.join(ALL_PROMPTS)}"
        ) from None
