"""The web service's signing keys: files in a directory (secrets as Docker and Kubernetes mount
them), the newest signing, all published as the JWKS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from cagette_runtime import clock
from cagette_runtime.auth import public_jwk


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey | RSAPrivateKey

    @property
    def algorithm(self) -> str:
        return "EdDSA" if isinstance(self.private_key, Ed25519PrivateKey) else "RS256"

    def public_jwk(self) -> dict[str, Any]:
        return public_jwk(self.private_key, self.key_id)


def load_signing_keys(directory: str | Path) -> list[SigningKey]:
    """Every `*.pem` private key in the directory, sorted by name (the last one signs)."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    keys = []
    for path in sorted(folder.glob("*.pem")):
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey | RSAPrivateKey):
            raise ValueError(f"{path}: only Ed25519 and RSA private keys can sign access tokens")
        keys.append(SigningKey(path.stem, key))
    return keys


def write_new_key(directory: str | Path) -> Path:
    """A new Ed25519 key named after the current time, so it sorts last and signs from now on."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{clock.now():%Y%m%dT%H%M%S%f}.pem"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return path


class KeyRing:
    def __init__(self, directory: str, *, create_if_empty: bool) -> None:
        self.directory = directory
        if create_if_empty and not load_signing_keys(directory):
            write_new_key(directory)
        self.reload()

    def reload(self) -> None:
        self.keys = load_signing_keys(self.directory)
        if not self.keys:
            raise RuntimeError(f"no signing key in {self.directory}")

    @property
    def active(self) -> SigningKey:
        return self.keys[-1]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}
