"""Weekly time profiles: the days and time windows a card opens its doors, in the estate's timezone."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")]


class TimeProfile(BaseModel):
    """ISO weekdays (1 = Monday … 7 = Sunday) and [start, end) windows "HH:MM" ("24:00" ends a day)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[Annotated[int, Field(ge=1, le=7)], ...] = Field(min_length=1, max_length=7)
    windows: tuple[tuple[HHMM, HHMM], ...] = Field(min_length=1, max_length=8)

    @field_validator("days")
    @classmethod
    def _sorted_days(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(days)))

    @model_validator(mode="after")
    def _windows_forward(self) -> TimeProfile:
        for start, end in self.windows:
            if start >= end:
                raise ValueError(f"window {start}–{end} must end after it starts / 时段结束须晚于开始")
        return self

    def allows(self, at: datetime, timezone: str) -> bool:
        local = at.astimezone(ZoneInfo(timezone))
        if local.isoweekday() not in self.days:
            return False
        now = local.strftime("%H:%M")
        return any(start <= now < end for start, end in self.windows)

    def as_json(self) -> dict[str, Any]:
        return {"days": list(self.days), "windows": [list(w) for w in self.windows]}


# Renovation passes: working hours, Monday to Saturday (seeds/004 装修管理: no noisy work on Sundays or at night).
RENOVATION_HOURS = TimeProfile(days=(1, 2, 3, 4, 5, 6), windows=(("08:00", "18:00"),))


def parse(raw: dict[str, Any] | None) -> TimeProfile | None:
    return None if raw is None else TimeProfile.model_validate(raw)
