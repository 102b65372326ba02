"""Login, logout and who-am-I: ``/api/v1/auth``."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import APIRouter, Depends, Request, Response

from api.auth_wiring import CSRF_COOKIE, SESSION_COOKIE, auth_service, cookie_secure, presented_token, request_source
from api.deps import AppState, app_state, audit, authenticated, get_pool, public
from api.openapi import errors
from heldar.auth.capabilities import Principal
from heldar.auth.models import LoginRequest, LoginResponse, MeView, UserView
from heldar.auth.service import INVALID_CREDENTIALS, LoginFailure, user_principal
from heldar.auth.tokens import csrf_token_for
from heldar.errors import Unauthorized

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def _set_cookie(response: Response, request: Request, state: AppState, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request, state.settings),
    )
    # readable by the page's own scripts (not HttpOnly), so a UI can echo it as X-Heldar-CSRF after a reload
    response.set_cookie(
        CSRF_COOKIE,
        csrf_token_for(token),
        max_age=max_age,
        path="/",
        samesite="strict",
        secure=cookie_secure(request, state.settings),
    )


@router.post(
    "/login",
    response_model=LoginResponse,
    dependencies=[public()],
    summary="Log in",
    responses=errors(
        e401="Wrong user name or password, or the account is disabled or locked (one answer for all).",
        e429="Too many login attempts from this source or in total; retry after `Retry-After`.",
    ),
)
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> LoginResponse:
    """Exchange a user name and password for a session: the token (send as ``Authorization: Bearer``) and
    the session cookie with its CSRF token. 401 for any wrong credential (the same answer for an unknown
    user); 429 when the source or the box is over the login rate. Audited."""
    service = auth_service(state)
    result = await service.login(pool, body.username, body.password, request_source(request))
    if isinstance(result, LoginFailure):
        if result.locked_now and result.user is not None:
            who = user_principal(result.user.id, result.user.username, result.user.role)
            await audit(state, who, "login_locked", "user", result.user.id, {"username": result.user.username})
        logger.info("failed login for %r", body.username[:64])
        raise Unauthorized(INVALID_CREDENTIALS)
    _set_cookie(response, request, state, result.token, service.sessions.max_age_s)
    user = result.user
    await audit(
        state, user_principal(user.id, user.username, user.role), "login", "user", user.id, {"username": user.username}
    )
    return LoginResponse(
        token=result.token,
        expires_at=result.expires_at,
        user=UserView.model_validate(user, from_attributes=True),
        csrf_token=csrf_token_for(result.token),
    )


@router.post("/logout", status_code=204, dependencies=[public()], summary="Log out")
async def logout(
    request: Request, state: AppState = Depends(app_state), pool: asyncpg.Pool = Depends(get_pool)
) -> Response:
    """End the presented session (Bearer token or cookie) and clear the cookies; answers 204 even with no
    session."""
    await auth_service(state).logout(pool, presented_token(request))
    response = Response(status_code=204)
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict", secure=cookie_secure(request, state.settings))
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=cookie_secure(request, state.settings)
    )
    return response


@router.get("/me", response_model=MeView, operation_id="get_me", summary="Who am I")
async def me(principal: Principal = authenticated()) -> MeView:
    """Who the credential is: its kind, role, capabilities and camera scope."""
    return MeView(
        id=principal.id,
        name=principal.name,
        role=principal.role,
        kind=principal.kind,
        capabilities=sorted(principal.capabilities),
        camera_scope=sorted(principal.camera_scope) if principal.camera_scope is not None else None,
    )
