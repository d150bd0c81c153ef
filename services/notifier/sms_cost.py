"""What an SMS costs: its encoding and segment count, as the networks count them (3GPP TS
23.038 for the GSM 03.38 alphabet, TS 23.040 for concatenation).

A text entirely in the GSM 03.38 alphabet goes as GSM-7: 160 septets in one segment, 153 per
segment once split (the rest carries the concatenation header); an extension character
(`€`, `[`, `{`, …) takes two septets. One character outside it (a curly quote, an en dash, a
Welsh `ŵ`) sends the whole text as UCS-2: 70 UTF-16 units in one segment, 67 once split. The
alphabet comes from the `gsm0338` codec rather than a table of our own."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

Encoding = Literal["GSM-7", "UCS-2"]
_SINGLE = {"GSM-7": 160, "UCS-2": 70}
_CONCATENATED = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class SmsCost:
    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    # The characters that forced UCS-2 (empty for GSM-7): what to reword to save the cost.
    outside_gsm: str = ""


def sms_cost(text: str) -> SmsCost:
    try:
        units = len(text.encode("gsm03.38"))
        encoding: Encoding = "GSM-7"
        outside = ""
    except UnicodeEncodeError:
        units = len(text.encode("utf-16-le")) // 2
        encoding = "UCS-2"
        outside = "".join(dict.fromkeys(c for c in text if not _in_gsm(c)))
    if units <= _SINGLE[encoding]:
        return SmsCost(encoding, units, 1 if units else 0, outside)
    return SmsCost(encoding, units, math.ceil(units / _CONCATENATED[encoding]), outside)


def _in_gsm(character: str) -> bool:
    try:
        character.encode("gsm03.38")
    except UnicodeEncodeError:
        return False
    return True
