"""Cursor pagination as the SDK pages it: `after=<id>` means strictly after that object in list order."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

Order = Literal["asc", "desc"]


def after_cursor(
    stmt: Select[Any],
    created: InstrumentedAttribute[int],
    ident: InstrumentedAttribute[str],
    cursor: tuple[int, str] | None,
    order: Order,
) -> Select[Any]:
    """Order by (created, id) and keep only rows strictly past `cursor` in that order."""
    if order == "desc":
        stmt = stmt.order_by(created.desc(), ident.desc())
        if cursor is not None:
            stmt = stmt.where(or_(created < cursor[0], and_(created == cursor[0], ident < cursor[1])))
    else:
        stmt = stmt.order_by(created.asc(), ident.asc())
        if cursor is not None:
            stmt = stmt.where(or_(created > cursor[0], and_(created == cursor[0], ident > cursor[1])))
    return stmt
