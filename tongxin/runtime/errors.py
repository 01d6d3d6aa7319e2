"""The SPEC error shape ``{"error": {"code", "message", "details"}}`` and its handlers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tongxin.runtime.mongo import Busy
from tongxin.runtime.uow import Retry

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered to the caller with a status, a stable code and a message."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"code": code, "message": message, "details": details}}


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "validation_error",
    429: "rate_limited",
}


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON in the SPEC shape; never a stack trace."""

    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body("validation_error", "The request is not valid.", details), 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(ConnectionFailure)
    async def _db_down(_req: Request, exc: ConnectionFailure) -> JSONResponse:
        log.warning("database unavailable", extra={"error": repr(exc)})
        return JSONResponse(
            error_body("unavailable", "The database is unavailable; try again shortly."),
            503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Retry)
    @app.exception_handler(Busy)
    async def _busy(_req: Request, exc: Exception) -> JSONResponse:
        log.warning("overloaded: request refused", extra={"error": str(exc)})
        return JSONResponse(
            error_body("busy", "The service is overloaded; nothing was stored. Try again shortly."),
            503,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(PyMongoError)
    async def _db_error(_req: Request, exc: PyMongoError) -> JSONResponse:
        log.error("database error", extra={"error": repr(exc)})
        return JSONResponse(error_body("internal", "Internal error."), 500)

    @app.exception_handler(Exception)
    async def _unhandled(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body("internal", "Internal error."), 500)
