"""What every claim family shares: the tie tolerance and the reliability flag."""
from __future__ import annotations

from attnrobust.units import tolerance  # noqa: F401  (claims and sanity checks share one tolerance)

UNRELIABLE_TEXT = " [UNRELIABLE evaluation: see sanity]"


def unreliable_flag(*summaries: dict) -> str:
    return UNRELIABLE_TEXT if any(s.get("unreliable") for s in summaries) else ""


def with_reliability(claim: dict, summaries: list[dict]) -> dict:
    """``claim`` with an explicit boolean ``unreliable``, for tables and scripts that should not
    parse text: the family's own value when it sets one (from exactly the evaluations that claim
    reads), else true when any experiment of the claim's config entry failed a sanity check. The
    text flag in ``ours`` is added when the boolean is true and the family did not write it."""
    unreliable = bool(claim.get("unreliable", any(s.get("unreliable") for s in summaries)))
    ours = claim["ours"]
    if unreliable and UNRELIABLE_TEXT not in ours:
        ours += UNRELIABLE_TEXT
    return {**claim, "ours": ours, "unreliable": unreliable}
