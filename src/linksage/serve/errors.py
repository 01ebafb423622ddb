"""Errors the API answers with a JSON body ``{"error": message, "status": code}``; each carries its status."""

from __future__ import annotations

from linksage.errors import LinksageError


class ServeError(LinksageError):
    status = 500


class BadInput(ServeError):
    """A parameter the route's schema accepts but the data does not (an unusable URL, a dim the model lacks)."""

    status = 422


class NotFound(ServeError):
    """An unknown page or pin."""

    status = 404


class Conflict(ServeError):
    """The page's stored embedding comes from another model than the run's current one."""

    status = 409


class Unavailable(ServeError):
    """What the route needs is not there yet (no store, a stage not run, the store still loading)."""

    status = 503


class Forbidden(ServeError):
    """The server's config does not allow this (store writes with ``serve.allow_store_writes = false``)."""

    status = 403
