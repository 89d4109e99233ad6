"""The exception hierarchy: every error knows its HTTP status and names the field and the value.

Caller mistakes are 4xx; our own faults are 5xx. The CLI prints ``str(error)`` on one line and
exits non-zero; the service turns the status into the HTTP response.
"""

from __future__ import annotations


class RiskcastError(Exception):
    """Base class. ``http_status`` tells the service what to answer."""

    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InputError(RiskcastError):
    """The caller gave something we cannot use (bad value, bad file, bad option)."""

    http_status = 400
    exit_code = 2


class DataValidationError(InputError):
    """A raw table or feature table breaks its contract: names table, column and problem."""

    def __init__(self, table: str, column: str | None, problem: str) -> None:
        where = f"{table}.{column}" if column else table
        super().__init__(f"{where}: {problem}", field=column)
        self.table = table
        self.column = column
        self.problem = problem


class ConfigError(InputError):
    """A configuration file or option is invalid."""


class UnknownCustomerError(InputError):
    """A customer is not in the book and the request supplied no features for it."""

    http_status = 404


class OverrideRefusedError(InputError):
    """A request tried to replace a value the book holds for the customer, and
    ``serving.allow_overrides`` does not allow it: the order is not decided off the record."""

    http_status = 422


class RequestConflictError(InputError):
    """A ``request_id`` already on record for another order: a retry must repeat its order."""

    http_status = 409


class ModelUnavailableError(RiskcastError):
    """No usable model bundle (registry unreachable, alias missing, artifact broken)."""

    http_status = 503


class ScoringError(RiskcastError):
    """Neither the model nor the fallback scorecard could score a row."""


class AuditUnavailableError(RiskcastError):
    """A decision could not be put on record, so it is not given: the caller may retry."""

    http_status = 503


class StoreUnavailableError(RiskcastError):
    """The order-entry store is missing or cannot be read: the service cannot tell who is in the
    book, so it decides no order until the store is readable again (the caller may retry)."""

    http_status = 503
    exit_code = 1


class AuthError(InputError):
    """No key, or a key that is not (or no longer) a desk user's."""

    http_status = 401


class AuthorityError(InputError):
    """A desk action beyond the user's role or amount authority, or a second approval by the
    person who gave the first."""

    http_status = 403


class NotFoundError(InputError):
    """A case, user or customer the desk does not hold."""

    http_status = 404


class StaleCaseError(InputError):
    """The case changed since the user read it (another decision, an order that joined): the
    action is not taken and the user reads the case again."""

    http_status = 409


class DeskUnavailableError(RiskcastError):
    """The credit desk's database cannot be read: an order is not decided without the limit
    the desk may have approved for its customer (the caller may retry)."""

    http_status = 503
