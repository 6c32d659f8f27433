"""``steward demo``: embedded database and broker, the sample estate, ingest and simulators, live figures."""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import uvicorn
from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import Engine

from accounts.const import DEMO_PASSWORD
from core.errors import StewardError
from core.settings import Environment, Settings
from ingest.health import Health, serve_health
from steward.broker import MosquittoProcess, free_port, mosquitto_binary
from steward.demo_billing import LOW_METER, LOW_UNIT, LowHousehold
from steward.demo_team import DEMO_ADMIN, DEMO_CLERK, DEMO_TEAM, ensure_demo_team

log = logging.getLogger(__name__)

SAMPLE_ESTATE = Path(__file__).resolve().parent.parent / "examples" / "estate.yaml"
# Faults the demo shows. The backfill (the last two hours replayed at full speed) already holds water
# running in a vacant flat, a meter running backwards and a sensor that went silent long ago, so
# their alarms and tickets exist within seconds of the start; live, a transformer overheats (compressed
# to 60 K/min: warning, alarm and a ticket within two minutes) and bad messages arrive. The silent
# sensor and the vacant flat's leak are named so the live run continues what the backfill began.
DEMO_USER = DEMO_ADMIN.username
# The dashboard keeps its port between runs (a bookmarked URL still works) unless it is taken.
PREFERRED_PORT = 8765
PORT_FILE = "demo-port"
# Without a terminal (output to a file or a CI log) the live table becomes one line this often.
LOG_EVERY_S = 10.0
# Hot-water charges and renewal notices follow the readings this often (the worker drafts notices only
# every 15 min and runs no billing; in production the billing run is scheduled or started from the API).
BILL_EVERY_S = 30.0
# A minute in, one resident card is reported lost: the controllers page shows its controller pending → synced.
LOSE_CARD_AFTER_S = 60.0


class DemoRefused(StewardError):
    status_code = 409


STALE_DEVICE = "HS1-MU"  # the heat station's make-up water unit (reports every 60 s)
VACANT_METER = "CW-1-1-302"  # cold water of a vacant flat
HISTORY_SCENARIOS = (
    f"vacant_flow:{VACANT_METER}@5m",
    # The low household's running hot tap drains its prepaid balance from the first replayed minute
    # (steward/demo_billing.py): its renewal notice is drafted within the first minutes of the demo.
    f"hot_tap:{LOW_METER}@0s",
    "reverse_flow@5m",
    f"stale_sensor:{STALE_DEVICE}@5m",
)
DEMO_SCENARIOS = (
    "transformer_overheat_fast@0s",
    f"vacant_flow:{VACANT_METER}@0s",
    f"hot_tap:{LOW_METER}@0s",
    f"stale_sensor:{STALE_DEVICE}@0s",
    "duplicates@30s",
    "malformed@20s",
    "bad_time@40s",
    "unknown_device@10s",
)

LABELS = {
    "zh": {
        "title": "Steward 演示 · 实时入库",
        "database": "数据库",
        "broker": "消息代理",
        "health": "健康检查",
        "status": "入库状态",
        "received": "已接收消息",
        "stored": "已入库读数",
        "duplicate": "重复（已去重）",
        "dead_lettered": "死信（格式错误）",
        "quarantined": "隔离（未知设备/时间异常）",
        "seq_gaps": "序号缺口",
        "published": "模拟器已发布 / 已确认",
        "sim": "模拟时间",
        "stop": "按 Ctrl-C 停止",
        "dashboard": "网页看板",
        "login": "演示账号",
        "stopping": "正在停止…（等待入库完成本批次）",
        "team": "演示团队（密码均为 {password}）",
        "role": "角色",
        "name": "姓名",
        "username": "登录名",
        "data": "数据目录 {path}：数据在两次运行之间保留；`steward demo --fresh` 清空重来",
        "resumed": "接续上次数据：最后一条读数 {last}，补放 {gap}",
        "fresh": "首次运行：补放最近 {gap} 的历史数据",
        "no_replay": "接续上次数据：最后一条读数 {last}，无需补放",
        "billing": "热水计费 {base}billing · 续费通知 {base}billing/notices · 物业费催缴 {base}dunning/{estate}"
        "（收费员 {clerk} / {password}）",
        "low": "余额偏低的住户 {unit}：热水龙头未关，余额 ¥{balance}，跌破 ¥50 后生成续费通知 → {url}",
        "billing_row": "热水续费通知（余额偏低的住户）",
        "notice": "续费通知 {number} 已生成：{unit} 余额 ¥{balance} → {url}",
        "cards": "门禁卡：为样例小区住户新发卡 {issued} 张（有效 {total} 张），"
        "{controllers} 台门禁控制器从空白名单开始同步 → {url}",
        "lost": "挂失演示：卡 {uid}（{unit}）已挂失，门禁控制器 {controller} 待同步 → {url}",
        "lost_synced": "门禁控制器 {controller} 已同步（{seconds} 秒）：卡 {uid} 已从白名单删除",
    },
    "en": {
        "title": "Steward demo · live ingest",
        "database": "Database",
        "broker": "Broker",
        "health": "Health check",
        "status": "Ingest status",
        "received": "Messages received",
        "stored": "Readings stored",
        "duplicate": "Duplicates (deduplicated)",
        "dead_lettered": "Dead letters (malformed)",
        "quarantined": "Quarantined (unknown device / bad time)",
        "seq_gaps": "Seq gaps",
        "published": "Simulator published / acked",
        "sim": "Simulated time",
        "stop": "Press Ctrl-C to stop",
        "dashboard": "Dashboards",
        "login": "Demo login",
        "stopping": "Stopping… (ingest finishes its batch)",
        "team": "Demo team (password {password} for all)",
        "role": "Role",
        "name": "Name",
        "username": "Login",
        "data": "Data directory {path}: data carries over between runs; `steward demo --fresh` starts over",
        "resumed": "Continuing from the stored data: last reading {last}, replaying the {gap} gap",
        "fresh": "First run: replaying the last {gap} of history",
        "no_replay": "Continuing from the stored data: last reading {last}, nothing to replay",
        "billing": "Hot-water billing {base}billing · renewal notices {base}billing/notices · property-fee dunning"
        " {base}dunning/{estate} (billing clerk {clerk} / {password})",
        "low": "Low balance: household {unit} left a hot tap running, balance ¥{balance}; below ¥50 its renewal"
        " notice is drafted → {url}",
        "billing_row": "Renewal notices (household running low)",
        "notice": "Renewal notice {number} drafted: {unit} balance ¥{balance} → {url}",
        "cards": "Access cards: {issued} resident cards issued now ({total} live); {controllers} door controllers start"
        " with empty whitelists and converge → {url}",
        "lost": "Card {uid} ({unit}) reported lost: controller {controller} pending sync → {url}",
        "lost_synced": "Controller {controller} synced in {seconds} s: card {uid} is off its whitelist",
    },
}


class Broker(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


@dataclass
class DemoResult:
    stored: int
    received: int
    first_stored_after_s: float | None
    alarms: int = 0
    tickets: int = 0


def _count_alarms_and_tickets(engine: Engine) -> tuple[int, int]:
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            alarms = conn.execute(text("SELECT count(*) FROM alarms")).scalar_one()
            tickets = conn.execute(text("SELECT count(*) FROM tickets")).scalar_one()
    except Exception:  # the summary must not hide why the demo stopped
        log.exception("could not count alarms and tickets")
        return 0, 0
    return int(alarms), int(tickets)


def start_broker(settings: Settings) -> tuple[Broker | None, str, str]:
    """(broker we own or None, URL, MQTT protocol) — Mosquitto if installed, else the Python fallback."""
    if settings.mqtt_url:
        return None, settings.mqtt_url, settings.mqtt_protocol
    if mosquitto_binary():
        broker = MosquittoProcess(settings.data_dir / "broker").start()
        return broker, broker.url, "5"
    from steward.python_broker import PythonBroker

    fallback = PythonBroker().start()
    return fallback, fallback.url, "3.1.1"


def dashboard_port(data_dir: Path) -> int:
    """The port of the previous run (or the preferred one) when it is free, else any free port; remembered."""
    remembered = data_dir / PORT_FILE
    try:
        wanted = int(remembered.read_text().strip())
    except (OSError, ValueError):
        wanted = PREFERRED_PORT
    port = wanted if _port_is_free(wanted) else free_port()
    remembered.write_text(f"{port}\n")
    return port


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def replay_start(last_report: datetime | None, live_start: datetime, backfill: timedelta) -> datetime | None:
    """Where the history replay begins: the gap since the last stored report, at most ``backfill`` long.

    None when there is nothing to replay. A longer gap keeps its older part empty, as a real
    platform's would have been while it was down."""
    start = live_start - backfill
    if last_report is not None:
        start = max(start, last_report)
    return start if start < live_start else None


def reset_demo_data(settings: Settings) -> None:
    """``--fresh``: stop the embedded database and delete it and the broker's state under the data dir."""
    from storage.embedded import stop_embedded_postgres

    if settings.database_url:
        raise ValueError("--fresh resets only the embedded database; STEWARD_DATABASE_URL points elsewhere")
    stop_embedded_postgres(settings.data_dir)
    for part in ("pgdata", "broker"):
        shutil.rmtree(settings.data_dir / part, ignore_errors=True)


def service_settings(settings: Settings, database: str, mqtt_url: str, protocol: str) -> Settings:
    """The settings the demo's ingest and worker run with."""
    return settings.model_copy(
        update={
            "database_url": database,
            "mqtt_url": mqtt_url,
            "mqtt_protocol": protocol,
            "mqtt_client_id": "steward-demo-ingest",
            "ingest_health_port": 0,
            # The demo's load is a few messages a second: show alarms being raised.
            "alarm_evaluation": True,
            # Notices the clerk sends are delivered to the log only, whatever the environment configures:
            # the demo never sends e-mail or WeCom messages to real people.
            "notify_channels": "log",
        }
    )


def start_api(settings: Settings, engine: Engine, port: int) -> uvicorn.Server:
    """Serve the API and dashboards from a background thread on loopback."""
    from steward.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine=engine), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, name="api", daemon=True).start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


def _table(lang: str, health: Health, sim: dict[str, object], urls: dict[str, str], *, stopping: bool = False) -> Table:
    t = LABELS[lang]
    c = health.counters
    table = Table(title=t["title"], show_header=False, min_width=72)
    table.add_column(style="bold cyan")
    table.add_column(justify="right")
    status_style = {"ok": "green", "degraded": "red", "disconnected": "yellow"}[health.status]
    table.add_row(t["status"], f"[{status_style}]{health.status}[/]")
    for key in ("received", "stored", "duplicate", "dead_lettered", "quarantined", "seq_gaps"):
        table.add_row(t[key], f"{getattr(c, key):,}")
    table.add_row(t["published"], f"{sim.get('published', 0):,} / {sim.get('acked', 0):,}")
    table.add_row(t["sim"], str(sim.get("sim_now", "—")))
    table.add_row(t["database"], urls["database"])
    table.add_row(t["broker"], urls["broker"])
    table.add_row(t["health"], urls["health"])
    table.add_row(t["dashboard"], f"[bold underline]{urls['dashboard']}[/]")
    table.add_row(t["login"], urls["login"])
    table.add_row(t["billing_row"], urls["billing"])
    table.caption = t["stopping"] if stopping else t["stop"]
    return table


def _status_line(lang: str, health: Health, sim: dict[str, object]) -> str:
    """The live table as one line, for output that is not a terminal (a log file, CI)."""
    t, c = LABELS[lang], health.counters
    parts = [f"{t['status']} {health.status}"]
    parts += [f"{t[k]} {getattr(c, k):,}" for k in ("received", "stored", "duplicate", "dead_lettered", "quarantined")]
    parts.append(f"{t['sim']} {sim.get('sim_now', '—')}")
    return " · ".join(parts)


def _team_table(lang: str) -> Table:
    t = LABELS[lang]
    table = Table(title=t["team"].format(password=DEMO_PASSWORD), min_width=48)
    for col in ("role", "name", "username"):
        table.add_column(t[col])
    for m in DEMO_TEAM:
        table.add_row(m.role_label(lang), m.name, m.username)
    return table


def _billing_line(key: str, lang: str, low: LowHousehold, base: str, **extra: str) -> str:
    """The low household's line: its unit, balance and account page."""
    return LABELS[lang][key].format(
        unit=low.unit,
        balance=f"{Decimal(low.balance_fen) / 100:.2f}",
        url=f"{base}billing/accounts/{low.account_id}",
        **extra,
    )


def _human(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{max(minutes, 0)} min"


def run_demo(
    settings: Settings,
    stop: threading.Event,
    *,
    estate_file: Path = SAMPLE_ESTATE,
    seed: int = 7,
    backfill: timedelta = timedelta(hours=2),
    duration_s: float | None = None,
    lang: str = "zh",
    console: Console | None = None,
    fresh: bool = False,
) -> DemoResult:
    from alarms.install import install_rule_packs
    from alarms.stale import restart_watching
    from core import clock
    from facility.importer import import_estate
    from facility.last_readings import last_registers, last_report_at
    from ingest.pipeline import run_ingest
    from protocol.estate_file import load_estate_file
    from simulators import Fleet, RegisterStart, RunStats, run_simulation
    from steward.demo_billing import catch_up, low_household, seed_billing
    from steward.demo_cards import controller_synced, issue_fleet_cards, lose_one
    from storage.db import database_url, make_engine, make_sessionmaker, transaction
    from storage.migrate import upgrade
    from worker.runner import run_worker

    if settings.env is Environment.production:
        raise DemoRefused(
            "steward demo refuses to run with STEWARD_ENV=production: it creates the demo account and sample data"
            " / 生产环境不能运行演示（会创建演示账号和样例数据）"
        )
    console = console or Console()
    labels = LABELS[lang]
    if fresh:
        reset_demo_data(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with console.status("启动数据库 / starting the database…"):
        url = database_url(settings)
        upgrade(url)
        engine = make_engine(settings, url=url)
        sessions = make_sessionmaker(engine)
        with transaction(sessions) as session:
            summary = import_estate(session, load_estate_file(estate_file))
            ensure_demo_team(session, summary.estate)
            install_rule_packs(session)
            bill_seed = seed_billing(session, summary.estate, clock.now())
            low = low_household(session, bill_seed.estate_id)
            last_report = last_report_at(session, summary.estate)
            stored = {code: RegisterStart(*regs) for code, regs in last_registers(session, summary.estate).items()}
            # The residents' cards, issued on the platform: the live controllers start empty and converge.
            residents = Fleet.from_file(estate_file, seed=seed, start=clock.now(), initial_cards=False).cards()
            cards, cards_new = issue_fleet_cards(session, bill_seed.estate_id, residents, clock.now())
    console.print(
        f"[green]✓[/] 小区 estate [bold]{summary.estate}[/]: {summary.units} 户 units, {summary.devices} 台设备 devices"
    )
    console.print(labels["data"].format(path=settings.data_dir.resolve()), highlight=False)
    broker, mqtt_url, protocol = start_broker(settings)
    host, port = mqtt_url.removeprefix("mqtt://").removeprefix("tcp://").split(":")
    console.print(f"[green]✓[/] 消息代理 broker {mqtt_url} (MQTT {protocol})")

    health = Health()
    health_port = settings.ingest_health_port or free_port()
    health_server = serve_health(health, health_port)
    ingest_settings = service_settings(settings, url, mqtt_url, protocol)
    live_stats: dict[str, object] = {}

    def on_progress(s: RunStats) -> None:
        live_stats.update(published=s.published, acked=s.acked, sim_now=f"{s.sim_now:%Y-%m-%d %H:%M:%S}")

    live_start = datetime.now(UTC).replace(microsecond=0)
    history_start = replay_start(last_report, live_start, backfill)
    if last_report is None:
        console.print(labels["fresh"].format(gap=_human(backfill)), highlight=False)
    elif history_start is None:
        console.print(labels["no_replay"].format(last=f"{last_report:%Y-%m-%d %H:%M:%S %Z}"), highlight=False)
    else:
        console.print(
            labels["resumed"].format(
                last=f"{last_report:%Y-%m-%d %H:%M:%S %Z}", gap=_human(live_start - history_start)
            ),
            highlight=False,
        )
    # The live fleet's meters continue where the replay will leave them (or where the stored data
    # ends): a register that restarted from the seed would read as a reset or replacement.
    if history_start is not None:
        replayed = Fleet.from_file(
            estate_file, seed=seed, start=history_start, scenarios=HISTORY_SCENARIOS, registers=stored
        )
        live_registers = replayed.meter_registers_at(live_start)
    else:
        live_registers = stored
    if last_report is not None:
        # The demo was the platform and its devices: while it was stopped nobody watched and nothing
        # reported. Each device gets one full limit from now before it is called silent.
        with transaction(sessions) as session:
            restart_watching(session, live_start)

    def live() -> None:
        # The live fleet starts once the replay is published: a meter's first stored reading is then its
        # oldest, so billing opens its baseline there. A live reading stored first would become the
        # baseline and leave the replayed hour behind the cursor, never charged (the low household's
        # running tap among it). The live pacer sends what fell due meanwhile at once, on its grid.
        while history_start is not None and not history_done.is_set() and not stop.is_set():
            history_done.wait(0.2)
        run_simulation(
            estate_file,
            host,
            int(port),
            seed=seed,
            speed=1.0,
            start=live_start,
            scenarios=DEMO_SCENARIOS,
            stop_event=stop,
            on_progress=on_progress,
            client_id="steward-demo-live",
            registers=live_registers,
            initial_cards=False,  # the platform's cards reach them through the whitelist sync
        )

    history_done = threading.Event()  # the replay has published everything (or given up)

    def history(start: datetime) -> None:
        try:
            replay_history(start)
        finally:
            history_done.set()

    def replay_history(start: datetime) -> None:
        # Replay the recent past (or the gap since the last run) at full speed so charts and meters
        # have history from the first minute. Same seed as the live run, ending where it begins: every
        # device keeps one reporting grid across the boundary (a different seed shifted each device's
        # phase, and a 1-minute gap left 60-second sensors silent for up to 2 minutes).
        run_simulation(
            estate_file,
            host,
            int(port),
            seed=seed,
            speed=0,
            rate=2_000,
            duration_s=(live_start - start).total_seconds(),
            start=start,
            scenarios=HISTORY_SCENARIOS,
            commands=False,  # valve commands are for the live fleet (one ack per command)
            stop_event=stop,
            client_id="steward-demo-history",
            registers=stored,
        )

    threads = [
        threading.Thread(target=run_ingest, args=(ingest_settings, engine, stop, health), name="ingest"),
        # Stale-data watchdog, inspection rounds, SLA escalation, meter anomalies over days, valve commands.
        threading.Thread(target=run_worker, args=(ingest_settings, engine, stop), name="worker", daemon=True),
        threading.Thread(target=live, name="simulator-live", daemon=True),
    ]
    if history_start is not None:
        threads.append(threading.Thread(target=history, args=(history_start,), name="simulator-history", daemon=True))
    replay = threads[-1] if history_start is not None else None
    api_base = ""  # set below, once the dashboard's port is known

    def charge() -> None:
        """Charge the replayed readings as soon as they are stored, then keep up with the live ones."""
        if replay is not None:
            replay.join()
        # Ingest stores what the replay published within a few seconds: wait until the count settles.
        last, settled = -1, time.monotonic() + 30
        while not stop.wait(1.0) and health.counters.stored != last and time.monotonic() < settled:
            last = health.counters.stored
        announced = False
        while not stop.is_set():
            try:
                done = catch_up(sessions, bill_seed.estate_id, clock.now())
                with sessions() as session:
                    now_low = low_household(session, bill_seed.estate_id)
            except Exception:  # the demo goes on; the next round retries
                log.exception("demo billing round failed")
            else:
                # Said when something happened: an idle round every 30 s would bury the status lines.
                log.log(
                    logging.INFO if done.run.charges or done.drafted else logging.DEBUG,
                    "demo billing: %d charges, %d fen, notices drafted %s",
                    done.run.charges,
                    done.run.amount_fen,
                    done.drafted,
                )
                if now_low is not None and now_low.notice_number and not announced:
                    announced = True
                    for line_lang in ("zh", "en"):
                        console.print(
                            "[bold yellow]➜[/] "
                            + _billing_line("notice", line_lang, now_low, api_base, number=now_low.notice_number),
                            highlight=False,
                            soft_wrap=True,
                        )
            stop.wait(BILL_EVERY_S)

    threads.append(threading.Thread(target=charge, name="billing", daemon=True))

    def lose_card() -> None:
        """A minute in, a resident reports a card lost: its controller goes pending, then synced."""
        if stop.wait(LOSE_CARD_AFTER_S):
            return
        try:
            with transaction(sessions) as session:
                lost = lose_one(session, cards)
        except Exception:  # the demo goes on without it
            log.exception("demo: reporting a card lost failed")
            return
        if lost is None:
            return
        at = time.monotonic()
        page = f"{api_base}access/controllers"
        for line_lang in ("zh", "en"):
            console.print(
                "[bold yellow]➜[/] "
                + LABELS[line_lang]["lost"].format(uid=lost.uid, unit=lost.unit, controller=lost.controller, url=page),
                highlight=False,
                soft_wrap=True,
            )
        while not stop.wait(0.2):
            with sessions() as session:
                if controller_synced(session, bill_seed.estate_id, lost.controller):
                    break
        else:
            return
        for line_lang in ("zh", "en"):
            console.print(
                "[bold green]✓[/] "
                + LABELS[line_lang]["lost_synced"].format(
                    controller=lost.controller, seconds=f"{time.monotonic() - at:.1f}", uid=lost.uid
                ),
                highlight=False,
                soft_wrap=True,
            )

    threads.append(threading.Thread(target=lose_card, name="lose-card", daemon=True))
    api_port = dashboard_port(settings.data_dir)
    api_server = start_api(settings.model_copy(update={"database_url": url}), engine, api_port)
    urls = {
        "database": url.split("?")[0] + (" (embedded)" if not settings.database_url else ""),
        "broker": mqtt_url + (" (embedded)" if broker else ""),
        "health": f"http://127.0.0.1:{health_port}/health  ·  /metrics",
        "dashboard": f"http://127.0.0.1:{api_port}/",
        "login": f"{DEMO_USER} / {DEMO_PASSWORD}",
        "billing": f"http://127.0.0.1:{api_port}/billing/notices  ({LOW_UNIT})",
    }
    console.print(_team_table(lang))
    api_base = f"http://127.0.0.1:{api_port}/"
    for line_lang in ("zh", "en"):  # Chinese first, English too, whatever --lang says
        console.print(
            LABELS[line_lang]["billing"].format(
                base=api_base, estate=summary.estate, clerk=DEMO_CLERK, password=DEMO_PASSWORD
            ),
            highlight=False,
            soft_wrap=True,
        )
        if low is not None:
            console.print(_billing_line("low", line_lang, low, api_base), highlight=False, soft_wrap=True)
        console.print(
            LABELS[line_lang]["cards"].format(
                issued=cards_new,
                total=len(cards),
                controllers=len(residents),
                url=f"{api_base}access/controllers",
            ),
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"[bold green]➜ {labels['dashboard']}: http://127.0.0.1:{api_port}/[/]  ({DEMO_USER} / {DEMO_PASSWORD})"
    )
    started = time.monotonic()
    first_stored: float | None = None
    for t in threads:
        t.start()

    def finished() -> bool:
        nonlocal first_stored
        if first_stored is None and health.counters.stored > 0:
            first_stored = time.monotonic() - started
        if duration_s is not None and time.monotonic() - started >= duration_s:
            stop.set()
        return stop.is_set()

    try:
        if console.is_terminal:
            with Live(_table(lang, health, live_stats, urls), console=console, refresh_per_second=2) as view:
                while not stop.wait(0.5) and not finished():
                    view.update(_table(lang, health, live_stats, urls))
                # Said the moment Ctrl-C (or the duration) ends the run, not after everything has stopped.
                view.update(_table(lang, health, live_stats, urls, stopping=True))
        else:
            console.print(labels["stop"], highlight=False)
            next_line = time.monotonic()
            while not stop.wait(0.5) and not finished():
                if time.monotonic() >= next_line:
                    console.print(_status_line(lang, health, live_stats), highlight=False, soft_wrap=True)
                    next_line += LOG_EVERY_S
            console.print(labels["stopping"], highlight=False)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        health_server.shutdown()
        api_server.should_exit = True
        alarms, tickets = _count_alarms_and_tickets(engine)
        if broker is not None:
            broker.stop()
        engine.dispose()
        if not settings.database_url:
            from storage.embedded import stop_embedded_postgres

            stop_embedded_postgres(settings.data_dir)
    result = DemoResult(health.counters.stored, health.counters.received, first_stored, alarms, tickets)
    first = f"{first_stored:.1f}" if first_stored is not None else "—"
    console.print(
        f"demo stopped: stored={result.stored} received={result.received} first_stored_after_s={first} "
        f"alarms={alarms} tickets={tickets}",
        soft_wrap=True,  # one line, whatever the terminal width: scripts and tests parse it
    )
    return result
