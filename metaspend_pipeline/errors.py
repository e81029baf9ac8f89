"""Errors a user can act on. Each message names what was wrong and never contains a secret."""

from __future__ import annotations


class MetaspendError(Exception):
    """Base of the errors the CLI reports as a one-line message with exit code 2."""


class InvalidInputError(MetaspendError, ValueError):
    """A value given by a person or a caller is malformed."""


class UnknownOrganizationError(MetaspendError, LookupError):
    """No connected account exists for the organization."""


class NoValidTokenError(MetaspendError, LookupError):
    """An organization has no usable Meta token.

    `expired_accounts` lists its CONNECTED accounts whose every token has expired: Meta will not
    extend an expired token, so they need re-authorisation.
    """

    def __init__(self, message: str, expired_accounts: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.expired_accounts = expired_accounts


class NoAdAccountError(MetaspendError, LookupError):
    """An organization has a token but no ad account to read."""


def _organization_errors() -> tuple[type[BaseException], ...]:
    import sqlalchemy as sa

    return (MetaspendError, sa.exc.IntegrityError, sa.exc.DataError, ValueError, ArithmeticError)


# What one organization's data can raise in a step: recorded for it, and the others go on. A
# database that cannot be reached (OperationalError) is not one organization's problem: it fails
# the step, which Dagster's run retries can repeat.
ORGANIZATION_ERRORS = _organization_errors()
