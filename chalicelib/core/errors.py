"""The gateway's errors. Each knows its HTTP status and its OpenAI envelope.

GatewayError
├── InvalidRequest              400 invalid_request_error
├── InvalidApiKey               401 invalid_request_error / invalid_api_key
├── AdminAuthError              401 invalid_request_error / invalid_admin_token
├── InvalidSession              401 invalid_request_error / invalid_session (console endpoints)
├── InvalidCredentials          401 invalid_request_error / invalid_credentials (console login)
├── InsufficientQuota           402 insufficient_quota
├── PermissionDenied            403 permission_error
├── NotFound                    404 invalid_request_error (`unknown_url` for a path the gateway does not serve)
│   └── ModelNotFound           404 invalid_request_error / model_not_found
├── MethodNotAllowed            405 invalid_request_error / method_not_allowed; carries the methods served (Allow)
├── Conflict                    409 invalid_request_error (`account_disabled`: an admin grant naming a disabled account)
│   └── EmailTaken              409 invalid_request_error / email_taken (another account has the email)
├── PayloadTooLarge             413 invalid_request_error / request_too_large
├── UnsupportedMediaType        415 invalid_request_error / unsupported_media_type
├── RateLimited                 429 rate_limit_error; carries the seconds to wait (Retry-After)
├── InvalidSignature            400 invalid_request_error / invalid_signature (a payment webhook's)
├── PaymentProviderError        502 api_error / payment_provider_error (the provider failed; nothing credited)
├── PaymentsNotConfigured       503 api_error / payments_not_configured (no provider or webhook secret)
├── MailNotSent                 502 api_error / mail_not_sent (the mail service refused a message or was not reached)
├── ProviderError               a failed upstream call; it never costs the customer anything
│   ├── UpstreamRejected        the upstream's own 4xx status and message
│   ├── UpstreamUnavailable     502 upstream_error (5xx, refused connection, malformed body)
│   └── UpstreamTimeout         504 upstream_error / upstream_timeout
├── StorageError                503 api_error / storage_unavailable
│   ├── SecretUnreadable        a stored secret that does not decrypt (its channel is skipped, not served)
│   └── DataDirectoryUnusable   the one-machine data directory refused at start (read-only, full, in use)
└── InternalError               500 api_error (anything unexpected; details are logged, not sent)
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every error the gateway turns into an OpenAI error envelope."""

    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def envelope(self) -> dict[str, Any]:
        """The OpenAI error body: `{"error": {"message", "type", "param", "code"}}`."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class InvalidApiKey(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class AdminAuthError(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_admin_token"


class InsufficientQuota(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    """A path the gateway serves, asked with a method it does not serve there."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ProviderError(GatewayError):
    """An upstream call that failed; nothing is charged for it."""

    type = "upstream_error"
    # Whether another channel of the same model may be tried instead.
    retryable = False
    # The upstream's own error body, when it speaks the protocol the client spoke (Anthropic's envelope
    # on /v1/messages): a refusal is then passed on as the upstream worded it.
    upstream_envelope: dict[str, Any] | None = None


class UpstreamRejected(ProviderError):
    """The upstream refused the request (4xx): its status and message are passed on."""

    type = "invalid_request_error"

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 error_type: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status
        if error_type:
            self.type = error_type
        # A provider's rate limit or overload may be served by another channel.
        self.retryable = status == 429


class UpstreamUnavailable(ProviderError):
    status = 502
    code = "upstream_unavailable"
    retryable = True


class UpstreamTimeout(ProviderError):
    status = 504
    code = "upstream_timeout"
    retryable = True


class StorageError(GatewayError):
    status = 503
    type = "api_error"
    code = "storage_unavailable"


class SecretUnreadable(StorageError):
    """A sealed secret that does not open: altered, moved from its owner, or sealed under another key.
    Storage reports it and leaves the owner out; it never reaches a client."""


class DataDirectoryUnusable(StorageError):
    """The one-machine data directory cannot be used: not a directory, read-only, full, or held by
    another running gateway. Raised at start with one line naming the path and the fix."""


class InternalError(GatewayError):
    status = 500
    type = "api_error"
    code = "internal_error"


class InvalidSession(GatewayError):
    """A console request without a live session: none, unknown, expired or revoked."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_session"


class InvalidCredentials(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_credentials"


class EmailTaken(Conflict):
    code = "email_taken"


class RateLimited(GatewayError):
    """Too many requests of a kind; `retry_after_s` says when the next one may succeed."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class InvalidSignature(GatewayError):
    """A payment webhook whose signature does not verify (forged, another secret, too old, altered)."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_signature"


class PaymentProviderError(GatewayError):
    """The payment provider could not be reached or refused a call; nothing was credited."""

    status = 502
    type = "api_error"
    code = "payment_provider_error"


class PaymentsNotConfigured(GatewayError):
    """Payments are off: no provider, or no webhook secret (webhooks fail closed)."""

    status = 503
    type = "api_error"
    code = "payments_not_configured"


class MailNotSent(GatewayError):
    """The mail service refused a message or could not be reached; the message was not sent."""

    status = 502
    type = "api_error"
    code = "mail_not_sent"
