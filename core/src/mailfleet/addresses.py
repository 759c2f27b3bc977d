"""E-mail addresses and header values: validated before anything is queued."""

from __future__ import annotations

import functools
import re
import unicodedata

from mailfleet.errors import AddressError, HeaderError

_LOCAL_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# The common address in one match: dot-separated atoms before a single @ (so no leading,
# trailing or doubled dot), an ASCII host after it; the domain still goes through
# normalize_domain (cached). Anything else takes the full, step-by-step check below.
_PLAIN = re.compile(r"((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\.)*[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)"
                    r"@([A-Za-z0-9.-]+)")


def header_problem(value: str) -> str | None:
    """Why ``value`` cannot go into a header, or ``None``: CR, LF, NUL, any other control
    character (VT, FF, U+001E, U+0085, ...) or a Unicode line or paragraph separator
    (U+2028, U+2029). A tab is allowed."""
    if value.isprintable():  # no control, separator or other "Other" character: the rule
        return None  # holds without looking at each character (the common case, fast)
    for char in value:
        if char != "\t" and unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            if char in "\r\n\0":
                return "CR, LF and NUL are not allowed in a header value"
            return (f"the control character or line separator U+{ord(char):04X} is not "
                    f"allowed in a header value")
    return None


def check_header(name: str, value: str) -> str:
    """``value`` unchanged, or HeaderError if it holds a line break or control character
    (header injection; see :func:`header_problem`)."""
    problem = header_problem(value)
    if problem is not None:
        raise HeaderError(f"header {name}: {problem}")
    return value


@functools.lru_cache(maxsize=4096)  # a mailing's addresses share few domains
def normalize_domain(domain: str) -> str:
    """The domain in ASCII (IDNA for internationalised names), lower case."""
    domain = domain.strip().rstrip(".").lower()
    if not domain:
        raise AddressError("the domain is empty")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise AddressError(f"the domain {domain!r} is not a valid internationalised name") \
            from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise AddressError(f"the domain {domain!r} is not a valid host name")
    if len(ascii_domain) > 253:
        raise AddressError(f"the domain {domain!r} is too long")
    return ascii_domain


def normalize_address(address: str) -> str:
    """A bare address ``local@domain`` checked and with an ASCII (IDNA) domain.

    Refuses CR/LF, spaces, display names, missing or repeated ``@``, and non-ASCII local
    parts (they need SMTPUTF8, which mailfleet does not send).
    """
    if not isinstance(address, str):
        raise AddressError("an address must be a string")
    plain = _PLAIN.fullmatch(address)
    if plain is not None and len(plain[1]) <= 64:
        return f"{plain[1]}@{normalize_domain(plain[2])}"
    value = address.strip()
    if "\r" in value or "\n" in value or "\0" in value:
        raise AddressError("an address must not contain CR, LF or NUL")
    if not value or value.count("@") != 1:
        raise AddressError(f"{address!r} is not an e-mail address (expected local@domain)")
    local, domain = value.split("@")
    if not local or len(local) > 64:
        raise AddressError(f"{address!r}: the part before @ is empty or longer than 64")
    if not local.isascii():
        raise AddressError(f"{address!r}: non-ASCII before @ is not supported")
    if not _LOCAL_ATOM.match(local) or local.startswith(".") or local.endswith(".") \
            or ".." in local:
        raise AddressError(f"{address!r}: invalid characters before @")
    return f"{local}@{normalize_domain(domain)}"
