"""A uvicorn server on 127.0.0.1 in a thread, and headless Debian Chromium driven by playwright.

Also a command that saves a screenshot of the browse page (docs/browse.png is made with it)::

    .venv/bin/python tests/serve/serve_browser.py RUN_DIR OUT.png [PAGE_URL]
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_missing() -> str | None:
    """Why a browser test cannot run here (None when it can)."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return f"Debian's chromium is not installed ({CHROMIUM}); apt-get install chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; its own browsers are never downloaded)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(app: Any, timeout: float = 60.0) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 in a thread; yields the base URL once it answers, stops it after."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + timeout
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def chromium_page(width: int = 1280, height: int = 1100) -> Iterator[Any]:
    """A fresh page of headless Debian Chromium (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def open_browse(page: Any, base: str, url: str) -> None:
    """Open the browse page on ``url`` and wait until its results and histogram have rendered."""
    from urllib.parse import quote

    page.goto(f"{base}/browse?url={quote(url, safe='')}")
    page.wait_for_selector("body[data-state='ready']", timeout=30_000)
    page.wait_for_function("() => { const img = document.getElementById('histogram'); return img.complete; }")


def main(argv: list[str]) -> None:
    from linksage.serve.app import create_app

    run_dir, out = Path(argv[0]), Path(argv[1])
    with running_server(create_app(run_dir, reload=False)) as base, chromium_page() as page:
        if len(argv) > 2:
            url = argv[2]
        else:
            import json
            import urllib.request

            with urllib.request.urlopen(f"{base}/v1/pages/sample?n=1&seed=0") as response:
                url = json.load(response)["urls"][0]
        open_browse(page, base, url)
        page.screenshot(path=str(out), full_page=True)
    print(f"saved {out} ({url})")


if __name__ == "__main__":
    main(sys.argv[1:])
