"""Method registry: the ``method`` of an experiment -> its training objective."""
from __future__ import annotations

from attnrobust.errors import UserError
from attnrobust.methods.a_art import A_ART
from attnrobust.methods.base import Method
from attnrobust.methods.fgmask import FGMASK
from attnrobust.methods.pgd_at import PGD_AT
from attnrobust.methods.protoattn import PROTOATTN
from attnrobust.methods.standard import STANDARD

METHODS: dict[str, Method] = {m.name: m for m in (STANDARD, PGD_AT, FGMASK, A_ART, PROTOATTN)}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]
