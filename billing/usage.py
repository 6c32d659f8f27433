"""How fast a household spends: the average daily charge and the days of hot water its balance still buys.

One definition for the account pages ("days of use left") and the renewal notices (below 30 days of
average use or ¥50, a second notice below 7 days — domain-defaults §5), so the two never disagree.
The average is over the charges whose interval ended in the `window_days` before `at`, divided by the
window (a household that used nothing for half the window spends half as fast). An account opened less
than a window ago is divided by its age instead, but by at least `MIN_DAYS`: a few hours of use must not
be spread over 30 days (its "days left" would be ten times too long) nor blown up to a day's rate from
one evening's shower. An account with no charges in the window has no average, and so no "days left".
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import BillingAccount, MeterCharge

WINDOW_DAYS = 30
MIN_DAYS = 1


@dataclass(frozen=True)
class Usage:
    account_id: int
    balance_fen: int
    # Average charge per day over the window, in fen (Decimal: a few fen a day must not round to zero).
    daily_fen: Decimal | None

    @property
    def days_left(self) -> Decimal | None:
        """Days of average use the balance buys (0 when the balance is spent); None without an average."""
        if self.daily_fen is None or self.daily_fen <= 0:
            return None
        if self.balance_fen <= 0:
            return Decimal(0)
        return (Decimal(self.balance_fen) / self.daily_fen).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def usage(
    session: Session, account_ids: Collection[int], at: datetime, *, window_days: int = WINDOW_DAYS
) -> dict[int, Usage]:
    """Usage of each account in `account_ids` as of `at` (charges with to_ts in (at − window, at])."""
    if at.tzinfo is None:
        raise ValueError("at needs a timezone")
    ids = list(account_ids)
    if not ids:
        return {}
    since = at - timedelta(days=window_days)
    spent = dict(
        session.execute(
            select(MeterCharge.account_id, func.sum(MeterCharge.amount_fen))
            .where(MeterCharge.account_id.in_(ids), MeterCharge.to_ts > since, MeterCharge.to_ts <= at)
            .group_by(MeterCharge.account_id)
        ).all()
    )
    accounts = {
        row.id: row
        for row in session.execute(
            select(BillingAccount.id, BillingAccount.balance_fen, BillingAccount.opened_at).where(
                BillingAccount.id.in_(ids)
            )
        )
    }
    out = {}
    for account_id in ids:
        total = spent.get(account_id)
        account = accounts.get(account_id)
        balance = int(account.balance_fen) if account is not None else 0
        days = Decimal(window_days)
        if account is not None and account.opened_at > since:
            age = Decimal((at - account.opened_at).total_seconds()) / 86_400
            days = min(days, max(Decimal(MIN_DAYS), age))
        daily = (Decimal(int(total)) / days) if total else None
        out[account_id] = Usage(account_id, balance, daily)
    return out
