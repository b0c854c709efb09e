"""The guard around every call of a worker: authentication (server/auth.py),
per-client rate limits (server/limits.py), request metrics, and a status for
every error and every malformed request (server/errors.py).

``GuardInterceptor`` wraps each method's handler once; the servicers read who is
calling through ``client_name`` and ``code_client``, and refuse over-limit calls
with ``refuse_if``.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from . import metrics
from .auth import PUBLIC_PREFIXES, Principal, TokenTable, allowed
from .errors import Malformed, RequestError, to_request_error, tolerant
from .limits import EXEMPT_ROLES, LimitTable, Refusal, client_of_peer

__all__ = ["Guard", "GuardInterceptor", "refuse_if", "code_client", "client_name"]


@dataclass
class Guard:
    """Auth, per-client rate limit and metrics around every call."""

    tokens: TokenTable | None
    limits: LimitTable

    def check(self, method: str, metadata: Iterable[tuple[str, Any]], peer: str) -> Principal | None:
        if method.startswith(PUBLIC_PREFIXES):
            return None
        who = None
        if self.tokens is not None:
            token = next((v for k, v in metadata if k == "authorization"), None)
            if not isinstance(token, str) or not token.startswith("Bearer "):
                raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "missing authorization: Bearer <token>")
            who = self.tokens.identify(token[len("Bearer "):].strip())
            if who is None:
                raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
            if not allowed(who.role, method):
                raise RequestError(grpc.StatusCode.PERMISSION_DENIED,
                                   f"role {who.role!r} may not call {method.rsplit('/', 1)[-1]}")
        _PRINCIPAL.set(who)             # the servicers' code limits: exempt roles, the client's name
        if self.limits.requests_enabled:
            refuse_if(self.limits.allow_request(who.name if who else client_of_peer(peer)))
        return who


# The calling token's name, set by the guard for the call's task: request ids are
# scoped to it (two apps may both send "req-1"); "" with auth off.
_CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("scangate_client", default="")
# Who the guard found (None: auth off, or the guard had nothing to check).
_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("scangate_principal", default=None)


def refuse_if(refusal: Refusal | None) -> None:
    if refusal is not None:
        metrics.refused(refusal.limit)
        raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.message)


def code_client(limits: LimitTable, context: grpc.aio.ServicerContext) -> str | None:
    """The client a call's codes count against (server/limits.py): its token's
    name, or without tokens its peer address; None where the code limits are off
    or its role is exempt."""
    if not limits.client_checks:
        return None
    who = _PRINCIPAL.get()
    if who is not None:
        return None if who.role in EXEMPT_ROLES else who.name
    return client_of_peer(context.peer() or "")


def client_name() -> str:
    """The calling token's name, for this call (its request ids are scoped to it):
    "" with auth off."""
    return _CLIENT.get()


class GuardInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each method's handler once (cached by method name) with the guard
    and the request metrics."""

    def __init__(self, guard: Guard):
        self.guard = guard
        self._wrapped: dict[str, Any] = {}

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        wrapped = self._wrapped.get(details.method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return None
            wrapped = self._wrapped[details.method] = self._wrap(details.method, handler)
        return wrapped

    def _wrap(self, method: str, handler: Any) -> Any:
        short = method.rsplit("/", 1)[-1]
        guard = self.guard

        # nothing to check: auth off and no client limit, or a public method
        active = not method.startswith(PUBLIC_PREFIXES) and (guard.tokens is not None or guard.limits.requests_enabled)

        def enter(context: grpc.aio.ServicerContext) -> None:
            if active:
                who = guard.check(method, context.invocation_metadata() or (), context.peer() or "")
                if who is not None:
                    _CLIENT.set(who.name)

        async def fail(exc: BaseException, context: grpc.aio.ServicerContext) -> None:
            err = to_request_error(exc)
            metrics.request(short, err.code.name)
            st = err.status()
            await context.abort(st.code, st.details, st.trailing_metadata)

        def done(started: float) -> None:
            metrics.request(short, "OK", time.perf_counter() - started)

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    enter(context)
                    if isinstance(request, Malformed):
                        raise request.error(method, context.peer() or "")
                    reply = await inner(request, context)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:   # noqa: BLE001 - every error becomes a status
                    await fail(exc, context)
                done(started)
                return reply

            return grpc.unary_unary_rpc_method_handler(unary_unary, tolerant(handler.request_deserializer),
                                                       handler.response_serializer)

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                enter(context)
                if handler.stream_stream:
                    request = _well_formed(request, method, context)
                elif isinstance(request, Malformed):
                    raise request.error(method, context.peer() or "")
                behavior = handler.unary_stream or handler.stream_stream
                async for reply in behavior(request, context):
                    yield reply
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # noqa: BLE001
                await fail(exc, context)
            done(started)

        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming, tolerant(handler.request_deserializer),
                                                        handler.response_serializer)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(streaming, tolerant(handler.request_deserializer),
                                                         handler.response_serializer)
        return handler   # stream-unary: none in scangate.v1


async def _well_formed(requests: AsyncIterator[Any], method: str,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    """A request stream that ends with INVALID_ARGUMENT at its first malformed
    message (the deserializer marked it ``Malformed``)."""
    async for request in requests:
        if isinstance(request, Malformed):
            raise request.error(method, context.peer() or "")
        yield request
