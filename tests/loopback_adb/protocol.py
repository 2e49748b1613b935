"""ADB wire-protocol pieces the loopback device needs: packets, checksums and the RSA auth check.

Facts follow ``/work/shared/ADB_NOTES.md`` (observed with adb 29 and adb-shell 0.4.4) and AOSP
``packages/modules/adb/protocol.txt``: a packet is six little-endian u32 (command, arg0, arg1, data length,
data checksum, command ^ 0xFFFFFFFF) followed by the data.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Callable


def _command(name: bytes) -> int:
    return int.from_bytes(name, "little")


A_SYNC = _command(b"SYNC")
A_CNXN = _command(b"CNXN")
A_AUTH = _command(b"AUTH")
A_OPEN = _command(b"OPEN")
A_OKAY = _command(b"OKAY")
A_CLSE = _command(b"CLSE")
A_WRTE = _command(b"WRTE")
COMMAND_NAMES = {value: name for name, value in {
    "SYNC": A_SYNC, "CNXN": A_CNXN, "AUTH": A_AUTH, "OPEN": A_OPEN,
    "OKAY": A_OKAY, "CLSE": A_CLSE, "WRTE": A_WRTE}.items()}

A_VERSION_MIN = 0x01000000
# From this version on, adb 29 sends csum=0 after its CNXN, so a device must stop checking checksums.
A_VERSION_SKIP_CHECKSUM = 0x01000001

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3
# The host signs the token with RSA_sign(NID_sha1, token), which needs exactly a SHA-1-sized input.
TOKEN_SIZE_BYTES = 20

HEADER = struct.Struct("<6I")
# Largest payload the device accepts from a host, whatever maxdata was negotiated (adb uses 256 KiB-1 MiB).
MAX_ACCEPTED_PAYLOAD_BYTES = 16 * 1024 * 1024


class ProtocolViolation(Exception):
    """The host sent bytes that are not a valid ADB packet."""


@dataclass(frozen=True)
class Packet:
    """One decoded ADB packet."""

    command: int
    arg0: int
    arg1: int
    data: bytes
    checksum: int

    @property
    def name(self) -> str:
        """The four-letter command name, or the hex value for an unknown command."""
        return COMMAND_NAMES.get(self.command, f"0x{self.command:08x}")

    def checksum_matches(self) -> bool:
        """Whether the header's checksum is the byte sum of the data."""
        return checksum(self.data) == self.checksum


def checksum(data: bytes) -> int:
    """The ADB data checksum: the sum of all bytes, modulo 2**32."""
    return sum(data) & 0xFFFFFFFF


def encode(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    """Encode one packet, always with a real checksum (adb-shell rejects zeros)."""
    return HEADER.pack(command, arg0, arg1, len(data), checksum(data), command ^ 0xFFFFFFFF) + data


def read_packet(recv_exact: Callable[[int], bytes]) -> Packet:
    """Read one packet with ``recv_exact(n)``, which returns exactly n bytes or raises EOFError.

    Raises:
        ProtocolViolation: the magic does not match the command or the length is absurd.
    """
    command, arg0, arg1, length, data_checksum, magic = HEADER.unpack(recv_exact(HEADER.size))
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolViolation(f"bad magic 0x{magic:08x} for command 0x{command:08x}")
    if length > MAX_ACCEPTED_PAYLOAD_BYTES:
        raise ProtocolViolation(f"payload of {length} bytes is larger than {MAX_ACCEPTED_PAYLOAD_BYTES}")
    data = recv_exact(length) if length else b""
    return Packet(command, arg0, arg1, data, data_checksum)


# PKCS#1 v1.5 DigestInfo prefix for SHA-1; the host signs the raw 20-byte token as if it were a digest.
SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")
_MINCRYPT_KEY = struct.Struct("<II256s256sI")  # nwords, n0inv, n (LE words), rr (LE words), e
RSA_KEY_BYTES = 256


@dataclass(frozen=True)
class AdbPublicKey:
    """An RSA-2048 public key in Android's mincrypt format (``adbkey.pub``, ``adb_keys``)."""

    modulus: int
    exponent: int
    line: str

    @classmethod
    def from_text(cls, text: bytes | str) -> "AdbPublicKey":
        """Parse ``<base64 of the 524-byte struct> [user@host]`` with an optional trailing NUL.

        Raises:
            ValueError: the text is not a 2048-bit mincrypt key.
        """
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        line = text.strip().rstrip("\0").strip()
        blob = base64.b64decode(line.split()[0], validate=True)
        if len(blob) != _MINCRYPT_KEY.size:
            raise ValueError(f"public key blob is {len(blob)} bytes, expected {_MINCRYPT_KEY.size}")
        nwords, _n0inv, modulus_le, _rr_le, exponent = _MINCRYPT_KEY.unpack(blob)
        if nwords != RSA_KEY_BYTES // 4:
            raise ValueError(f"public key has {nwords} words, expected {RSA_KEY_BYTES // 4}")
        return cls(int.from_bytes(modulus_le, "little"), exponent, line)

    def verify(self, token: bytes, signature: bytes) -> bool:
        """Check an AUTH SIGNATURE: PKCS#1 v1.5 over a SHA-1 DigestInfo wrapping the raw token."""
        if len(signature) != RSA_KEY_BYTES:
            return False
        recovered = pow(int.from_bytes(signature, "big"), self.exponent, self.modulus)
        padding_bytes = RSA_KEY_BYTES - 3 - len(SHA1_DIGEST_INFO) - len(token)
        expected = b"\x00\x01" + b"\xff" * padding_bytes + b"\x00" + SHA1_DIGEST_INFO + token
        return recovered.to_bytes(RSA_KEY_BYTES, "big") == expected


def load_keys(text: str) -> list[AdbPublicKey]:
    """Parse an ``adb_keys`` file: one key per line; blank lines and bad lines are skipped."""
    keys = []
    for line in text.splitlines():
        if line.strip():
            try:
                keys.append(AdbPublicKey.from_text(line))
            except ValueError:
                continue
    return keys
