"""Numbers in the artifact format (FORMAT.md): strict JSON has no inf or nan, so non-finite floats are
written as {"float": "inf" | "-inf" | "nan"}; everything else is written as itself."""
from __future__ import annotations

import math
from typing import Any

NONFINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}



def number_to_json(v: Any) -> Any:
    """`v` as FORMAT.md writes a number: finite floats, ints and bools as themselves, non-finite floats
    as {"float": "inf"}, {"float": "-inf"} or {"float": "nan"}."""
    if isinstance(v, float) and not math.isfinite(v):
        return {"float": "nan" if v != v else ("inf" if v > 0 else "-inf")}
    return v


def number_from_json(v: Any) -> Any:
    """The inverse of `number_to_json` (ValueError for anything else that is not a number or bool)."""
    if isinstance(v, dict):
        if len(v) == 1 and isinstance(v.get("float"), str) and v["float"] in NONFINITE:
            return NONFINITE[v["float"]]
        raise ValueError(f"{v!r} is not a number: non-finite floats are written as "
                         f'{{"float": "inf" | "-inf" | "nan"}}')
    if isinstance(v, (bool, int)) or (isinstance(v, float) and math.isfinite(v)):
        return v
    raise ValueError(f"{v!r} is not a number or a bool")
