"""Reauthentication and submission tokens: records, minting, verification, revocation."""

from .reauth import TokenService
from .records import TOKEN_TYPES, StokenRecord, TokenRecord, TokenStore, TokenVerifier
from .submission import SubmissionTokens, VerifiedStoken

__all__ = [
    "TOKEN_TYPES",
    "StokenRecord",
    "SubmissionTokens",
    "TokenRecord",
    "TokenService",
    "TokenStore",
    "TokenVerifier",
    "VerifiedStoken",
]
