"""Headless Chromium (Debian's chromium + chromium-driver) driven by Selenium, recording every network request."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,1000",
)


class Browser:
    """One Chromium with a fresh profile; `requests` gathers the URL of every request the page made."""

    def __init__(self, profile_dir: Path) -> None:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for flag in _FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile_dir}")
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        # A Service with an explicit path keeps Selenium Manager from looking for a driver online.
        self.driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        self._requests: list[str] = []

    @property
    def requests(self) -> list[str]:
        """Every URL requested so far (CDP Network.requestWillBeSent and WebSocket creations)."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self._requests.append(message["params"]["request"]["url"])
            elif message["method"] == "Network.webSocketCreated":
                self._requests.append(message["params"]["url"])
        return list(self._requests)

    def forget(self) -> None:
        """Drop what was recorded so far (e.g. what the browser loaded for itself before our page)."""
        _ = self.requests
        self._requests.clear()

    def quit(self) -> None:
        self.driver.quit()


def off_host(urls: list[str], host: str = "127.0.0.1") -> list[str]:
    """The requests that went anywhere but `host` (data: and blob: URLs never leave the page)."""
    return [url for url in urls if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname != host]
