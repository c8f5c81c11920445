"""The admin dashboard in a real browser: a server with a few uploads, the report job run
through the CLI (twice, for a trend), the CLI's JSON equal to the API's, then headless
Chromium signs in through the login form (CSRF and all) and screenshots ``/admin`` to
``var/artifacts/admin.png`` (a CI artifact).

Chromium is driven over the DevTools protocol (``--remote-debugging-port``) with
``websocket-client``. Without Chromium the test fails in CI (``CI=true``) and skips
elsewhere."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


from tests.e2e.conftest import BIN, require_tool, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "var" / "artifacts" / "admin.png"
MiB = 1024 * 1024
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,2000"]


def chromium_binary() -> str:
    return require_tool(("chromium", "chromium-browser", "google-chrome"), "Debian: apt-get install -y chromium")


class Browser:
    """Just enough of the DevTools protocol: navigate, evaluate, screenshot."""

    def __init__(self, binary: str):
        import websocket
        self.profile = tempfile.mkdtemp(prefix="bd-chromium-")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        import urllib.request
        for _ in range(100):
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                break
            time.sleep(0.1)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self.n = 0
        self.call("Page.enable")

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expr: str):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def wait_for(self, expr: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.eval(expr):
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expr}; page: {self.eval('document.body && document.body.innerText')!r}")

    def goto(self, url: str):
        self.call("Page.navigate", url=url)
        self.wait_for(f"location.href.startsWith({json.dumps(url.split('?')[0])}) && document.readyState === 'complete'")

    def screenshot(self, path: Path):
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self):
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


def cli_json(env, *args):
    out = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_admin_dashboard_in_headless_chromium(tmp_path):
    binary = chromium_binary()
    proc, server = start_server(tmp_path, None, extra_env={"SPARK_LOCAL_IP": "127.0.0.1"})
    browser = None
    try:
        admin_token = server.cli("user", "create", "admin@example.com", "--password", "password123",
                                 "--admin").strip().splitlines()[-1]
        alice, bob = server.user("alice@example.com"), server.user("bob@example.com")
        data = os.urandom(3 * MiB)
        for c in (alice, alice, bob):                       # the same 3 MiB, three times
            assert c.upload(c.root, f"f{time.monotonic_ns()}.bin", data).status_code == 201
        assert bob.upload(bob.root, "zeros.bin", bytes(MiB)).status_code == 201
        nid = alice.get(f"/api/v1/nodes/{alice.root}/children").json()["items"][0]["id"]
        assert alice.get(f"/api/v1/nodes/{nid}/content").content == data
        first = cli_json(server.env, "report", "--run", "--json")
        assert bob.upload(bob.root, "more.bin", os.urandom(MiB)).status_code == 201
        snap = cli_json(server.env, "report", "--run", "--json")
        h = snap["headline"]
        assert snap["id"] > first["id"]
        assert (h["logical_bytes"], h["uploads"], h["downloads"], h["bytes_out"]) == (11 * MiB, 5, 1, 3 * MiB)
        import requests
        api = requests.get(server.url + "/api/v1/admin/reports/latest",
                           headers={"Authorization": f"Bearer {admin_token}"}, timeout=30).json()
        assert api == snap                                  # the CLI and the JSON API agree

        browser = Browser(binary)
        browser.goto(server.url + "/admin")                 # not signed in: the login form
        browser.wait_for("!!document.querySelector('#token')")
        browser.eval(f"document.querySelector('#token').value = {json.dumps(admin_token)}; "
                     "document.querySelector('form').submit(); true")
        browser.wait_for("!!document.querySelector('#headline')")
        text = browser.eval("document.body.innerText")
        assert "11.00 MiB" in text and f"{h['logical_bytes']} B" in text
        assert browser.eval("document.querySelector('#dedup').innerText") == f"{h['dedup_ratio']:.2f}×"
        assert browser.eval("document.querySelectorAll('svg').length") == 8
        assert browser.eval("document.querySelectorAll('svg polyline').length") >= 4  # two snapshots: lines
        browser.screenshot(ARTIFACT)
        png = ARTIFACT.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    finally:
        if browser is not None:
            browser.close()
        stop_server(proc)
