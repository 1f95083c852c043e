"""Latin-American identity, done right: phones, e-mail and national IDs normalised; phones matched.

Pure domain code, no AWS. ``Normaliser`` is what callers use (it implements ``shared.models.IdentityNormaliser``);
the functions are its parts, for callers that need one of them alone.

Names are imported from their submodule on first use (PEP 562): ``shared.models`` imports
``shared.identity.keys`` for ``Identity.lookup_value`` without paying for ``phonenumbers`` or ``stdnum``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.lazy import lazy_getattr

if TYPE_CHECKING:
    from shared.identity.email import normalise_email
    from shared.identity.keys import phone_match_key
    from shared.identity.national_id import (
        DOCUMENT_TYPES,
        NationalId,
        identify_national_id,
        normalise_national_id,
    )
    from shared.identity.normaliser import Normaliser
    from shared.identity.phone import normalise_phone

_SUBMODULE = {
    "DOCUMENT_TYPES": "shared.identity.national_id",
    "NationalId": "shared.identity.national_id",
    "Normaliser": "shared.identity.normaliser",
    "identify_national_id": "shared.identity.national_id",
    "normalise_email": "shared.identity.email",
    "normalise_national_id": "shared.identity.national_id",
    "normalise_phone": "shared.identity.phone",
    "phone_match_key": "shared.identity.keys",
}

__all__ = [
    "DOCUMENT_TYPES",
    "NationalId",
    "Normaliser",
    "identify_national_id",
    "normalise_email",
    "normalise_national_id",
    "normalise_phone",
    "phone_match_key",
]


__getattr__ = lazy_getattr(__name__, globals(), _SUBMODULE)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
