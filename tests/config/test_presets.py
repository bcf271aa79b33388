import pytest

from unigen.config import ConfigError, load_config
from unigen.config.presets import preset_overrides


def as_overrides(*args, **kwargs):
    """A preset as ``--set`` strings."""
    return [
        f"{k}={str(v).lower() if isinstance(v, bool) else v}"
        for k, v in preset_overrides(*args, **kwargs).items()
    ]


def test_unigen_preset_is_the_default_pipeline():
    cfg = load_config(None, as_overrides("unigen"))
    assert cfg == load_config(None)


def test_zerogen_and_sungen_use_a_domain_prompt_and_no_relabeling():
    zerogen = load_config(None, as_overrides("zerogen", "movie"))
    assert zerogen.generate.prompt_set == "movie" and zerogen.relabel.mode == "none"
    assert not zerogen.weight.enabled and zerogen.train.scl_weight == 0
    sungen = load_config(None, as_overrides("sungen", "tweet"))
    assert sungen.weight.enabled and sungen.train.scl_weight == 0 and sungen.generate.prompt_set == "tweet"


def test_ablations_apply_on_top():
    cfg = load_config(None, as_overrides("unigen", ablations=["hard-relabel", "no-denoise-bank", "no-scl"]))
    assert cfg.relabel.mode == "hard" and not cfg.train.denoise_bank and cfg.train.scl_weight == 0
    assert (
        load_config(None, as_overrides("unigen", ablations=["combined-prompts"])).generate.prompt_set
        == "combined"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (("zerogen",), "needs run.domain"),
        (("zerogen", "space"), "needs run.domain"),
        (("unigen", "movie"), "universal"),
        (("bogus",), "unknown method"),
    ],
)
def test_bad_presets(args, message):
    with pytest.raises(ConfigError, match=message):
        preset_overrides(*args)


def test_unknown_ablation():
    with pytest.raises(ConfigError, match="unknown ablation"):
        preset_overrides("unigen", ablations=["no-thing"])


def test_method_in_the_config_applies_its_preset_under_explicit_settings(tmp_path):
    cfg = load_config(None, ["run.method=zerogen", "run.domain=movie"])
    assert cfg.generate.prompt_set == "movie" and cfg.relabel.mode == "none"
    path = tmp_path / "c.yaml"
    path.write_text("run: {method: sungen, domain: tweet}\ntrain: {scl_weight: 0.3}\n")
    cfg = load_config(path, ["weight.outer_epochs=2"])
    assert cfg.train.scl_weight == 0.3 and cfg.weight.enabled and cfg.generate.prompt_set == "tweet"
    assert cfg.weight.outer_epochs == 2
    ablated = load_config(None, ["run.ablations=[no-scl]"])
    assert ablated.train.scl_weight == 0
