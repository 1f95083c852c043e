"""Check-digit algorithms written from their public specifications, apart from python-stdnum.

The tests make valid numbers with these (never real people's numbers) and expect ``shared.identity`` to accept
them and to reject every other check digit: a cross-check that the right stdnum module sits behind each document.
"""

from __future__ import annotations


def cl_rut(body: str) -> str:
    """Chile's RUT/RUN: mod 11 over the reversed body with weights 2..7; 10 is K, 11 is 0."""
    total = sum(int(digit) * (2 + index % 6) for index, digit in enumerate(reversed(body)))
    return "0123456789K0"[11 - total % 11]


def co_nit(body: str) -> str:
    """Colombia's NIT verification digit (DIAN): prime weights from the right, mod 11."""
    weights = (3, 7, 13, 17, 19, 23, 29, 37, 41, 43, 47, 53, 59, 67, 71)
    remainder = sum(int(digit) * weight for digit, weight in zip(reversed(body), weights, strict=False)) % 11
    return str(remainder if remainder < 2 else 11 - remainder)


def br_cpf(body: str) -> str:
    """Brazil's CPF: two mod-11 check digits."""
    digits = [int(digit) for digit in body]
    for _ in range(2):
        remainder = (
            sum(digit * weight for digit, weight in zip(digits, range(len(digits) + 1, 1, -1), strict=True)) % 11
        )
        digits.append(0 if remainder < 2 else 11 - remainder)
    return f"{digits[-2]}{digits[-1]}"


def ar_cuit(body: str) -> str | None:
    """Argentina's CUIT/CUIL: mod 11 with weights 5432765432; a remainder giving 10 is never issued (None)."""
    remainder = (
        11 - sum(int(digit) * weight for digit, weight in zip(body, (5, 4, 3, 2, 7, 6, 5, 4, 3, 2), strict=True)) % 11
    )
    return {11: "0", 10: None}.get(remainder, str(remainder))


def ec_ci(body: str) -> str:
    """Ecuador's cédula: Luhn-like coefficients 2,1,2,1… over 9 digits, products over 9 reduced, mod 10."""
    products = (int(digit) * (2 - index % 2) for index, digit in enumerate(body))
    total = sum(product - 9 if product > 9 else product for product in products)
    return str((10 - total % 10) % 10)
