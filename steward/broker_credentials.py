"""Broker accounts for a deployment: Mosquitto password files and the device credential sheet.

``steward devices credentials`` writes, into one directory the broker mounts (docker-compose.yml):

- ``passwd``: one account per device, username = device code (the device listeners' ``%u`` ACL,
  DESIGN §4), plus gateway accounts (one login publishing for every device of an estate: the simulator);
- ``platform-passwd``: the platform account Steward's processes use (``STEWARD_MQTT_USERNAME`` /
  ``STEWARD_MQTT_PASSWORD``) — never a device's;
- ``acl``: one block per device (its own estate only), as ``steward broker acl`` writes it;
- ``devices.csv``: the credential sheet (estate, kind, username, password) handed to installers.

The hashes are Mosquitto's own ``$7$`` format (PBKDF2-HMAC-SHA512, as ``mosquitto_passwd`` writes since
2.0), computed here so no ``mosquitto_passwd`` binary is needed on the host that runs the command.
Re-running keeps the passwords already on the sheet: adding a device does not re-key the fleet.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# mosquitto_passwd's defaults (src/password_mosquitto.c: SALT_LEN 12, PW_DEFAULT_ITERATIONS 101). Device
# secrets are random 24-character tokens, so the iteration count is not what protects them; the broker
# pays it on every CONNECT of a whole fleet.
SALT_BYTES = 12
ITERATIONS = 101
SHEET_FIELDS = ("estate", "kind", "username", "password")


@dataclass(frozen=True)
class Account:
    """A broker login: a device (username = its code) or a gateway publishing for a whole estate."""

    estate: str
    username: str
    password: str
    kind: str = "device"


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``$7$iterations$salt$hash`` (base64), the line format after ``username:`` in a Mosquitto password file."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (as the broker decides)."""
    _, kind, iterations, salt, digest = hashed.split("$")
    if kind != "7":
        raise ValueError(f"not a PBKDF2-SHA512 ($7$) hash: {hashed[:8]}…")
    again = hash_password(password, salt=base64.b64decode(salt), iterations=int(iterations))
    return secrets.compare_digest(again.rsplit("$", 1)[1], digest)


def new_secret() -> str:
    """A password: 24 URL-safe characters (144 bits), typeable on an installer's tool."""
    return secrets.token_urlsafe(18)


def read_sheet(path: Path) -> dict[str, Account]:
    """The existing credential sheet, by username (empty when there is none yet)."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {r["username"]: Account(r["estate"], r["username"], r["password"], r["kind"]) for r in rows}


def plan_accounts(
    devices: Iterable[tuple[str, str]], gateways: Iterable[tuple[str, str]], existing: Mapping[str, Account]
) -> list[Account]:
    """Accounts for ``(device, estate)`` pairs and ``(gateway user, estate)`` pairs: the sheet's password when
    the same login of the same estate is on it already, a new one otherwise."""
    wanted = [(estate, user, "device") for user, estate in devices] + [(e, u, "gateway") for u, e in gateways]
    out = []
    for estate, user, kind in sorted(set(wanted)):
        old = existing.get(user)
        keep = old is not None and (old.estate, old.kind) == (estate, kind)
        out.append(Account(estate, user, old.password if old and keep else new_secret(), kind))
    return out


def passwd_text(logins: Mapping[str, str]) -> str:
    return "".join(f"{user}:{hash_password(pw)}\n" for user, pw in logins.items())


def write_credentials(directory: Path, accounts: list[Account], *, platform: tuple[str, str], acl: str) -> None:
    """Write ``passwd``, ``platform-passwd``, ``acl`` and ``devices.csv`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    # The broker (another user, in its container) reads the password files: hashes only. The sheet holds
    # every password in clear and is created owner-only.
    (directory / "passwd").write_text(passwd_text({a.username: a.password for a in accounts}))
    (directory / "platform-passwd").write_text(passwd_text(dict([platform])))
    (directory / "acl").write_text(acl)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SHEET_FIELDS)
    writer.writerows((a.estate, a.kind, a.username, a.password) for a in accounts)
    sheet = directory / "devices.csv"
    fd = os.open(sheet, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
