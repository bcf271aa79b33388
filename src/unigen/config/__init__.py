"""Configuration: the typed schema of every stage (:mod:`.schema`), loading with presets and overrides
(:mod:`.loading`), and the method presets and ablations (:mod:`.presets`).

``from unigen.config import UniGenConfig, load_config`` is the public surface.
"""

from unigen.config.loading import (
    dump_yaml,
    fingerprint,
    fingerprint_dict,
    from_dict,
    load_config,
    parse_override,
    to_dict,
)
from unigen.config.schema import (
    AdaptConfig,
    EvalConfig,
    GenerateConfig,
    RelabelConfig,
    RunConfig,
    ScoringConfig,
    TrainConfig,
    UniGenConfig,
    WeightConfig,
    setting,
)
from unigen.errors import ConfigError

__all__ = ["AdaptConfig", "ConfigError", "EvalConfig", "GenerateConfig", "RelabelConfig", "RunConfig",
           "ScoringConfig", "TrainConfig", "UniGenConfig", "WeightConfig", "dump_yaml", "fingerprint",
           "fingerprint_dict", "from_dict", "load_config", "parse_override", "setting", "to_dict"]
