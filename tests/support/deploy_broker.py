"""Mosquitto running the shipped production configuration (deploy/mosquitto) on loopback ports.

Only what cannot be shipped is changed: the listeners' ports (free loopback ones), the paths of the password
files, ACLs, certificates and the data directory, and the user to run as. The password files are written here
with ``mosquitto_passwd``; the TLS listener gets a throwaway CA, server and client certificates from openssl.
"""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from steward.broker import free_port, wait_for_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path  # signed by the CA for the device DEV-A
    client_key: Path
    rogue_cert: Path  # self-signed: a client certificate the broker must refuse
    rogue_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(directory: Path, *, client_cn: str = "DEV-A") -> Certs:
    """A throwaway CA, a server certificate for localhost / 127.0.0.1 and client certificates (P-256 keys)."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Steward test CA",
             cwd=directory)  # fmt: skip
    (directory / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn, ext in (("server", "localhost", "server.ext"), ("client", client_cn, "client.ext")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", ext, cwd=directory)  # fmt: skip
    rogue = ["-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2", "-subj", f"/CN={client_cn}"]
    _openssl("req", "-x509", *ec, *rogue, cwd=directory)
    return Certs(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        rogue_cert=directory / "rogue.crt",
        rogue_key=directory / "rogue.key",
    )


def _passwd(path: Path, accounts: dict[str, str]) -> None:
    path.touch()
    for user, pw in accounts.items():
        subprocess.run(["mosquitto_passwd", "-b", str(path), user, pw], check=True, capture_output=True)


@dataclass
class DeployBroker:
    """The shipped configuration on loopback. ``platform_port`` is the platform's own listener (the device
    listener's port when the configuration has none, as before issue 9 #2)."""

    binary: str
    directory: Path
    config: Path
    device_port: int
    platform_port: int
    tls_port: int | None
    certs: Certs
    platform_tls_port: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> DeployBroker:
        log = open(self.directory / "stderr.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        for port in {self.device_port, self.platform_port, self.tls_port, self.platform_tls_port} - {None}:
            assert port is not None
            wait_for_port(port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def deploy_broker(
    binary: str,
    directory: Path,
    *,
    devices: dict[str, str],
    platform: dict[str, str],
    extra_acl: str = "",
    require_certificate: bool = False,
    acl_text: str | None = None,
) -> DeployBroker:
    """Write the shipped configuration for loopback under ``directory`` (not started yet).

    ``devices`` are the device listeners' accounts, ``platform`` the platform listener's; ``extra_acl`` is
    appended to the shipped device ACL (a simulator gateway's lines, say), ``acl_text`` replaces it."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = (DEPLOY / "mosquitto.conf").read_text()
    has_platform_listener = re.search(r"^listener 1884\b", conf, re.M) is not None
    device_port = free_port()
    platform_port = free_port() if has_platform_listener else device_port
    tls_port = free_port() if re.search(r"^listener 8883\b", conf, re.M) else None
    platform_tls_port = free_port() if re.search(r"^listener 8884\b", conf, re.M) else None
    conf = re.sub(r"^listener 1883\b.*$", f"listener {device_port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener 1884\b.*$", f"listener {platform_port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener 8883\b.*$", f"listener {tls_port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener 8884\b.*$", f"listener {platform_tls_port} 127.0.0.1", conf, flags=re.M)
    if require_certificate:  # the device TLS listener's option (shipped commented out)
        conf = conf.replace("# require_certificate true", "require_certificate true")
    certs = make_certs(directory / "certs")
    _passwd(directory / "passwd", devices if has_platform_listener else {**devices, **platform})
    _passwd(directory / "platform-passwd", platform)
    (directory / "acl").write_text((acl_text if acl_text is not None else (DEPLOY / "acl").read_text()) + extra_acl)
    if (DEPLOY / "platform-acl").exists():
        shutil.copy(DEPLOY / "platform-acl", directory / "platform-acl")
    (directory / "data").mkdir(exist_ok=True)
    for shipped, here in (
        ("/mosquitto/config/platform-passwd", directory / "platform-passwd"),
        ("/mosquitto/config/platform-acl", directory / "platform-acl"),
        ("/mosquitto/config/passwd", directory / "passwd"),
        ("/mosquitto/config/acl", directory / "acl"),
        ("/mosquitto/certs/ca.crt", certs.ca),
        ("/mosquitto/certs/server.crt", certs.server_cert),
        ("/mosquitto/certs/server.key", certs.server_key),
        ("/mosquitto/data/", f"{directory / 'data'}/"),
    ):
        conf = conf.replace(shipped, str(here))
    # Started as root, mosquitto would drop to user "mosquitto", which cannot read our files.
    conf += f"\nuser {getpass.getuser()}\nlog_dest file {directory / 'mosquitto.log'}\n"
    config = directory / "mosquitto.conf"
    config.write_text(conf)
    return DeployBroker(binary, directory, config, device_port, platform_port, tls_port, certs, platform_tls_port)
