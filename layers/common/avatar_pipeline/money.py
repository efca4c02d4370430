"""Money: exact (Decimal) in Python and DynamoDB, a plain number of US dollars in JSON people read."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer

Money = Annotated[Decimal, PlainSerializer(lambda value: float(value), return_type=float, when_used="json")]
ZERO = Decimal("0")
CENT = Decimal("0.01")


def usd(amount: Decimal) -> str:
    """$2.20: how a report or a message states an amount."""
    return f"${amount.quantize(CENT)}"
