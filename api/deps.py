"""FastAPI dependencies of the JSON API: path parameters and paging (session and user: web/deps.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query

# Path parameters: malformed ones are 422 before any query; well-formed unknown ones are 404.
EstateCode = Annotated[str, Path(pattern=r"^[a-z0-9-]{1,32}$", description="estate code, e.g. lvcheng-taohuayuan")]
ObjectId = Annotated[int, Path(ge=1, le=2_147_483_647)]


class PageParams:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=500, description="page size")] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


PageDep = Annotated[PageParams, Depends(PageParams)]
