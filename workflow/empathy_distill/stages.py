"""Every stage of the workflow, composed: importing this module registers each stage's job-spec
builders (``core.specs.register``) and semantic config checks (``core.config.register_check``).

The Snakefile (``workflow/rules/common.smk``), the ``empathy-distill`` command and the tests
import it before they validate a config or build a spec; core itself never names a stage. A new
stage (or a new rule of one) adds its registering module here.
"""

from __future__ import annotations

from . import weights
from .cost import command as cost_command
from .distillation import specs as distillation_specs
from .evaluation import specs as evaluation_specs
from .evaluation.scoring import config_checks as scoring_config_checks
from .evaluation.scoring import specs as scoring_specs
from .training import specs as training_specs

#: The modules that register with core, in data-flow order.
REGISTERING = (
    distillation_specs,
    training_specs,
    evaluation_specs,
    scoring_specs,
    scoring_config_checks,
    cost_command,
    weights,
)
