"""Method presets and the paper's ablations, as dotted config overrides (data, not code).

* ``unigen``: universal prompt, soft relabeling with filtering, SunGen weights (top-K selection and the
  denoising memory-bank gate), CE + 0.5 SCL (docs/method.md §1).
* ``zerogen``: one domain prompt, generation labels as they are (no relabeling, no filtering), no
  weighting, CE only (docs/method.md §1: that the paper's baseline is CE-only is inferred).
* ``sungen``: ZeroGen's data, SunGen weights with top-K selection, CE only.

Ablations (docs/method.md §1) apply on top of a preset: ``hard-relabel``, ``no-relabel``,
``no-denoise-bank``, ``no-scl``, ``combined-prompts``.
"""

from __future__ import annotations

from collections.abc import Sequence

from unigen.errors import ConfigError

#: the generation domains of the ZeroGen/SunGen prompts (test-set domains: unigen.evaluation.paper.SET_DOMAIN)
GENERATION_DOMAINS = ("movie", "products", "restaurant", "electronics", "tweet")

#: the paper's single prompt per domain, no length classes (the default's three length prompts off)
ONE_PROMPT: dict[str, object] = {"generate.lengths": []}

METHODS: dict[str, dict[str, object]] = {
    "unigen": {},  # the defaults are UniGen's
    # the baselines as their papers ran them: one domain prompt
    "zerogen": {"relabel.mode": "none", "weight.enabled": False, "train.scl_weight": 0.0, **ONE_PROMPT},
    "sungen": {"relabel.mode": "none", "weight.enabled": True, "train.scl_weight": 0.0, **ONE_PROMPT},
}

ABLATIONS: dict[str, dict[str, object]] = {
    "hard-relabel": {"relabel.mode": "hard"},
    "no-relabel": {"relabel.mode": "none"},
    "no-denoise-bank": {"train.denoise_bank": False},
    "no-scl": {"train.scl_weight": 0.0},
    "combined-prompts": {"generate.prompt_set": "combined"},
    "one-prompt": ONE_PROMPT,
}


def preset_overrides(method: str = "unigen", domain: str | None = None,
                     ablations: Sequence[str] = ()) -> dict[str, object]:
    """Dotted settings (``{"relabel.mode": "none", ...}``) of a method (and domain) plus its ablations."""
    if method not in METHODS:
        raise ConfigError(f"unknown method '{method}': use one of {', '.join(METHODS)}")
    settings = dict(METHODS[method])
    if method == "unigen":
        if domain is not None:
            raise ConfigError(
                "the unigen method uses the universal prompt; run.domain is for zerogen and sungen"
            )
    else:
        if domain not in GENERATION_DOMAINS:
            raise ConfigError(f"method '{method}' needs run.domain, one of {', '.join(GENERATION_DOMAINS)}")
        settings["generate.prompt_set"] = domain
    for name in ablations:
        if name not in ABLATIONS:
            raise ConfigError(f"unknown ablation '{name}': use one of {', '.join(ABLATIONS)}")
        settings.update(ABLATIONS[name])
    return settings


#: settings that make a whole run take seconds on tiny models (the smoke runs of the tests and of
#: scripts/chaos.py); the caller names the generator and the test file (:func:`tiny_run_settings`)
TINY_RUN = ("device=cpu", "generate.samples_per_label=6", "generate.shard_size=4", "relabel.threshold=0.0",
            "relabel.drop_disagreeing=false", "weight.outer_epochs=1", "train.epochs=1",
            "train.lstm_hidden=8", "train.projection_dim=8", "run.tams=[lstm]", "run.baselines=[vader]")


def tiny_run_settings(generator: str, datasets: str, *extra: str) -> list[str]:
    """Dotted overrides of a tiny run: ``generator`` (a folder), :data:`TINY_RUN`, the test ``datasets``,
    then ``extra`` (later settings win)."""
    return [f"generator={generator}", *TINY_RUN, f"evaluate.datasets={datasets}", *extra]
