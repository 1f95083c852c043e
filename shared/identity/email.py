"""E-mail addresses: trimmed, NFC, lower-cased; obviously broken ones refused. No DNS, no provider rules.

Lower-casing the local part is a choice: RFC 5321 lets a server tell ``Ana@`` from ``ana@``, but no mailbox
provider a Latin-American customer uses does, and treating them as two customers would be the worse mistake.
Dots and ``+tags`` are kept: Gmail ignores them, other providers do not.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

_MAX_ADDRESS: Final = 254
_MAX_LOCAL: Final = 64
# Characters that never appear unquoted in an address a customer types (quoted local parts are refused too).
_LOCAL_RE: Final = re.compile(r"[^\s\x00-\x1f\x7f@<>()\[\]\\,;:\"]+")
# A domain label: letters (any script) or digits, inner hyphens, at most 63 characters.
_LABEL_RE: Final = re.compile(r"[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?")


def normalise_email(raw: str) -> str:
    """Return ``raw`` as a stored e-mail address.

    Parameters
    ----------
    raw : str
        An address such as ``" Ana.Gómez@Ejemplo.COM.co "``; no display name, no ``mailto:``.

    Returns
    -------
    str
        Trimmed, Unicode NFC, lower-cased: ``ana.gómez@ejemplo.com.co``.

    Raises
    ------
    ValueError
        If it is not ``local@domain.tld`` with a sensible local part and domain labels.
    """
    address = unicodedata.normalize("NFC", raw.strip()).lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("an e-mail address needs a local part, '@' and a domain, e.g. ana@ejemplo.co")
    if len(address) > _MAX_ADDRESS or len(local) > _MAX_LOCAL:
        raise ValueError("an e-mail address has at most 254 characters, 64 before the '@'")
    if not _LOCAL_RE.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValueError("the part before '@' has spaces, a second '@', quotes or misplaced dots")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError("the domain must be labels of letters, digits and inner hyphens, e.g. ejemplo.com.co")
    if labels[-1].isdigit():
        raise ValueError("the domain must end in a top-level domain, not a number")
    return address
