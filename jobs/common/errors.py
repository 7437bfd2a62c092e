"""Errors a user can act on. The CLI shell prints them as one clear line and exits non-zero."""


class TrainyardError(Exception):
    """Base: an expected failure with a message that names what is wrong (file, column, rule)."""

    exit_code = 2


class ConfigError(TrainyardError):
    """A configuration, dataset spec or argument is wrong."""


class DataError(TrainyardError):
    """Input data breaks a contract: schema, emptiness, a reconciliation, a quarantine rate."""


class ValidationFailed(TrainyardError):
    """A critical Great Expectations expectation failed."""

    exit_code = 3


class IntegrityError(TrainyardError):
    """What a step was handed is not what it must be: an evaluation missing, an artifact whose checksum is
    not the one evaluated, an alias that moved since it was compared against. Fails the task (never a skip)."""


class NotBlessed(TrainyardError):
    """The evaluation of this exact artifact did not bless it: nothing to publish (the task is skipped)."""

    exit_code = 99  # the DAG maps this exit code to "skipped"


class AlreadyDone(TrainyardError):
    """``--unless-done``: what the step would write for this ds is already there; nothing to do. Not a
    failure: the DAG maps this exit code to "skipped"."""

    exit_code = 98


class LeakageError(TrainyardError):
    """A feature would use information not available at the example's time."""
