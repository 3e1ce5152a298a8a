"""Screenshots of TensorBoard's useful tabs over a logdir, taken with headless Chromium, for a
person to look at before a release (``make tb-screenshots LOGDIR=outputs/multiruns/<sweep>``).

Starts a real TensorBoard on 127.0.0.1, waits until it has read every run's events (its scalar
data stops changing), opens each tab with the
URL the README recommends (``?smoothing=0``), gives it a few seconds to draw and writes
``<out>/<tab>.png``. Needs Chromium
(Debian: ``apt-get install chromium``); exits with status 2 and says so when it is missing.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from src.tb.command import first_screen_query

# Tab -> URL query and fragment, as the README recommends. Time Series: the first screen every run
# prints (src.tb.command): smoothing 0 (TensorBoard's default 0.6 bends curves of a few points), only
# the accuracy charts, val/acc and train/acc pinned on top.
TABS = {
    "timeseries": first_screen_query(),
    "images": "#images",
    "hparams": "#hparams",
    "projector": "#projector",
    # The seed bands (src/tb/seed_bands.py): one margin chart per metric, one band per configuration;
    # only the aggregate runs listed (the per-seed runs draw nothing there), drawn as logged.
    "custom_scalars": "#custom_scalars&_smoothingWeight=0&regexInput=_seeds",
}
# Tabs shot taller than --size asks (height in px): Custom Scalars' two expanded charts.
MIN_HEIGHT = {"custom_scalars": 1280}
# Script run in a tab once it has drawn, before the shot: Custom Scalars draws its cards a quarter of
# the page wide; expanded, a band's edges can be read. The cards sit in nested shadow roots.
PREPARE = {
    "custom_scalars": """(() => {
        const cards = [];
        const walk = (node) => {
            for (const el of node.querySelectorAll('*')) {
                if (el.localName === 'tf-custom-scalar-margin-chart-card') cards.push(el);
                if (el.shadowRoot) walk(el.shadowRoot);
            }
        };
        walk(document);
        cards.forEach((card) => card._toggleExpanded());
        return cards.length;
    })()""",
}
# Where a multirun writes its sweep folders by default (conf/hydra/default.yaml), from the working directory.
SWEEPS = Path("outputs/multiruns")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(name: str | None = None) -> str | None:
    """The Chromium executable to use (``name`` if given and found), or None."""
    for candidate in ([name] if name else BROWSERS):
        path = shutil.which(candidate)
        if path:
            return path
    return None


def newest_sweep(sweeps: Path = SWEEPS) -> Path | None:
    """The newest sweep folder under ``sweeps`` (their names start with the time), or None."""
    found = sorted(p for p in sweeps.iterdir() if p.is_dir()) if sweeps.is_dir() else []
    return found[-1] if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_runs(base: str, server: subprocess.Popen, timeout: float) -> list[str]:
    """Polls ``/data/runs`` until TensorBoard serves at least one run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"tensorboard exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/data/runs", timeout=5) as resp:
                runs = json.loads(resp.read())
            if runs:
                return runs
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"tensorboard served no run within {timeout:.0f} s")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def loaded_signature(base: str) -> str:
    """What TensorBoard has loaded so far: each run's scalar tags and its number of val/acc points
    (or of its first tag's). A run is listed before its events are read, so the run list alone says
    nothing about whether the charts and the HParams sessions are complete."""
    tags = _get_json(f"{base}/data/plugin/scalars/tags")
    counts = {}
    for run, run_tags in sorted(tags.items()):
        tag = "val/acc" if "val/acc" in run_tags else next(iter(sorted(run_tags)), None)
        if tag is not None:
            query = urllib.parse.urlencode({"run": run, "tag": tag})
            counts[run] = (sorted(run_tags), len(_get_json(f"{base}/data/plugin/scalars/scalars?{query}")))
    return json.dumps(counts, sort_keys=True)


def wait_until_stable(read: Any, timeout: float, settle: int = 3, interval: float = 1.0) -> str:
    """Calls ``read()`` until it returns the same non-empty value ``settle`` times in a row (or the
    timeout passes: then the last value, with a warning), and returns that value."""
    deadline = time.monotonic() + timeout
    last, same = None, 0
    while True:
        try:
            value = read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            value = None
        same = same + 1 if value and value == last else (1 if value else 0)
        last = value
        if same >= settle:
            return value
        if time.monotonic() >= deadline:
            print(f"warning: TensorBoard still loading after {timeout:.0f} s; screenshots may be incomplete",
                  file=sys.stderr)
            return last or ""
        time.sleep(interval)


def _above_4(fd: int) -> int:
    """``fd`` moved to a number above 4, so that placing the pipe on fds 3 and 4 in the child cannot
    overwrite one end with the other (pytest, for one, leaves 3 and 4 free)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 5)
    os.close(fd)
    return high


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    NUL-separated JSON on file descriptors 3 and 4), so each page gets real time to draw its
    charts before the screenshot (``--screenshot`` shoots at load, before TensorBoard has data)."""

    def __init__(self, browser: str, size: tuple[int, int]) -> None:
        self._profile = tempfile.TemporaryDirectory()  # fresh profile: no remembered TensorBoard settings
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()
        to_chrome, from_chrome = _above_4(to_chrome), _above_4(from_chrome)
        args = [
            browser, "--headless=new", "--no-sandbox", "--hide-scrollbars", "--remote-debugging-pipe",
            "--enable-unsafe-swiftshader",  # software WebGL: TensorBoard's charts and the projector
            f"--user-data-dir={self._profile.name}", f"--window-size={size[0]},{size[1]}", "about:blank",
        ]
        # The protocol pipe must be fds 3 (read by Chromium) and 4 (written by it): a shell places it
        # (bash: dash reads only one-digit fd numbers in redirections).
        shell = shutil.which("bash") or "/bin/sh"
        self._proc = subprocess.Popen([shell, "-c", f'exec "$0" "$@" 3<&{to_chrome} 4>&{from_chrome}', *args],
                                      pass_fds=(to_chrome, from_chrome), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._next_id, self._session = b"", 0, None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.resize(size)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:  # skip events until our reply
            while b"\0" not in self._buffer:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def resize(self, size: tuple[int, int]) -> None:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False})

    def screenshot(self, url: str, out: Path, wait_s: float, prepare: str | None = None) -> None:
        self.call("Page.navigate", {"url": url})
        time.sleep(wait_s)  # TensorBoard fetches its data and draws its charts asynchronously
        if prepare:
            self.call("Runtime.evaluate", {"expression": prepare})
            time.sleep(min(wait_s, 3.0))  # redrawn at the new size
        png = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        out.write_bytes(base64.b64decode(png))

    def close(self) -> None:
        try:
            self._session = None
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._in)
        os.close(self._out)
        self._profile.cleanup()


def stop_server(server: subprocess.Popen) -> None:
    """Stop a TensorBoard process: politely, then by force after 10 s."""
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def to_palette(path: Path) -> None:
    """Rewrites a screenshot as a 256-colour PNG: a quarter of the size, no visible loss on a UI."""
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", type=Path, nargs="?",
                        help=f"a run or sweep folder (any TensorBoard logdir); default: the newest in {SWEEPS}/")
    parser.add_argument("--out", type=Path, default=Path("outputs/screenshots"))
    parser.add_argument("--browser", help=f"Chromium executable (default: the first of {', '.join(BROWSERS)} found)")
    parser.add_argument("--size", default="2000x1050", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--wait", type=float, default=8.0, help="seconds each page gets to draw")
    parser.add_argument("--palette", action="store_true", help="save 256-colour PNGs (small, for docs/img)")
    parser.add_argument("--tabs", default=",".join(TABS), help="comma-separated subset of " + ",".join(TABS))
    args = parser.parse_args(argv)

    if args.logdir is None:
        args.logdir = newest_sweep()
        if args.logdir is None:
            print(f"error: no logdir given and no sweep folder in {SWEEPS.absolute()}/; name one: "
                  "make tb-screenshots LOGDIR=<run or sweep folder> (or python -m src.tb.screenshots <folder>)",
                  file=sys.stderr)
            return 2
    if not args.logdir.is_dir():
        print(f"error: {args.logdir} is not a folder; name a run or sweep folder: "
              "make tb-screenshots LOGDIR=<run or sweep folder>", file=sys.stderr)
        return 2
    browser = find_browser(args.browser)
    if browser is None:
        print("error: Chromium not found (Debian/Ubuntu: apt-get install chromium)", file=sys.stderr)
        return 2
    width, height = (int(v) for v in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(args.logdir), "--host", "127.0.0.1",
         "--port", str(port), "--load_fast", "false", "--reload_interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    chromium = None
    try:
        runs = wait_for_runs(base, server, timeout=120)
        wait_until_stable(lambda: loaded_signature(base), timeout=300)
        print(f"tensorboard at {base}: {len(runs)} runs")
        chromium = Chromium(browser, (width, height))
        for tab in [t.strip() for t in args.tabs.split(",") if t.strip()]:
            out = args.out / f"{tab}.png"
            chromium.resize((width, max(height, MIN_HEIGHT.get(tab, 0))))
            chromium.screenshot(f"{base}/{TABS[tab]}", out, args.wait, PREPARE.get(tab))
            if args.palette:
                to_palette(out)
            print(out)
    finally:
        if chromium is not None:
            chromium.close()
        stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
