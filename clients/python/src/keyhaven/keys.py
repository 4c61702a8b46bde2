"""The Keyhaven key format: ``<prefix>_<key id>_<secret><checksum>``.

- prefix: 1-20 characters, ``[a-z][a-z0-9_]*``, chosen per keyspace (``acme_live``);
- key id: 12 base58 characters (Bitcoin alphabet); public, used for lookup;
- secret: 30 base58 characters from the OS CSPRNG (~175 bits), or 44 (~257 bits) for
  keyspaces with ``secret_bytes = 32``; never stored by Keyhaven;
- checksum: CRC-32 (IEEE, as :func:`zlib.crc32`) of the UTF-8 bytes of everything before
  it, as a big-endian base58 number of exactly 6 digits, left-padded with ``1``.

A key is parsed from the right, so a prefix may itself contain ``_``: the ``_`` before
the secret is the 37th character from the end (the 51st for a long secret). The checks run in
the server's order (length, characters, separators, base58, prefix, checksum), so a
refusal names the same check the server's ``keyhaven inspect`` would. No function here
puts a key or its secret into an exception message or a ``repr``.
"""

from __future__ import annotations

import secrets
import zlib
from dataclasses import dataclass, field

__all__ = [
    "ALPHABET",
    "KeyFormatError",
    "ParsedKey",
    "checksum",
    "checksum_valid",
    "display",
    "generate_key",
    "key_id",
    "parse_key",
    "validate_prefix",
]

#: The base58 alphabet (Bitcoin's): no ``0``, ``O``, ``I`` or ``l``.
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
KEY_ID_LEN = 12
SECRET_LEN = 30
LONG_SECRET_LEN = 44
CHECKSUM_LEN = 6
MAX_PREFIX_LEN = 20
_TAIL_LEN = 1 + KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
_LONG_TAIL_LEN = _TAIL_LEN - SECRET_LEN + LONG_SECRET_LEN
MIN_KEY_LEN = 1 + _TAIL_LEN
MAX_KEY_LEN = MAX_PREFIX_LEN + _LONG_TAIL_LEN

_BASE58 = frozenset(ALPHABET.encode("ascii"))
_KEY_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
)
_PREFIX_START = frozenset(b"abcdefghijklmnopqrstuvwxyz")
_PREFIX_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
_DIGIT_VALUE = {c: i for i, c in enumerate(ALPHABET.encode("ascii"))}


class KeyFormatError(ValueError):
    """A string that is not a well-formed key, or a prefix that is not allowed.

    ``check`` names the failed check, as the server does: ``length``, ``character``,
    ``separator``, ``prefix`` or ``checksum``. ``position`` is the byte offset of the
    offending character when there is one. The message never contains the key.
    """

    def __init__(self, check: str, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.check = check
        self.position = position


@dataclass(frozen=True)
class ParsedKey:
    """A key split into its parts. ``secret`` is left out of ``repr``."""

    prefix: str
    key_id: str
    secret: str = field(repr=False)
    checksum: str

    def display(self) -> str:
        """``prefix_keyid_…last4``: identifies the key without revealing it."""
        return f"{self.prefix}_{self.key_id}_\u2026{self.checksum[-4:]}"


def validate_prefix(prefix: str) -> None:
    """Raises :class:`KeyFormatError` (check ``prefix``) unless ``prefix`` is 1-20
    characters of ``[a-z][a-z0-9_]*``."""
    if not prefix:
        raise KeyFormatError("prefix", "prefix is empty")
    if prefix[0] not in "abcdefghijklmnopqrstuvwxyz":
        raise KeyFormatError("prefix", "prefix must start with a lowercase letter a-z")
    for position, char in enumerate(prefix):
        if char not in "abcdefghijklmnopqrstuvwxyz0123456789_":
            raise KeyFormatError(
                "prefix",
                "prefix may contain only lowercase letters, digits and '_' "
                f"(found {char!r} at position {position})",
                position,
            )
    if len(prefix) > MAX_PREFIX_LEN:
        raise KeyFormatError(
            "prefix",
            f"prefix is {len(prefix)} characters long; at most {MAX_PREFIX_LEN} are allowed",
        )


def checksum(body: str) -> str:
    """The 6-character checksum of ``body`` (everything before the checksum)."""
    n = zlib.crc32(body.encode("utf-8"))
    out = []
    for _ in range(CHECKSUM_LEN):
        n, r = divmod(n, 58)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


def _tail_len(raw: bytes) -> int:
    """Everything after the prefix: long when the ``_`` before a long secret is there and
    the one before a standard secret is not (else standard, checked as such)."""
    length = len(raw)
    standard_sep = length - (SECRET_LEN + CHECKSUM_LEN) - 1
    long_sep = length - (LONG_SECRET_LEN + CHECKSUM_LEN) - 1
    if raw[standard_sep] != 0x5F and length > _LONG_TAIL_LEN and raw[long_sep] == 0x5F:
        return _LONG_TAIL_LEN
    return _TAIL_LEN


def generate_key(prefix: str, *, secret_bytes: int = 22) -> str:
    """A new key under ``prefix``: key id and secret drawn from the OS CSPRNG
    (``secret_bytes`` 22: 30 characters; 32: 44 characters).

    :func:`secrets.choice` draws each character by rejection sampling (never
    ``byte % 58``), so every character is uniform over the alphabet. Keyhaven's server
    makes keys itself on ``POST /v1/keys``; this is for tests, fixtures and imports.
    """
    validate_prefix(prefix)
    lengths = {22: SECRET_LEN, 32: LONG_SECRET_LEN}
    if secret_bytes not in lengths:
        raise ValueError("secret_bytes is 22 or 32")
    key_id = "".join(secrets.choice(ALPHABET) for _ in range(KEY_ID_LEN))
    secret = "".join(secrets.choice(ALPHABET) for _ in range(lengths[secret_bytes]))
    body = f"{prefix}_{key_id}_{secret}"
    return body + checksum(body)


def _split(key: str) -> ParsedKey:
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate: not a key character
        raise KeyFormatError(
            "character", f"character at position {e.start} is not allowed there", e.start
        ) from None
    length = len(raw)
    if not MIN_KEY_LEN <= length <= MAX_KEY_LEN:
        raise KeyFormatError(
            "length",
            f"a key is {MIN_KEY_LEN} to {MAX_KEY_LEN} characters long; this one has {length}",
        )
    for position, byte in enumerate(raw):
        if byte not in _KEY_CHARS:
            raise KeyFormatError(
                "character", f"character at position {position} is not allowed there", position
            )
    prefix_len = length - _tail_len(raw)
    secret_sep = prefix_len + 1 + KEY_ID_LEN
    for position in (prefix_len, secret_sep):
        if raw[position] != 0x5F:  # '_'
            raise KeyFormatError("separator", f"expected '_' at position {position}", position)
    for position in range(prefix_len + 1, length):
        if position != secret_sep and raw[position] not in _BASE58:
            raise KeyFormatError(
                "character", f"character at position {position} is not allowed there", position
            )
    # Every byte is ASCII from here on: byte offsets are character offsets.
    prefix = key[:prefix_len]
    try:
        validate_prefix(prefix)
    except KeyFormatError as e:
        raise KeyFormatError("prefix", f"invalid prefix: {e}", e.position) from None
    return ParsedKey(
        prefix=prefix,
        key_id=key[prefix_len + 1 : secret_sep],
        secret=key[secret_sep + 1 : length - CHECKSUM_LEN],
        checksum=key[length - CHECKSUM_LEN :],
    )


def parse_key(key: str, *, verify_checksum: bool = True) -> ParsedKey:
    """Splits ``key`` into prefix, key id, secret and checksum after checking length,
    characters, separators, prefix and (unless ``verify_checksum`` is false, to show the
    parts of a mistyped key) the checksum. Raises :class:`KeyFormatError`."""
    if not isinstance(key, str):
        raise TypeError("a key is a str")
    parsed = _split(key)
    if verify_checksum:
        given = 0
        for byte in parsed.checksum.encode("ascii"):
            given = given * 58 + _DIGIT_VALUE[byte]
        if given != zlib.crc32(key[:-CHECKSUM_LEN].encode("ascii")):
            raise KeyFormatError(
                "checksum",
                "checksum does not match: the key was mistyped or is not a real key",
            )
    return parsed


def checksum_valid(key: str) -> bool:
    """Whether ``key`` is a well-formed key whose checksum matches. Never raises: a
    scanner or a form can reject typos and garbage without asking a server."""
    try:
        parse_key(key)
    except (KeyFormatError, TypeError):
        return False
    return True


def key_id(key: str) -> str:
    """The public key id of a well-formed key (raises :class:`KeyFormatError`)."""
    return parse_key(key).key_id


def display(key: str) -> str:
    """The form dashboards and logs show, as the server's ``start`` field:
    ``acme_live_7Gx9QbWkP2mZ_…aB3c`` (raises :class:`KeyFormatError`)."""
    return parse_key(key).display()
