"""Screenshots of the web app's main pages for ``docs/screens/``, at a desktop's and a phone's
width, from a real server seeded with a little data (``harness.webtour``):

    python -m tools.screenshots

Needs Chromium and its driver (Debian: ``chromium``, ``chromium-driver``). Also rewrites the
table of screens in docs/web.md between its ``screens`` markers."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness.browser import DESKTOP, PHONE, make_driver, signed_in
from harness.server import start_server, stop_server
from harness.webtour import seed, stops
from tools import markers

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screens"
PAGE = ROOT / "docs" / "web.md"


def take(url: str, ids: dict, out: Path) -> list[tuple[str, str]]:
    out.mkdir(parents=True, exist_ok=True)
    taken = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        driver = make_driver(*size)
        try:
            who = object()
            for stop in stops(ids):
                if stop.who != who:
                    driver.get(url + "/")
                    driver.delete_all_cookies()
                    if stop.who is not None:
                        signed_in(driver, url, stop.who)
                    who = stop.who
                driver.get(url + stop.path)
                driver.save_screenshot(str(out / f"{stop.name}-{label}.png"))
        finally:
            driver.quit()
    for stop in stops(ids):
        taken.append((stop.title, stop.name))
    return taken


def table(taken: list[tuple[str, str]]) -> str:
    rows = ["| page | desktop | phone |", "| --- | --- | --- |"]
    rows += [f"| {title} | [{name}-desktop.png](screens/{name}-desktop.png) | "
             f"[{name}-phone.png](screens/{name}-phone.png) |" for title, name in taken]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bd-screens-") as tmp:
        proc, srv = start_server(Path(tmp), None)
        try:
            taken = take(srv.url, seed(srv), args.out)
        finally:
            stop_server(proc)
    if PAGE.exists():
        markers.save(PAGE, markers.replace(PAGE.read_text(), "screens", {"all": table(taken)}))
    print(f"{len(taken) * 2} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
