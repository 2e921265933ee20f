"""Passphrase-encrypted private-key files: PKCS#8 with PBES2 (scrypt + AES-256-CBC).

``cryptography``'s ``BestAvailableEncryption`` writes PKCS#8 with PBKDF2 at
2,048 iterations, cheap to guess against for a stolen file. PBES2 with the
memory-hard scrypt KDF (RFC 8018, RFC 7914) is the best PKCS#8 offers; it is
built here by hand (cryptography only builds it for PKCS#12) and read back by
the standard loader. The scrypt cost (N = 2^14, r = 8: 16 MiB) is OpenSSL's
own default for ``openssl pkcs8 -scrypt``; more exceeds the memory OpenSSL
allows by default, and ``openssl pkey`` could no longer open the file.
"""

from __future__ import annotations

import os

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
_OID_PBES2 = "1.2.840.113549.1.5.13"
_OID_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"


class WrongPassphrase(Exception):
    """The passphrase does not open the key file."""


def encrypt_private_key(key: Ed25519PrivateKey, passphrase: str) -> bytes:
    """The key as an ``ENCRYPTED PRIVATE KEY`` PEM (PKCS#8, PBES2 scrypt/AES-256-CBC)."""
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    salt, iv = os.urandom(16), os.urandom(16)
    secret = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(
        passphrase.encode("utf-8"))
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    kdf = _seq(_oid(_OID_SCRYPT), _seq(_octets(salt), _int(SCRYPT_N), _int(SCRYPT_R),
                                       _int(SCRYPT_P), _int(32)))
    scheme = _seq(_oid(_OID_PBES2), _seq(kdf, _seq(_oid(_OID_AES256_CBC), _octets(iv))))
    return _pem(_seq(scheme, _octets(ciphertext)))


def decrypt_private_key(pem: bytes, passphrase: str) -> Ed25519PrivateKey:
    """Open an encrypted key file's bytes; ``WrongPassphrase`` if it does not open.
    ``ValueError`` when the bytes are not an encrypted Ed25519 PKCS#8 key."""
    if b"ENCRYPTED PRIVATE KEY-----" not in pem:
        raise ValueError("not a passphrase-encrypted PKCS#8 key")
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase.encode("utf-8"))
    except ValueError as exc:
        if "password" in str(exc).lower() or "decrypt" in str(exc).lower():
            raise WrongPassphrase() from None
        raise ValueError("damaged key file") from None
    except UnsupportedAlgorithm:
        raise ValueError("key file of an unsupported kind") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 key")
    return key


# -- DER, just enough for the structure above --------------------------------------

def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _octets(data: bytes) -> bytes:
    return _tlv(0x04, data)


def _int(value: int) -> bytes:
    # bit_length // 8 + 1 bytes: minimal, with a leading 0 only where the top bit is set
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        while part > 0x7F:
            part >>= 7
            chunk.append(0x80 | (part & 0x7F))
        body.extend(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _pem(der: bytes) -> bytes:
    import base64

    text = base64.b64encode(der).decode("ascii")
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return ("-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + "\n".join(lines)
            + "\n-----END ENCRYPTED PRIVATE KEY-----\n").encode("ascii")
