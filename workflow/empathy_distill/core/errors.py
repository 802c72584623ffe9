"""Errors that carry a message meant for the researcher running the workflow."""


class EmpathyDistillError(Exception):
    """Base class: the message says what is wrong and where, never a bare traceback."""


class ConfigError(EmpathyDistillError):
    """The configuration does not match workflow/schemas/config.schema.yaml."""


class DatasetError(EmpathyDistillError):
    """The empathy dataset (or a derived table) is missing, corrupt or malformed."""


class LlamaFactoryFormatError(EmpathyDistillError):
    """A training set would be silently dropped (in part) by LLaMA-Factory."""


class LeakageError(EmpathyDistillError):
    """A test-split dialogue reached a training file."""


class TrainingError(EmpathyDistillError):
    """A fine-tuning job cannot start or LLaMA-Factory failed."""
