"""Numbers as the access log's lines write them, as bytes, from tables: counts, and seconds as
milliseconds to the microsecond written as a JSON float is (the same bytes as msgspec and
repr). Formatting an int costs ~200 instructions (bench/instructions.py), a list index ~10.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # i64: a native int to mypyc, only ever an annotation (not run)
    from mypy_extensions import i64

# statics in compiled code, where a module attribute or an imported name is a lookup per call
_dumps: Final = json.dumps


def millis(seconds: float) -> bytes:
    """Seconds as milliseconds to the microsecond, as JSON writes the float: 12.346, 1.0."""
    whole, fraction = _UNLABELLED.millis(seconds)
    return whole + fraction


DIGITS: Final = [b"%d" % number for number in range(1000)]
DIGITS_PADDED: Final = [b"%03d" % number for number in range(1000)]
# ".0", ".001", ..., ".01", ..., ".999": a fraction of a millisecond, trailing zeros dropped
FRACTIONS: Final = [
    b"." + (b"%03d" % fraction).rstrip(b"0") if fraction else b".0" for fraction in range(1000)
]


class Number:
    """A number after its field's label, as a line writes it. What is under 1000 (most of a
    line's numbers, or their thousands) comes with the label in one piece, made the first
    time it is needed: a piece less in a line's format saves ~45 instructions."""

    __slots__ = ("label", "labelled_digits", "after", "fractions")

    def __init__(self, label: bytes, after: bytes = b"") -> None:
        self.label = label
        self.labelled_digits = [b""] * 1000
        # what the line has after a number of milliseconds, with its fraction in one piece
        self.after = after
        self.fractions = [b""] * 1000 if after else FRACTIONS

    def labelled(self, number: int) -> bytes:
        if not 0 <= number < 1000:
            return b"%b%d" % (self.label, number)
        text = self.labelled_digits[number]
        return text if len(text) else self._labelled_first(number)  # (len: native)

    def _labelled_first(self, number: i64) -> bytes:
        text = self.labelled_digits[number] = b"%b%d" % (self.label, number)
        return text

    def count(self, number: int) -> tuple[bytes, bytes]:
        """A count in two parts: the label and the thousands, the rest."""
        if 0 <= number < 1_000_000:
            small: i64 = number  # (native arithmetic)
            if small < 1000:
                return self.label, DIGITS[small]
            thousands = small // 1000
            high = self.labelled_digits[thousands]
            if len(high) == 0:
                high = self._labelled_first(thousands)
            return high, DIGITS_PADDED[small % 1000]
        return b"%b%d" % (self.label, number), b""

    def millis(self, seconds: float) -> tuple[bytes, bytes]:
        """Seconds as milliseconds to the microsecond, in two parts: the label and the
        digits before the point, the fraction.

        From the whole microseconds: the digits and a table's fraction give the float's
        shortest form (what msgspec and repr write) for any value under 10**12 ms, which has
        at most 15 digits."""
        micros = int(seconds * 1e6 + 0.5)
        if 0 <= micros < 1_000_000:
            small: i64 = micros  # (native arithmetic)
            whole = small // 1000
            high = self.labelled_digits[whole]
            if len(high) == 0:
                high = self._labelled_first(whole)
            thousandths = small % 1000
        elif 0 <= micros < 10**15:
            high = self.labelled(micros // 1000)
            thousandths = micros % 1000
        else:  # before the clocks' epoch, or in 30 years: as the float is written
            return b"%b%b" % (self.label, _dumps(micros / 1000).encode()), self.after
        fraction = self.fractions[thousandths]
        if len(fraction) == 0:
            fraction = self.fractions[thousandths] = FRACTIONS[thousandths] + self.after
        return high, fraction


_UNLABELLED: Final = Number(b"")
