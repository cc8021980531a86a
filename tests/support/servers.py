"""Real Mosquitto and InfluxDB servers for tests, each on free ports in its own temp dir.

Both support ``stop()`` / ``start()`` / ``kill()`` so chaos tests can restart them; data
survives a restart (Mosquitto with persistence, InfluxDB on disk).
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.support.ports import free_port, wait_listening


class _Server:
    binary = ""
    process: subprocess.Popen[bytes] | None = None

    def __init__(self, workdir: Path) -> None:
        if shutil.which(self.binary) is None:
            raise RuntimeError(f"{self.binary} is not installed: run scripts/test.sh, which installs it")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.binary}.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        log.close()
        try:
            self._wait_ready()
        except TimeoutError:
            self.kill()
            raise RuntimeError(
                f"{self.binary} did not start; log:\n{self.log_path.read_text()[-3000:]}"
            ) from None
        except BaseException:
            self.kill()  # whatever went wrong while setting it up, never leak the process
            raise

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM): the server flushes its state."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Hard stop (SIGKILL), as a crash."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Mosquitto(_Server):
    """``mosquitto`` with anonymous access, MQTT 3.1.1 and 5, persistence in its workdir."""

    binary = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, extra_config: str = "") -> None:
        super().__init__(workdir)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.config_path = workdir / "mosquitto.conf"
        self.config_path.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n" + ("user root\n" if os.geteuid() == 0 else "") + "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 100\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n" + extra_config
        )

    def _command(self) -> list[str]:
        return ["mosquitto", "-c", str(self.config_path)]

    def _wait_ready(self) -> None:
        wait_listening(self.port)


class InfluxDB(_Server):
    """A 1.x ``influxd`` with HTTP on a free port; ``database`` is created at start."""

    binary = "influxd"

    def __init__(self, workdir: Path, database: str = "zhizao", *,
                 tls: tuple[Path, Path] | None = None) -> None:
        """``tls=(cert, key)`` serves HTTPS only (the helper itself trusts any certificate)."""
        super().__init__(workdir)
        self.port = free_port()
        self.rpc_port = free_port()
        self.database = database
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._ssl = ssl._create_unverified_context() if tls else None
        https = (f'  https-enabled = true\n  https-certificate = "{tls[0]}"\n'
                 f'  https-private-key = "{tls[1]}"\n' if tls else "")
        self.config_path = workdir / "influxdb.conf"
        self.config_path.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{workdir}/meta"\n'
            f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n  query-log-enabled = false\n'
            '  wal-fsync-delay = "0s"\n'
            f'[http]\n  enabled = true\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            f"  max-body-size = 0\n{https}"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )

    def _command(self) -> list[str]:
        return ["influxd", "run", "-config", str(self.config_path)]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise TimeoutError
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1, context=self._ssl) as resp:
                    if resp.status == 204:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise TimeoutError
        self._setup()

    def _setup(self) -> None:
        """Prepare the answering server (subclasses add users, settings ...): the database."""
        self.query(f'CREATE DATABASE "{self.database}"')

    def query(self, q: str, db: str | None = None, *, user: str | None = None,
              password: str | None = None) -> bytes:
        """Run InfluxQL through ``/query`` (POST) and return the raw JSON body.

        Credentials go in the URL's query string: influxd 1.x ignores them in a POSTed form."""
        params = {"q": q}
        if db:
            params["db"] = db
        creds = urllib.parse.urlencode({"u": user, "p": password or ""}) if user else ""
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query?{creds}", data=data, timeout=30,
                                    context=self._ssl) as resp:
            body: bytes = resp.read()
            return body


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
