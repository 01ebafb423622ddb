"""The server's state: the current store snapshot and run snapshot, replaced in the background.

A thread checks every ``serve.reload_interval_s`` whether the store has a newer version or a stage of
the run directory has a new manifest; it builds the new snapshot aside (the old one keeps serving) and
then swaps one reference. A request reads each reference once, so it sees one whole version, never a
mix. A failed load keeps the previous snapshot, is logged and counted, and is retried at the next check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from linksage import log
from linksage.config.serve import ServeConfig
from linksage.config.store import StoreConfig
from linksage.search.indices import store_path
from linksage.serve.errors import Unavailable
from linksage.serve.run_view import RunSnapshot, run_keys
from linksage.serve.store_view import StoreSnapshot, newest_version


class ServeState:
    """Snapshots of one run directory and its store, kept current by ``refresh`` (see the module docstring)."""

    def __init__(self, run_dir: Path | str, store_cfg: StoreConfig, cfg: ServeConfig) -> None:
        self.run_dir = Path(run_dir)
        self.store_cfg = store_cfg
        self.cfg = cfg
        self.store_path = store_path(self.run_dir, store_cfg)
        self.store: StoreSnapshot | None = None
        self.run: RunSnapshot | None = None
        self.reloads = 0
        self.reload_errors = 0
        self.last_error: str | None = None
        self.last_check = 0.0
        self.write_lock = threading.Lock()  # this server's own store writes, one at a time
        self._refresh_lock = threading.Lock()  # one refresh at a time (the poller, or a request after a write)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what requests read --------------------------------------------------------------------------

    def need_store(self) -> StoreSnapshot:
        store = self.store
        if store is None:
            reason = self.last_error or f"no embedding store at {self.store_path} yet; run `linksage run embed`"
            raise Unavailable(f"the store is not loaded: {reason}")
        return store

    def need_run(self) -> RunSnapshot:
        run = self.run
        if run is None:
            raise Unavailable(f"the run directory {self.run_dir} is not loaded: {self.last_error or 'loading'}")
        return run

    # -- reloading -----------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Load whatever changed since the last call; True when a snapshot was replaced."""
        with self._refresh_lock:
            self.last_check = time.time()
            errors: list[str] = []
            changed = self._try(self._refresh_run, errors) | self._try(self._refresh_store, errors)
            self.last_error = "; ".join(errors) or None
            self.reloads += int(changed)
            return changed

    def _refresh_run(self) -> bool:
        keys = run_keys(self.run_dir)
        if self.run is not None and keys == self.run.keys:
            return False
        self.run = RunSnapshot.load(self.run_dir, self.store_path, self.store_cfg.index)
        return True

    def _refresh_store(self) -> bool:
        version = newest_version(self.store_path)
        if version is None or (self.store is not None and version == self.store.version):
            return False
        self.store = StoreSnapshot.load(self.store_path, version, self.store_cfg.index)
        return True

    def _try(self, step: Callable[[], bool], errors: list[str]) -> bool:
        """Run one reload step; a failure keeps the previous snapshot (the next check retries)."""
        try:
            return step()
        except Exception as exc:
            self.reload_errors += 1
            errors.append(f"{type(exc).__name__}: {exc}")
            log.event("[serve] reload failed; serving the previous snapshot", error=errors[-1])
            return False

    def wake(self) -> None:
        """Check now instead of at the next interval (after this server wrote to the store)."""
        self._wake.set()

    def start(self) -> None:
        """Start the background checks (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="linksage-serve-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.cfg.reload_interval_s)
            self._wake.clear()
            if not self._stop.is_set():
                self.refresh()
