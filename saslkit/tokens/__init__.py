"""Reauthentication and submission tokens: records, minting, verification, revocation."""

from .records import TOKEN_TYPES, StokenRecord, TokenRecord, TokenStore, TokenVerifier
from .service import TokenService
from .stoken import SubmissionTokens, VerifiedStoken

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
