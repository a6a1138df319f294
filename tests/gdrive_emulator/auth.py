"""Service-account keys for tests and the emulator's side of Google's JWT-bearer grant.

google-auth signs an RS256 JWT with the key from the service-account JSON and posts it
to that JSON's ``token_uri``; the emulator checks the signature with the matching public
key, and the claims Google checks (issuer, audience, expiry, scope), exactly as
providers-on-loopback.md §1.3 measured them: ``aud`` is always Google's token URL,
whatever ``token_uri`` says.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["GOOGLE_TOKEN_AUDIENCE", "JwtError", "ServiceAccountKey", "verify_assertion"]

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"


class JwtError(ValueError):
    """Why a grant was refused; becomes ``invalid_grant`` in the token response."""


@dataclass
class ServiceAccountKey:
    """A freshly generated RSA key pair standing in for a Cloud console key."""

    client_email: str
    private_pem: str
    public_pem: str
    key_id: str = "k1"
    project_id: str = "sitesync-test"

    @classmethod
    def generate(cls, client_email: str = "sync@sitesync-test.iam.gserviceaccount.com") -> ServiceAccountKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return cls(client_email=client_email, private_pem=private_pem, public_pem=public_pem)

    def info(self, token_uri: str) -> dict[str, str]:
        """The service-account JSON, as the Cloud console writes it (token_uri aside)."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key_id,
            "private_key": self.private_pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }

    def write(self, path: Path, token_uri: str) -> Path:
        path.write_text(json.dumps(self.info(token_uri), indent=2))
        return path


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_assertion(assertion: str, public_keys: dict[str, str], now: float | None = None) -> dict:
    """The JWT's claims if it is a valid grant for one of ``public_keys`` (email -> PEM)."""
    now = time.time() if now is None else now
    try:
        head_b64, body_b64, sig_b64 = assertion.split(".")
        header = json.loads(_b64(head_b64))
        claims = json.loads(_b64(body_b64))
        signature = _b64(sig_b64)
    except (ValueError, TypeError) as exc:
        raise JwtError("Invalid JWT: cannot decode") from exc
    if header.get("alg") != "RS256":
        raise JwtError(f"Invalid JWT: alg {header.get('alg')!r}")
    issuer = claims.get("iss")
    pem = public_keys.get(issuer)
    if pem is None:
        raise JwtError(f"Invalid JWT: unknown issuer {issuer!r}")
    public = serialization.load_pem_public_key(pem.encode())
    try:
        public.verify(signature, f"{head_b64}.{body_b64}".encode(),  # type: ignore[union-attr]
                      padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg]
    except InvalidSignature as exc:
        raise JwtError("Invalid JWT Signature.") from exc
    if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
        raise JwtError(f"Invalid JWT: audience {claims.get('aud')!r}")
    if not (claims.get("iat", now + 999) <= now + 60 and claims.get("exp", 0) > now):
        raise JwtError("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.")
    if DRIVE_SCOPE not in str(claims.get("scope", "")).split():
        raise JwtError(f"Invalid JWT: scope {claims.get('scope')!r} lacks {DRIVE_SCOPE}")
    return claims
