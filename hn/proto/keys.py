"""Identity keys: every key an identity has or will have derives from one recovery secret.

Signing key ``k`` is Ed25519 with seed BLAKE3-derive-key(CTX_SIGN, secret || k); the
HPKE key ``k`` is the X25519 pair DeriveKeyPair(BLAKE3-derive-key(CTX_HPKE, secret || k))
(RFC 9180 section 7.1.3). So the SLIP-39 shares of the secret rebuild every key, before
and after any number of rotations, and the HPKE key is never the Ed25519 seed reused.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3
import nacl.exceptions
import nacl.signing

if TYPE_CHECKING:
    from pyhpke import CipherSuite, KEMKeyPair

CTX_SIGN = "hn 2026-11 identity signing key v1"
CTX_HPKE = "hn 2026-11 identity hpke key v1"
SECRET_BYTES = 32
SUITE_NAME = "DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/ChaCha20-Poly1305"


@functools.cache
def hpke_suite() -> CipherSuite:
    """The HPKE suite of SUITE_NAME. pyhpke is imported on first use: loading it costs
    about 20 ms, which every hn command paid at start-up, most without sealing anything."""
    from pyhpke import AEADId, CipherSuite, KDFId, KEMId

    return CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)


def _derive(context: str, secret: bytes, seq: int) -> bytes:
    if len(secret) != SECRET_BYTES:
        raise ValueError("identity secret must be 32 bytes")
    material = secret + seq.to_bytes(4, "big")
    return blake3.blake3(material, derive_key_context=context).digest()


def did_from_public_key(public_key: bytes) -> str:
    """did:hn: + lowercase unpadded base32 of the first 20 bytes of BLAKE3(genesis key)."""
    head = blake3.blake3(public_key).digest()[:20]
    return "did:hn:" + base64.b32encode(head).decode("ascii").lower().rstrip("=")


def is_did(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith("did:hn:"):
        return False
    tail = value[7:]
    return len(tail) == 32 and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in tail)


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class IdentityKeys:
    """The private side of an identity: the recovery secret and the current key seq."""

    secret: bytes
    key_seq: int

    def signing_key(self, seq: int | None = None) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(_derive(CTX_SIGN, self.secret, self.key_seq if seq is None else seq))

    def signing_public(self, seq: int | None = None) -> bytes:
        return bytes(self.signing_key(seq).verify_key)

    def hpke_keypair(self, seq: int | None = None) -> KEMKeyPair:
        ikm = _derive(CTX_HPKE, self.secret, self.key_seq if seq is None else seq)
        return hpke_suite().kem.derive_key_pair(ikm)

    def hpke_public(self, seq: int | None = None) -> bytes:
        return bytes(self.hpke_keypair(seq).public_key.to_public_bytes())

    @property
    def did(self) -> str:
        return did_from_public_key(self.signing_public(0))

    def sign(self, message: bytes, seq: int | None = None) -> bytes:
        return bytes(self.signing_key(seq).sign(message).signature)


def hpke_key_id(public_key: bytes) -> str:
    """Short, stable name of an HPKE public key: BLAKE3 hex of its raw bytes, first 32 chars."""
    return blake3.blake3(public_key).hexdigest()[:32]
