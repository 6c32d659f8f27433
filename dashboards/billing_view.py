"""What the billing pages show, as plain dicts of formatted text: money as ¥ with two decimals (from integer fen,
never through float), times in the estate's timezone, labels in the viewer's language.

The reads are billing/overview.py and billing/queries.py (the JSON API renders the same rows).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from billing import overview, queries
from billing.notice_queries import NoticeRow
from billing.overview import AccountSummary
from dashboards import i18n
from dashboards.billing_notices import KIND as NOTICE_KIND
from dashboards.billing_notices import STATUS as NOTICE_STATUS
from dashboards.i18n import Lang
from storage.outbox_reads import STATUS_LABELS as COMMAND_STATUS


def yuan(fen: int | Decimal) -> str:
    """¥1,234.56 from integer fen (or a Decimal of fen), exact: Decimal arithmetic, never float."""
    value = (Decimal(fen) / 100).quantize(Decimal("0.01"))
    return f"-¥{-value:,}" if value < 0 else f"¥{value:,}"


def _days(a: AccountSummary, lang: Lang) -> str:
    if a.days_left is None:
        return i18n.t("no_use_yet", lang)
    return i18n.t("days_n", lang, n=a.days_left)


def account_row(a: AccountSummary, lang: Lang) -> dict[str, Any]:
    return {
        "id": a.account_id,
        "estate": a.estate_code,
        "unit": a.unit_code,
        "balance": yuan(a.balance_fen),
        "balance_fen": a.balance_fen,
        "days": _days(a, lang),
        "daily": "—" if a.daily_fen is None else yuan(a.daily_fen),
        "low": a.low,
        "held": a.held,
    }


def accounts(session: Session, estate_ids: list[int], lang: Lang, tz: ZoneInfo, now: datetime) -> dict[str, Any]:
    rows = [account_row(a, lang) for a in overview.account_summaries(session, estate_ids, now)]
    return {
        "rows": rows,
        "n": len(rows),
        "low": sum(1 for r in rows if r["low"]),
        "now": i18n.format_time(now, tz),
    }


def _hold(h: overview.HoldRow, lang: Lang, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": h.hold_id,
        "device": h.device_code,
        "kind": i18n.t(f"hold_{h.kind}", lang),
        "status": h.status,
        "status_text": i18n.t(f"hold_{h.status}", lang),
        "from": i18n.format_time(h.from_ts, tz, seconds=False),
        "to": i18n.format_time(h.to_ts, tz, seconds=False),
        "from_register": str(h.from_register),
        "to_register": str(h.to_register),
        "reason": h.reason,
    }


def _time(at: datetime | None, tz: ZoneInfo) -> str:
    return "—" if at is None else i18n.format_time(at, tz, seconds=False)


def supply_view(s: queries.Supply, lang: Lang, tz: ZoneInfo) -> dict[str, Any]:
    """The supply state, and each change with its valve commands and whether the meter acknowledged them."""
    return {
        "state": s.state,
        "state_text": i18n.t(f"supply_{s.state}", lang),
        "since": _time(s.since, tz),
        "changes": [
            {
                "at": _time(c.at, tz),
                "from": i18n.t(f"supply_{c.from_state}", lang),
                "to": i18n.t(f"supply_{c.to_state}", lang),
                "to_state": c.to_state,
                "reason": c.reason,
                "actor": c.actor,
                "notice": c.notice_number or "",
                "commands": [
                    {
                        "id": cmd.outbox_id,
                        "device": cmd.device_code or "—",
                        "action": i18n.t(f"valve_{cmd.action}", lang),
                        "status": cmd.status,
                        "status_text": i18n.label(COMMAND_STATUS, cmd.status, lang),
                        "attempts": cmd.attempts,
                        "sent": _time(cmd.sent_at, tz),
                        "acked": _time(cmd.acked_at, tz),
                        # A refusal's machine word (version_gap, rejected, ...) in words where we have them.
                        "reason": i18n.lookup(i18n.REFUSAL_REASONS, cmd.last_error, lang, cmd.last_error)
                        if cmd.status == "refused" and cmd.last_error
                        else "",
                    }
                    for cmd in c.commands
                ],
            }
            for c in s.changes
        ],
    }


def notice_rows(rows: list[NoticeRow], lang: Lang, tz: ZoneInfo) -> list[dict[str, Any]]:
    return [
        {
            "id": n.id,
            "number": n.number,
            "kind": n.kind,
            "kind_text": i18n.label(NOTICE_KIND, n.kind, lang),
            "status": n.status,
            "status_text": i18n.label(NOTICE_STATUS, n.status, lang),
            "created": _time(n.created_at, tz),
            "sent": _time(n.sent_at, tz),
            "effective": _time(n.effective_at, tz) if n.effective_at else "",
            "balance": yuan(n.balance_fen),
        }
        for n in rows
    ]


def account(
    detail: overview.AccountDetail,
    lang: Lang,
    tz: ZoneInfo,
    now: datetime,
    *,
    supply: queries.Supply | None = None,
    notices: list[NoticeRow] | None = None,
) -> dict[str, Any]:
    """One account: its summary row, supply state and valve commands, notices, readings, charges, ledger and
    holds, formatted."""
    return {
        "a": account_row(detail.summary, lang),
        "supply": supply_view(supply, lang, tz) if supply is not None else None,
        "notices": notice_rows(notices or [], lang, tz),
        "readings": [
            {
                "device": r.device_code,
                "ts": i18n.format_time(r.ts, tz, seconds=False),
                "register": str(r.register),
                "valve": r.valve or "—",
            }
            for r in detail.readings
        ],
        "charges": [
            {
                "from": i18n.format_time(c.from_ts, tz, seconds=False),
                "to": i18n.format_time(c.to_ts, tz, seconds=False),
                "volume": f"{c.volume_m3.normalize():f}",
                "amount": yuan(c.amount_fen),
                "kind": c.kind,
            }
            for c in detail.charges
        ],
        "ledger": [
            {
                "at": i18n.format_time(line.at, tz, seconds=False),
                "kind": i18n.t(f"tx_{line.kind}", lang),
                "amount": yuan(line.amount_fen),
                "credit": line.amount_fen > 0,
                "actor": line.actor,
                "reason": line.reason,
            }
            for line in detail.ledger
        ],
        "holds": [_hold(h, lang, tz) for h in detail.holds],
        "now": i18n.format_time(now, tz),
    }


def tariffs(session: Session, estate_id: int, lang: Lang, tz: ZoneInfo) -> list[dict[str, Any]]:
    out = []
    for t in queries.tariffs(session, estate_id):
        tiers = [
            (
                i18n.t("tier_rest", lang) if up_to is None else i18n.t("tier_up_to", lang, n=f"{up_to.normalize():f}"),
                yuan(price),
            )
            for up_to, price in t.tiers
        ]
        out.append({"id": t.tariff_id, "from": i18n.format_time(t.effective_from, tz, seconds=False), "tiers": tiers})
    return out


def holds(session: Session, estate_ids: list[int], lang: Lang, tz: ZoneInfo) -> list[dict[str, Any]]:
    rows = queries.held_intervals(session, estate_ids=estate_ids)
    out = []
    for h in rows:
        row = overview.HoldRow(
            h.hold_id, h.device_code, h.kind, "held", h.from_ts, h.to_ts, h.from_register, h.to_register, h.reason
        )
        view = _hold(row, lang, tz)
        view["account_id"] = h.account_id
        view["replaced_default"] = h.to_ts.astimezone(tz).strftime("%Y-%m-%dT%H:%M")
        out.append(view)
    return out
