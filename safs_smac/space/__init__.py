"""The SAFS search space: build, decode, check (:mod:`.build`, :mod:`.decode`, :mod:`.check`),
files (:mod:`.files`) and the zoo's generated spaces (:mod:`.zoo`). See :mod:`.build` for the
keys and variants."""

from safs_smac.space.build import (
    FT_OPTIMIZERS,
    FT_SCHEDULERS,
    GRANULARITIES,
    LABEL_SMOOTHING_RANGE,
    LR_RANGE,
    MOMENTUM_RANGE,
    NETWORK_SITE,
    SCALE_RANGE,
    STAGES,
    WEIGHT_DECAY_RANGE,
    build_space,
)
from safs_smac.space.check import check_config, check_config_values, check_space
from safs_smac.space.decode import TrialSpec, decode_config
from safs_smac.space.files import load_space, save_space, space_to_text
from safs_smac.space.zoo import ZOO_MODELS, write_zoo_spaces, zoo_space

__all__ = [
    "FT_OPTIMIZERS",
    "FT_SCHEDULERS",
    "GRANULARITIES",
    "LABEL_SMOOTHING_RANGE",
    "LR_RANGE",
    "MOMENTUM_RANGE",
    "NETWORK_SITE",
    "SCALE_RANGE",
    "STAGES",
    "WEIGHT_DECAY_RANGE",
    "ZOO_MODELS",
    "TrialSpec",
    "build_space",
    "check_config",
    "check_config_values",
    "check_space",
    "decode_config",
    "load_space",
    "save_space",
    "space_to_text",
    "write_zoo_spaces",
    "zoo_space",
]
