"""The ``steward`` command line (Typer): the composition root wiring settings, storage and processes."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from accounts.const import ROLE_LABELS, Role
from core.logs import setup_logging
from core.settings import get_settings

app = typer.Typer(
    help="Steward 物业 platform: meters, equipment rooms, tickets, billing, access cards.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema and the embedded server.", no_args_is_help=True)
estate_app = typer.Typer(help="Estates: import from a YAML description.", no_args_is_help=True)
run_app = typer.Typer(help="Run one Steward process.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(estate_app, name="estate")
app.add_typer(run_app, name="run")

console = Console()
log = logging.getLogger("steward")
ROLES_HELP = "the staff role: " + ", ".join(f"{r.value} ({zh} {en})" for r, (zh, en) in ROLE_LABELS.items())


@app.callback()
def main() -> None:
    """Steward command line."""
    setup_logging(get_settings().log_level)


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM, so every loop can finish its batch and exit cleanly."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations (the only source of the schema)."""
    from alarms.install import install_rule_packs
    from storage.db import database_url, make_engine, make_sessionmaker, transaction
    from storage.migrate import upgrade

    settings = get_settings()
    url = database_url(settings)
    upgrade(url, revision)
    # Default alarm rules ship with the code, so they are refreshed with the schema (idempotent;
    # a rule an operator disabled stays disabled).
    with transaction(make_sessionmaker(make_engine(settings, url=url))) as session:
        install_rule_packs(session)
    console.print(f"[green]database upgraded to {revision}; default alarm rules in place[/]")


@db_app.command("backup")
def db_backup(
    path: Annotated[Path, typer.Argument(dir_okay=False, help="the dump file to write (custom format)")],
) -> None:
    """Dump the database with pg_dump (custom format; the client must be at least the server's version)."""
    from storage.backup import backup
    from storage.db import database_url

    backup(database_url(get_settings()), path)
    console.print(f"[green]backup written to {path}[/] ({path.stat().st_size:,} bytes) / 备份完成")


@db_app.command("restore")
def db_restore(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a `steward db backup` file")],
) -> None:
    """Restore a backup into an empty database (TimescaleDB's pre/post-restore steps when the dump has it).

    Then run `steward db upgrade` if the backup is from an older release."""
    from storage.backup import restore
    from storage.db import database_url

    timescale = restore(database_url(get_settings()), path)
    console.print(
        f"[green]restored {path}[/]" + (" (TimescaleDB pre/post-restore done)" if timescale else "") + " / 恢复完成"
    )


@db_app.command("url")
def db_url() -> None:
    """Print the database URL in use (starting the embedded server if none is configured)."""
    from storage.db import database_url

    typer.echo(database_url(get_settings()))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server, if it runs."""
    from storage.embedded import stop_embedded_postgres

    stop_embedded_postgres(get_settings().data_dir)


@estate_app.command("import")
def estate_import(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Create or update an estate from a YAML description (see examples/estate.yaml)."""
    from alarms.install import install_rule_packs
    from facility.importer import import_estate
    from protocol.estate_file import load_estate_file
    from storage.db import make_engine, make_sessionmaker, transaction

    doc = load_estate_file(path)
    engine = make_engine(get_settings())
    with transaction(make_sessionmaker(engine)) as session:
        summary = import_estate(session, doc)
        install_rule_packs(session)  # rule packs and the new estate's inspection schedules (idempotent)
        unconfigured = [
            c for c in _multipoint_coverage(session) if c["estate"] == summary.estate and not c["configured"]
        ]
    console.print(
        f"[green]estate {summary.estate}[/]: {summary.buildings} buildings, {summary.units} units, "
        f"{summary.rooms} rooms, {summary.devices} devices, {summary.points} points, {summary.residents} residents"
    )
    for c in unconfigured:
        # Said once at import, so nobody believes a rule watches a device it cannot judge.
        console.print(
            f"[yellow]多点规则未配置 / multi-point rule not configured[/]: {c['rule']} @ {c['device']} "
            f"(缺少 / missing: {', '.join(c['missing'])})"
        )


def _multipoint_coverage(session: Any) -> list[dict[str, Any]]:
    from alarms.multipoint_evaluator import coverage

    return coverage(session.connection())


@run_app.command("ingest")
def run_ingest_cmd() -> None:
    """Consume device messages from MQTT and store them exactly once."""
    from ingest.pipeline import run_ingest
    from storage.db import make_engine

    settings = get_settings()
    stop = stop_on_signals()
    if settings.ingest_partitions > 1:
        from ingest.partitions import run_partitioned

        # Each owned partition's writer (and its charger behind the commits) takes a pooled connection of its own;
        # the lock connection is separate.
        pool = max(5, 2 * (settings.ingest_max_partitions or settings.ingest_partitions) + 2)
        run_partitioned(settings, make_engine(settings, pool_size=pool), stop)
        return
    run_ingest(settings, make_engine(settings), stop)


@run_app.command("worker")
def run_worker_cmd() -> None:
    """Run the periodic jobs: stale-data watchdog, inspection rounds, SLA escalation, outbox → MQTT."""
    from storage.db import make_engine
    from worker.runner import run_worker

    settings = get_settings()
    stop = stop_on_signals()
    run_worker(settings, make_engine(settings), stop)


@app.command()
def simulate(
    estate_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="estate YAML")],
    broker: Annotated[str | None, typer.Option(help="mqtt://host:port (default: STEWARD_MQTT_URL)")] = None,
    seed: int = 0,
    rate: Annotated[float, typer.Option(help="max messages/s, 0 = unlimited")] = 0.0,
    speed: Annotated[float, typer.Option(help="simulated seconds per wall second; 0 = as fast as possible")] = 1.0,
    duration: Annotated[str | None, typer.Option(help="simulated time to cover, e.g. 90m, 6h")] = None,
    scenario: Annotated[list[str] | None, typer.Option(help="fault NAME[:DEVICE][@OFFSET], repeatable")] = None,
    username: Annotated[str | None, typer.Option(help="broker login (a gateway account of the estate)")] = None,
    password: Annotated[str | None, typer.Option(envvar="STEWARD_SIMULATE_PASSWORD", help="its password")] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="devices.csv: log in as the estate's gateway account"),
    ] = None,
) -> None:
    """Publish a simulated device fleet built from an estate file (see --help for the fault scenarios).

    The simulator publishes every device over one connection, so on a broker with per-device ACLs it logs
    in as a gateway account of the estate (`steward devices credentials --gateway sim=ESTATE`)."""
    from simulators import run_simulation
    from simulators.cli import format_progress, parse_broker, parse_duration_s, parse_scenarios

    settings = get_settings()
    host, port = parse_broker(broker or settings.mqtt_url or "mqtt://127.0.0.1:1883")
    if credentials is not None:
        username, password = _gateway_login(credentials, estate_file, username)
    stop = stop_on_signals()
    stats = run_simulation(
        estate_file,
        host,
        port,
        seed=seed,
        rate=rate,
        speed=speed,
        duration_s=parse_duration_s(duration),
        scenarios=parse_scenarios(scenario or []),
        stop_event=stop,
        on_progress=lambda s: console.print(format_progress(s), highlight=False),
        username=username,
        password=password,
    )
    raise typer.Exit(0 if stats.drained else 1)


def _gateway_login(sheet: Path, estate_file: Path, username: str | None) -> tuple[str, str]:
    """The estate's gateway account on the credential sheet (``username`` picks one when it has several)."""
    from protocol.estate_file import load_estate_file
    from steward.broker_credentials import read_sheet

    estate = load_estate_file(estate_file).estate.code
    found = [
        a
        for a in read_sheet(sheet).values()
        if a.kind == "gateway" and a.estate == estate and username in (None, a.username)
    ]
    if len(found) != 1:
        raise typer.BadParameter(f"{sheet}: {len(found)} gateway accounts for estate {estate!r}; need exactly one")
    return found[0].username, found[0].password


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds (default: until Ctrl-C)")] = None,
    backfill_hours: Annotated[float, typer.Option(help="replay this much recent history first")] = 2.0,
    lang: Annotated[str, typer.Option(help="zh (简体中文) or en")] = "zh",
    seed: int = 7,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="start over: delete the embedded database and broker data first")
    ] = False,
) -> None:
    """Run the whole product on embedded defaults: database, broker, sample estate, ingest and simulators.

    Data lives under STEWARD_DATA_DIR (.steward/) and carries over: a second run continues from the
    stored readings. --fresh starts from nothing."""
    from datetime import timedelta

    from steward.demo import run_demo

    if lang not in ("zh", "en"):
        raise typer.BadParameter("lang must be zh or en")
    settings = get_settings()
    if fresh and settings.database_url:
        raise typer.BadParameter("--fresh resets only the embedded database; unset STEWARD_DATABASE_URL")
    result = run_demo(
        settings,
        stop_on_signals(),
        seed=seed,
        backfill=timedelta(hours=backfill_hours),
        duration_s=duration,
        lang=lang,
        console=console,
        fresh=fresh,
    )
    raise typer.Exit(0 if result.stored > 0 else 1)


user_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens for integrations.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[Role, typer.Option(help=ROLES_HELP)],
    estate: Annotated[list[str] | None, typer.Option(help="estate code the user may see; repeatable")] = None,
    all_estates: Annotated[bool, typer.Option("--all-estates", help="head-office account: every estate")] = False,
    display_name: str = "",
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)] = "",
) -> None:
    """Create a staff account."""
    from accounts.const import Role
    from accounts.service import create_user
    from storage.db import make_engine, make_sessionmaker, transaction

    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        user = create_user(
            session,
            username=username,
            password=password,
            role=Role(role),
            display_name=display_name,
            estates=estate or [],
            all_estates=all_estates,
        )
        console.print(f"[green]user {user.username}[/] ({user.role}) created")


@token_app.command("create")
def token_create(
    username: str,
    name: Annotated[str, typer.Option(help="what the token is for")],
    days: Annotated[int | None, typer.Option(help="expires after this many days (default 90, at most 365)")] = None,
) -> None:
    """Create a bearer token for a staff account and print it once."""
    from datetime import timedelta

    from sqlalchemy import select

    from accounts.service import create_token
    from storage.db import make_engine, make_sessionmaker, transaction
    from storage.models import StaffUser

    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        user = session.scalar(select(StaffUser).where(StaffUser.username == username))
        if user is None:
            raise typer.BadParameter(f"no user {username!r}")
        token = create_token(session, user, name, ttl=timedelta(days=days) if days else None)
    typer.echo(token)


@token_app.command("list")
def token_list(username: str) -> None:
    """List a staff account's bearer tokens (id, name, expiry, last use, revocation; never the secret)."""
    from rich.table import Table
    from sqlalchemy import select

    from storage.db import make_engine, make_sessionmaker, transaction
    from storage.models import ApiToken, StaffUser

    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        user = session.scalar(select(StaffUser).where(StaffUser.username == username))
        if user is None:
            raise typer.BadParameter(f"no user {username!r}")
        table = Table("id", "name", "expires", "last used", "revoked", title=f"令牌 / tokens of {username}")
        for t in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)):
            table.add_row(
                str(t.id), t.name, str(t.expires_at or "-"), str(t.last_used_at or "-"), str(t.revoked_at or "-")
            )
        console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a bearer token now (its id from `steward token list USER`)."""
    from accounts.service import audit, revoke_token
    from storage.db import make_engine, make_sessionmaker, transaction
    from storage.models import ApiToken

    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        token = session.get(ApiToken, token_id)
        if token is None:
            raise typer.BadParameter(f"no token {token_id} / 没有该令牌")
        revoke_token(session, token)
        audit(session, "cli", "token.revoke", f"token:{token_id}")
    console.print(f"[green]token {token_id} revoked / 令牌已吊销[/]")


@user_app.command("deactivate")
def user_deactivate(username: str) -> None:
    """Switch a staff account off: no more logins; its sessions and tokens end now."""
    from sqlalchemy import select

    from accounts.service import audit, deactivate_user
    from storage.db import make_engine, make_sessionmaker, transaction
    from storage.models import StaffUser

    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        user = session.scalar(select(StaffUser).where(StaffUser.username == username))
        if user is None:
            raise typer.BadParameter(f"no user {username!r}")
        deactivate_user(session, user)
        audit(session, "cli", "user.deactivate", f"user:{user.id}")
    console.print(f"[green]user {username} deactivated / 账号已停用[/]")


@run_app.command("api")
def run_api_cmd(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="API processes; live views work across them (NOTIFY)")] = 1,
) -> None:
    """Serve the HTTP API and the dashboards."""
    import uvicorn

    # Forwarded headers are the app's business (STEWARD_TRUSTED_PROXIES): uvicorn's own default trusts 127.0.0.1.
    uvicorn.run("steward.asgi:app", host=host, port=port, workers=workers, log_level="warning", proxy_headers=False)


broker_app = typer.Typer(help="The MQTT broker's configuration.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")


@broker_app.command("acl")
def broker_acl(
    output: Annotated[Path | None, typer.Option(help="write here (default: print)")] = None,
    gateway: Annotated[
        list[str] | None, typer.Option(help="USER=ESTATE: an account publishing for every device of one estate")
    ] = None,
) -> None:
    """The device listeners' ACL from the estate model: one block per device, its own estate only."""
    from facility.broker_acl import render_acl
    from storage.db import make_engine, make_sessionmaker, transaction

    pairs = []
    for item in gateway or []:
        user, sep, estate = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--gateway wants USER=ESTATE, got {item!r}")
        pairs.append((user, estate))
    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        text = render_acl(session, pairs)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        console.print(f"[green]ACL written to {output}[/] (reload Mosquitto with SIGHUP / 请向 Mosquitto 发送 SIGHUP)")


devices_app = typer.Typer(help="Devices' broker accounts.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")


@devices_app.command("credentials")
def devices_credentials(
    output: Annotated[
        Path, typer.Option(help="directory the broker mounts (passwd, platform-passwd, acl, devices.csv)")
    ],
    estate_file: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True, dir_okay=False, help="devices from this estate YAML (repeatable); default: the database"
        ),
    ] = None,
    gateway: Annotated[
        list[str] | None, typer.Option(help="USER=ESTATE: an account publishing for every device of one estate")
    ] = None,
) -> None:
    """Write the broker's password files, its ACL and the device credential sheet (devices.csv).

    One account per device (username = device code) plus the platform account (STEWARD_MQTT_USERNAME /
    STEWARD_MQTT_PASSWORD). Passwords already on the sheet are kept; new devices get new ones."""
    from facility.broker_acl import acl_text
    from steward.broker_credentials import plan_accounts, read_sheet, write_credentials

    settings = get_settings()
    platform_password = settings.mqtt_password.get_secret_value()
    if not platform_password:
        raise typer.BadParameter("set STEWARD_MQTT_PASSWORD: the platform account's password / 请设置平台账号密码")
    gateways = []
    for item in gateway or []:
        user, sep, estate = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--gateway wants USER=ESTATE, got {item!r}")
        gateways.append((user, estate))
    if estate_file:
        from protocol.estate_file import expand, load_estate_file

        devices = []
        for path in estate_file:
            doc = load_estate_file(path)
            devices += [(d.spec.code, doc.estate.code) for d in expand(doc).devices]
    else:
        from sqlalchemy import select

        from storage.db import make_engine, make_sessionmaker, transaction
        from storage.models import Device, Estate

        with transaction(make_sessionmaker(make_engine(settings))) as session:
            rows = session.execute(select(Device.code, Estate.code).join(Estate, Estate.id == Device.estate_id))
            devices = [(device, estate) for device, estate in rows]
    accounts = plan_accounts(devices, gateways, read_sheet(output / "devices.csv"))
    device_pairs = sorted((a.username, a.estate) for a in accounts if a.kind == "device")
    platform = (settings.mqtt_username or "steward-platform", platform_password)
    write_credentials(output, accounts, platform=platform, acl=acl_text(device_pairs, gateways))
    console.print(
        f"[green]{len(device_pairs)} device and {len(gateways)} gateway accounts written to {output}[/] "
        "(devices.csv holds the passwords: hand it to the installers, keep it out of git / 凭据表请妥善保管)"
    )


rules_app = typer.Typer(help="Alarm rules and their per estate / room / device overrides.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


@rules_app.command("show")
def rules_show(
    code: Annotated[str | None, typer.Argument(help="one rule's code; all rules when omitted")] = None,
) -> None:
    """List alarm rules (code, kind, metric, levels, enabled) with their overrides."""
    import json

    from rich.table import Table

    from alarms.rule_admin import list_rules
    from storage.db import make_engine, make_sessionmaker, transaction

    table = Table("code", "kind", "metric", "params", "on", "overrides", title="报警规则 / alarm rules")
    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        for rule, overrides in list_rules(session):
            if code is not None and rule.code != code:
                continue
            ov = "\n".join(
                f"{o.scope}:{o.scope_id} {json.dumps(o.params, ensure_ascii=False)}"
                + ("" if o.enabled is None else f" enabled={o.enabled}")
                for o in overrides
            )
            table.add_row(
                rule.code,
                rule.kind,
                rule.metric,
                json.dumps(rule.params, ensure_ascii=False),
                "✓" if rule.enabled else "✗",
                ov,
            )
    console.print(table)
    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        cov = [c for c in _multipoint_coverage(session) if code is None or c["rule"] == code]
    if cov:
        mp = Table("code", "estate", "device", "状态 / status", "missing", title="多点规则 / multi-point rules")
        for c in cov:
            status = f"{c['status_zh']} / {c['status_en']}"
            mp.add_row(c["rule"], c["estate"] or "", c["device"], status, ", ".join(c["missing"]))
        console.print(mp)


@rules_app.command("set")
def rules_set(
    code: Annotated[str, typer.Argument(help="rule code, e.g. dry_transformer.winding_temp_a.high")],
    assignments: Annotated[list[str] | None, typer.Argument(help="params to change: key=value ...")] = None,
    estate: Annotated[str | None, typer.Option(help="override for this estate (code)")] = None,
    room: Annotated[str | None, typer.Option(help="... for this room of the estate")] = None,
    device: Annotated[str | None, typer.Option(help="... for this device of the estate")] = None,
    enable: Annotated[bool | None, typer.Option("--enable/--disable", help="switch the rule on or off")] = None,
) -> None:
    """Change a rule everywhere, or override it for one estate, room or device (device beats room beats estate)."""
    from alarms.rule_admin import parse_assignments, resolve_scope, set_override, set_rule
    from storage.db import make_engine, make_sessionmaker, transaction

    params = parse_assignments(assignments or [])
    if (room or device) and not estate:
        raise typer.BadParameter("--room and --device need --estate")
    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        if estate:
            scope = resolve_scope(session, estate, room, device)
            set_override(session, code, scope, params=params, enabled=enable, actor="cli")
            console.print(f"[green]{code}[/] overridden for {scope.kind} {scope.label}: {params or ''}")
        else:
            set_rule(session, code, params=params, enabled=enable)
            console.print(f"[green]{code}[/] updated: {params or ''}")


billing_app = typer.Typer(
    help="Hot-water billing: holiday calendar, notices, quarterly statements.", no_args_is_help=True
)
holidays_app = typer.Typer(help="The public-holiday calendar (no restriction or suspension on these days).")
app.add_typer(billing_app, name="billing")
billing_app.add_typer(holidays_app, name="holidays")


@holidays_app.command("load")
def holidays_load(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a .csv (day,name,is_workday) or .yaml")],
) -> None:
    """Load a year's holidays and 调休 make-up working days; each year in the file replaces that year."""
    from billing.holidays import load_file
    from storage.db import make_engine, make_sessionmaker, transaction

    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        loaded = load_file(session, path, actor="cli")
    for year, count in loaded.items():
        console.print(f"[green]{year}[/]: {count} days loaded / 已载入 {count} 天")


@billing_app.command("restriction")
def billing_restriction(
    estate: Annotated[str, typer.Argument(help="estate code")],
    enable: Annotated[bool, typer.Option("--on/--off", help="allow supply restriction in this estate")],
    reason: Annotated[str, typer.Option(help="why (the contract clause, the city's rules); audited")],
) -> None:
    """Switch supply restriction (限供/停供) on or off for an estate (off by default; check the city's rules)."""
    from sqlalchemy import select

    from billing.supply import set_restriction_enabled
    from core.errors import NotFound
    from storage.db import make_engine, make_sessionmaker, transaction
    from storage.models import Estate

    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        estate_id = session.scalar(select(Estate.id).where(Estate.code == estate))
        if estate_id is None:
            raise NotFound(f"estate {estate!r} not found / 小区不存在")
        set_restriction_enabled(session, estate_id, enable, actor="cli", reason=reason)
    console.print(f"[green]{estate}[/]: supply restriction {'on / 已开启' if enable else 'off / 已关闭'}")


@billing_app.command("vulnerable")
def billing_vulnerable(
    estate: Annotated[str, typer.Argument(help="estate code")],
    unit: Annotated[str, typer.Argument(help="unit code, e.g. 3-1-1201")],
    flag: Annotated[bool, typer.Option("--yes/--no", help="flag or unflag the household")],
    reason: Annotated[str, typer.Option(help="why (elderly alone, illness, …); audited")],
    actor: Annotated[str, typer.Option(help="who decided")] = "cli",
) -> None:
    """Flag a household vulnerable: its hot water is never restricted or suspended."""
    from sqlalchemy import select

    from billing.service import open_account
    from billing.supply import set_vulnerable
    from core.errors import NotFound
    from storage.db import make_engine, make_sessionmaker, transaction
    from storage.models import Building, Estate, Unit

    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        unit_id = session.scalar(
            select(Unit.id)
            .join(Building, Building.id == Unit.building_id)
            .join(Estate, Estate.id == Building.estate_id)
            .where(Estate.code == estate, Unit.code == unit)
        )
        if unit_id is None:
            raise NotFound(f"unit {unit!r} of estate {estate!r} not found / 房屋不存在")
        set_vulnerable(session, open_account(session, unit_id).id, flag, actor=actor, reason=reason)
    console.print(f"[green]{estate} {unit}[/]: vulnerable {'yes / 已标记' if flag else 'no / 已取消'}")


@billing_app.command("notices")
def billing_notices(estate: Annotated[str, typer.Argument(help="estate code")]) -> None:
    """Evaluate one estate now: draft the notices due and take the supply steps the law allows."""
    from sqlalchemy import select

    from billing.notices import evaluate
    from core import clock
    from core.errors import NotFound
    from storage.db import make_engine, make_sessionmaker, transaction
    from storage.models import Estate

    with transaction(make_sessionmaker(make_engine(get_settings()))) as session:
        estate_id = session.scalar(select(Estate.id).where(Estate.code == estate))
        if estate_id is None:
            raise NotFound(f"estate {estate!r} not found / 小区不存在")
        result = evaluate(session, estate_id, clock.now(), actor="cli")
    console.print(
        f"[green]{estate}[/]: {len(result.drafted)} notices drafted, {len(result.changes)} supply changes, "
        f"{len(result.held_back)} households held back"
    )


@billing_app.command("statements")
def billing_statements(
    quarter: Annotated[str, typer.Option(help="the quarter, e.g. 2026Q4 (estate-local)")],
    estate: Annotated[str | None, typer.Option(help="estate code (default: every estate)")] = None,
) -> None:
    """Charge up to the quarter's end, then write every household's quarterly statement (resumable, idempotent)."""
    from sqlalchemy import select

    from billing.periods import parse
    from billing.statements import statement_run
    from core.errors import NotFound
    from storage.db import make_engine, make_sessionmaker
    from storage.models import Estate

    q = parse(quarter)
    factory = make_sessionmaker(make_engine(get_settings()))
    estate_id = None
    if estate:
        with factory() as session:
            estate_id = session.scalar(select(Estate.id).where(Estate.code == estate))
        if estate_id is None:
            raise NotFound(f"estate {estate!r} not found / 小区不存在")
    result = statement_run(factory, q, estate_id=estate_id)
    console.print(
        f"[green]{q.label}[/]: {result.statements} statements over {len(result.estates)} estates, "
        f"{result.written} written / 已生成对账单"
        + (f"; closed already (unchanged): estates {result.skipped_closed}" if result.skipped_closed else "")
    )


@billing_app.command("close")
def billing_close(
    quarter: Annotated[str, typer.Option(help="the quarter to close, e.g. 2026Q3")],
    estate: Annotated[str, typer.Option(help="estate code")],
    actor: Annotated[str, typer.Option(help="who closes it (audited)")] = "cli",
) -> None:
    """Close an estate's ended quarter: final statements; later readings of it go to the open quarter."""
    from sqlalchemy import select

    from billing.periods import parse
    from billing.statements import close_period, statement_run
    from core.errors import NotFound
    from storage.db import make_engine, make_sessionmaker, transaction
    from storage.models import Estate

    q = parse(quarter)
    factory = make_sessionmaker(make_engine(get_settings()))
    with factory() as session:
        estate_id = session.scalar(select(Estate.id).where(Estate.code == estate))
    if estate_id is None:
        raise NotFound(f"estate {estate!r} not found / 小区不存在")
    statement_run(factory, q, estate_id=estate_id)  # charging up to the end, most statements outside the lock
    with transaction(factory) as session:
        close_period(session, estate_id, q, actor=actor)
    console.print(f"[green]{estate} {q.label}[/]: closed / 已结账")


def run() -> None:
    """Entry point: domain errors and invalid files end with a one-line message, not a traceback."""
    from pydantic import ValidationError

    from core.errors import StewardError

    try:
        app(prog_name="steward")
    except StewardError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        raise SystemExit(2) from None
    except ValidationError as exc:
        console.print(f"[red]invalid input:[/] {exc}")
        raise SystemExit(2) from None
