"""The phone match key: one key for the forms in which Latin America writes the same mobile number.

Pure string rules over E.164, no numbering-plan data, so that ``shared.models`` can key identities on it
without importing ``phonenumbers``.

The key is the country code followed by the number as its national plan writes it today, without dialling
markers:

=======  ===============================  ==========================  =================================
country  forms seen for one mobile         key                         why
=======  ===============================  ==========================  =================================
MX       ``+521`` + 10 digits (WhatsApp     ``+52`` + 10 digits         Mexico dropped the mobile ``1`` on
         ``wa_id``, old phone books);                                  3 Aug 2019; carriers and Twilio send
         ``+52`` + 10 digits (SMS)                                     ``+52``; national numbers are 10 digits
AR       ``+549`` + area + number           ``+54`` + area + number     the ``9`` (``15`` nationally) says
         (WhatsApp, carriers); ``+54`` +    (10 digits)                 "dial a mobile"; it is not part of
         area + number (typed)                                         the 10-digit national number
BR       ``+55`` + area + ``9`` + 8 digits  ``+55`` + area + ``9`` +    the 9th digit is part of every
         (carriers, new ``wa_id``);         8 digits                    mobile number since 2016; old
         ``+55`` + area + 8 digits (old                                 WhatsApp accounts still report the
         ``wa_id``)                                                     8-digit form
=======  ===============================  ==========================  =================================

Landlines and other numbers are not harmed: a rule only fires on a shape that no other number has.

* MX national numbers are 10 digits, so ``+52`` followed by 11 digits starting with ``1`` can only be the old
  mobile form; a 10-digit number is never touched.
* AR national numbers are 10 digits and never start with 9 (area codes start with 1, 2 or 3), so ``+549``
  followed by 10 digits is always a mobile written with its marker. Fixed and mobile lines share one national
  number space (a block in an area is either fixed or mobile), so dropping the ``9`` cannot make a mobile
  collide with a landline; a landline's key is its E.164 unchanged.
* BR fixed lines are 8-digit numbers starting with 2-5; pre-2016 mobiles were 8-digit numbers starting with
  6-9, and became ``9`` + those 8 digits. So only an 8-digit number starting with 6-9 gains the ``9``;
  landlines, toll-free (``0800``) and 9-digit mobiles are left as they are. Adding the ``9`` (rather than
  removing it from 9-digit mobiles) keeps every key a number that can be dialled today, and cannot touch new
  mobile ranges that start ``9`` + 1-5, which never had an 8-digit form.

The rules are idempotent: a key never has the shape of a form it rewrites.
"""

from __future__ import annotations

import re
from typing import Final

# The same shape as ``shared.models.identity.E164_RE``; not imported from there because the models import this.
_E164_RE: Final = re.compile(r"\+[1-9]\d{7,14}")
_MX_OLD_MOBILE_RE: Final = re.compile(r"\+521(\d{10})")
_AR_MOBILE_RE: Final = re.compile(r"\+549(\d{10})")
# Brazilian area codes (DDD) are two digits 11-99 without a zero.
_BR_OLD_MOBILE_RE: Final = re.compile(r"\+55([1-9]{2})([6-9]\d{7})")


def phone_match_key(e164: str) -> str:
    """Return the key under which a phone number (or WhatsApp ``wa_id``) is matched and stored.

    Parameters
    ----------
    e164 : str
        A phone number in E.164 (``+`` and 8-15 digits), e.g. as stored in ``Identity.value``.

    Returns
    -------
    str
        The number with the Mexican ``1``, the Argentinian ``9`` and the missing Brazilian 9th digit made one
        (see the module docstring); every other number unchanged.

    Raises
    ------
    ValueError
        If ``e164`` is not in E.164.
    """
    if not _E164_RE.fullmatch(e164):
        raise ValueError("a phone match key needs an E.164 number: '+' then 8 to 15 digits")
    if match := _MX_OLD_MOBILE_RE.fullmatch(e164):
        return f"+52{match[1]}"
    if match := _AR_MOBILE_RE.fullmatch(e164):
        return f"+54{match[1]}"
    if match := _BR_OLD_MOBILE_RE.fullmatch(e164):
        return f"+55{match[1]}9{match[2]}"
    return e164
