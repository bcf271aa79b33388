import pytest

from unigen.config import ConfigError, load_config
from unigen.presets import preset_overrides


def test_unigen_preset_is_the_default_pipeline():
    cfg = load_config(None, preset_overrides("unigen"))
    assert cfg == load_config(None)


def test_zerogen_and_sungen_use_a_domain_prompt_and_no_relabeling():
    zerogen = load_config(None, preset_overrides("zerogen", "movie"))
    assert zerogen.generate.prompt_set == "movie" and zerogen.relabel.mode == "none"
    assert not zerogen.weight.enabled and zerogen.train.scl_weight == 0
    sungen = load_config(None, preset_overrides("sungen", "tweet"))
    assert sungen.weight.enabled and sungen.train.scl_weight == 0 and sungen.generate.prompt_set == "tweet"


def test_ablations_apply_on_top():
    cfg = load_config(None, preset_overrides("unigen", ablations=["hard-relabel", "no-denoise-bank", "no-scl"]))
    assert cfg.relabel.mode == "hard" and not cfg.train.denoise_bank and cfg.train.scl_weight == 0
    assert load_config(None, preset_overrides("unigen", ablations=["combined-prompts"])).generate.prompt_set == "combined"


@pytest.mark.parametrize("args, message", [
    (("zerogen",), "needs --domain"), (("zerogen", "space"), "needs --domain"), (("unigen", "movie"), "universal"),
    (("bogus",), "unknown method"),
])
def test_bad_presets(args, message):
    with pytest.raises(ConfigError, match=message):
        preset_overrides(*args)


def test_unknown_ablation():
    with pytest.raises(ConfigError, match="unknown ablation"):
        preset_overrides("unigen", ablations=["no-thing"])
