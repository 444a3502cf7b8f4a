"""Helpers of the example-site end-to-end tests: run the real master on ``example/``.

:class:`ExampleSite` does what ``make run`` does (``manage.py migrate``, then
``shmchannels -c shmchannels.conf.py`` from ``example/``), but isolated from a developer's
own site: a free port (``-b`` overrides the config file's bind), a temporary sqlite file
(``SHMCHANNELS_EXAMPLE_DB``) and a shared-memory segment of its own
(``SHMCHANNELS_SEGMENT``, which the example's settings pass to the layer as ``name``).
Teardown stops the master by pid (SIGTERM, SIGKILL after a deadline), kills any child it
left behind (by pid) and unlinks the segment.

:func:`make_chromium` starts headless Debian Chromium through chromedriver with a fresh
profile.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.harness import descendants as descendant_pids
from tests.supervisor.harness import alive as pid_alive
from tests.supervisor.harness import cmdline as process_title
from tests.supervisor.harness import free_port, wait_for

__all__ = ["ExampleSite", "SiteError", "browser_available", "descendant_pids", "free_port", "make_chromium",
           "pid_alive", "process_title", "wait_for"]

REPO_DIR = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO_DIR / "example"
BIN_DIR = Path(sys.executable).parent
SHMCHANNELS = BIN_DIR / "shmchannels"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

BOOT_DEADLINE = 45.0
STOP_DEADLINE = 20.0

# Plain HTTP to 127.0.0.1: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SiteError(AssertionError):
    """The example site did not start, answer or stop as expected (message has the log)."""


class ExampleSite:
    """The example chat site served by a real ``shmchannels`` master in a subprocess.

    Args:
        workdir: a private temporary directory (database, master log).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.origin = self.base_url
        # Short and unique: the segment (and anything derived from it) is ours alone.
        self.segment = "shmcex" + secrets.token_hex(5)
        self.db_path = workdir / "db.sqlite3"
        self.log_path = workdir / "master.log"
        self.env = dict(os.environ)
        self.env.update({
            # The suite's conftest points this at the tests' project: the site needs its own.
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "SHMCHANNELS_EXAMPLE_DB": str(self.db_path),
            "SHMCHANNELS_SEGMENT": self.segment,
            "PYTHONUNBUFFERED": "1",
        })
        self.env.pop("SHMCHANNELS_CMD_ARGS", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._known_children: set[int] = set()

    # -- processes -------------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py ARGS`` of the example (same settings, DB and segment as the site)."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=EXAMPLE_DIR, env=self.env,
            capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise SiteError(f"manage.py {' '.join(args)} exited {result.returncode}:\n"
                            f"{result.stdout}\n{result.stderr}")
        return result

    def start(self) -> None:
        """Migrate the temporary database, start the master, wait until ``/`` answers 200."""
        self.manage("migrate", "--noinput", "-v", "0")
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(SHMCHANNELS), "-c", "shmchannels.conf.py", "-b", f"127.0.0.1:{self.port}"],
            cwd=EXAMPLE_DIR, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + BOOT_DEADLINE
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SiteError(f"the master exited with {self.proc.returncode} while booting\n{self.log_tail()}")
            self._known_children.update(descendant_pids(self.proc.pid))
            try:
                status, _ = self.get("/", timeout=5)
                if status == 200:
                    self._known_children.update(descendant_pids(self.proc.pid))
                    return
                last_error = f"HTTP {status}"
            except OSError as exc:
                last_error = repr(exc)
            time.sleep(0.2)
        raise SiteError(f"the site did not answer GET / within {BOOT_DEADLINE:.0f} s "
                        f"(last: {last_error})\n{self.log_tail()}")

    def children(self) -> list[int]:
        """Current processes below the master (and remembered for the teardown)."""
        if self.proc is None:
            return []
        pids = descendant_pids(self.proc.pid)
        self._known_children.update(pids)
        return pids

    def child_of_kind(self, kind: str) -> int:
        """Pid of a running child whose process title names ``kind`` (``interface``/``worker``)."""
        def find() -> int | None:
            for pid in self.children():
                if kind in process_title(pid):
                    return pid
            return None
        return wait_for(find, 10.0, f"a child process titled {kind!r}")

    def stop(self) -> int | None:
        """Stop the master by pid (SIGTERM, SIGKILL after a deadline), then clean up.

        Returns:
            The master's exit status (negative: killed by that signal), None if never started.
        """
        try:
            if self.proc is not None:
                self.children()
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGTERM)
                    try:
                        self.proc.wait(timeout=STOP_DEADLINE)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(timeout=10)
                # A master killed hard (or a buggy one) may leave children: kill them by pid.
                for pid in sorted(self._known_children):
                    if pid_alive(pid):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            self.unlink_segment()
        return None if self.proc is None else self.proc.returncode

    def segment_exists(self) -> bool:
        """True while the layer's segment file is in /dev/shm."""
        return Path("/dev/shm", self.segment).exists()

    def unlink_segment(self) -> None:
        """Remove the site's shared-memory segment (normally the master already did)."""
        subprocess.run([sys.executable, "-m", "shmlayer", "unlink", self.segment], cwd=REPO_DIR,
                       env=self.env, capture_output=True, timeout=30)
        # Whatever the layer derives from the unique name (segment, semaphores) is ours.
        shm_dir = Path("/dev/shm")
        if shm_dir.is_dir():
            for entry in shm_dir.iterdir():
                if self.segment in entry.name:
                    try:
                        entry.unlink()
                    except OSError:
                        pass

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the master's log (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no master log)"
        return "---- master log (tail) ----\n" + "\n".join(text.splitlines()[-lines:])

    # -- talking to it ---------------------------------------------------------------

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        """GET ``path`` (redirects followed); return (status, body text)."""
        try:
            with _OPENER.open(self.base_url + path, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def get_json(self, path: str) -> Any:
        """GET ``path`` and decode its JSON body (it must answer 200)."""
        status, body = self.get(path)
        if status != 200:
            raise SiteError(f"GET {path} answered {status}: {body[:300]}")
        return json.loads(body)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the site's database directly (what the workers wrote)."""
        with sqlite3.connect(self.db_path, timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def saved_messages(self, room: str) -> list[tuple[str, str]]:
        """(username, text) of every ChatMessage saved in ``room``, oldest first."""
        return self.query(
            "SELECT m.username, m.text FROM chat_chatmessage m JOIN chat_room r ON m.room_id = r.id "
            "WHERE r.name = ? ORDER BY m.id", (room,))


def browser_available() -> bool:
    """True when Debian's chromium and chromium-driver are installed."""
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


def make_chromium(profile_dir: Path) -> Any:
    """Start headless Chromium (through /usr/bin/chromedriver) with a fresh profile.

    Args:
        profile_dir: an empty directory used as ``--user-data-dir``.

    Returns:
        A selenium ``webdriver.Chrome``; the caller must ``quit()`` it.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1100,900",
                 f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(15)
    driver.set_script_timeout(15)
    return driver
