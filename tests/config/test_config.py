from pathlib import Path

import pytest

from unigen.config import (
    ConfigError,
    GenerateConfig,
    ScoringConfig,
    UniGenConfig,
    dump_yaml,
    fingerprint,
    fingerprint_dict,
    load_config,
    parse_override,
)

ROOT = Path(__file__).resolve().parents[2]


def test_default_yaml_matches_dataclass_defaults():
    assert load_config(ROOT / "configs" / "default.yaml") == UniGenConfig()


def test_dump_yaml_round_trips(tmp_path):
    cfg = load_config(None, ["relabel.temperature=0.5", "labels=[bad, meh, good]", "train.epochs=2"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path) == cfg


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["relabel.temperature=0.1", "scoring.rule=verbalizer", "weight.outer_lr=1",
                             "scoring.max_total_tokens=40", "generate.dedup=false"])
    assert cfg.relabel.temperature == 0.1
    assert cfg.scoring.rule == "verbalizer"
    assert cfg.weight.outer_lr == 1.0 and isinstance(cfg.weight.outer_lr, float)
    assert cfg.scoring.max_total_tokens == 40
    assert cfg.generate.dedup is False


@pytest.mark.parametrize("override, message", [
    ("relabel.temprature=0.1", "unknown setting"),
    ("scoring.rule=bogus", "scoring.rule must be one of"),
    ("generate.top_k=many", "must be an integer"),
    ("generate.dedup=3", "true or false"),
    ("relabel.threshold=1.5", "relabel.threshold"),
    ("relabel", "section.key=value"),
    ("labels=[positive]", "at least two"),
    ("evaluate.engine=tensorrt", "evaluate.engine must be one of"),
])
def test_bad_settings_fail_clearly(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_parse_override_yaml_values():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=null") == ("a", None)


def test_fingerprint_ignores_output_neutral_settings():
    base = ScoringConfig()
    assert fingerprint(base) == fingerprint(ScoringConfig(batch_size=99))
    assert fingerprint(base) != fingerprint(ScoringConfig(max_text_tokens=40))
    assert fingerprint(base, "up") != fingerprint(base, "other")


def test_settings_added_later_enter_the_fingerprint_only_off_their_default():
    assert "min_words" not in fingerprint_dict(GenerateConfig())  # cached stages keep their folders
    assert fingerprint_dict(GenerateConfig(min_words=5))["min_words"] == 5
    assert fingerprint(GenerateConfig()) != fingerprint(GenerateConfig(min_words=5))


def test_default_yaml_is_what_unigen_config_prints(capsys):
    from unigen.cli import main

    assert main(["config"]) == 0
    assert capsys.readouterr().out == (ROOT / "configs" / "default.yaml").read_text()


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    load_config(str(path), [])


def test_paper_config_restores_the_papers_choices():
    cfg = load_config(str(Path(__file__).parents[2] / "configs" / "paper.yaml"), [])
    assert (cfg.relabel.scoring_rule, cfg.relabel.centre_scores) == ("nll", False)
    assert (cfg.train.pooling, cfg.train.predict_max_length, cfg.train.max_length) == ("cls", None, 40)
    assert cfg.generate.backend == cfg.scoring.backend == "transformers"
    assert cfg.weight.outer_epochs == 50 and load_config(None, []).weight.outer_epochs == 20
    assert (cfg.run.prompt_rule, cfg.evaluate.engine) == ("nll", "pytorch")


def test_bom_crlf_and_deep_yaml(tmp_path):
    from unigen.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbfseed: 3\r\ntrain:\r\n  epochs: 2\r\n")
    cfg = load_config(path)
    assert cfg.seed == 3 and cfg.train.epochs == 2
    path.write_bytes(b"[" * 50_000 + b"]" * 50_000)
    with pytest.raises(ConfigError, match="c.yaml: not valid YAML"):
        load_config(path)
    path.write_bytes(b"run: {tams: [[lstm, [x]]]}\n")
    with pytest.raises(ConfigError, match="run.tams must be a list of names"):
        load_config(path)


def test_a_float_setting_takes_exponent_notation_without_a_dot():
    # YAML 1.1 (PyYAML) reads 1e-4 as a string; a float setting still takes it
    assert load_config(None, ["adapt.lr=1e-4"]).adapt.lr == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="adapt.lr must be a number"):
        load_config(None, ["adapt.lr=fast"])


def test_adapt_lr_and_token_limit_default_per_method():
    """A fresh distill student trains at 1e-4 on 128 tokens; self-training and the warm-started student
    keep train.lr's default, self-training 64 tokens; a set value always wins."""
    from unigen.config.adaptation import AdaptConfig

    distill = AdaptConfig(method="distill")
    assert (distill.resolved_lr(), distill.resolved_max_length()) == (1e-4, 128)
    assert AdaptConfig(method="distill", student="teacher").resolved_lr() is None
    assert (AdaptConfig().resolved_lr(), AdaptConfig().resolved_max_length()) == (None, 64)
    assert (AdaptConfig(method="distill", lr=3e-5, max_length=96).resolved_lr(),
            AdaptConfig(method="distill", max_length=96).resolved_max_length()) == (3e-5, 96)
