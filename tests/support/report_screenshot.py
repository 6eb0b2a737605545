"""Draw the screening report of a synthetic population and photograph it in headless Chromium.

    python -m tests.support.report_screenshot OUT.png [--patients 600] [--seed 0] [--width 1280] [--made-up]

By default the patients are a synthetic Bulk Data export screened by the pipeline (about a
minute for 600 on a busy two-core machine); --made-up draws instant made-up rows instead.
Writes the page beside the picture (OUT.html) and the whole page's height into the picture.
Needs Debian's chromium and chromium-driver, and selenium (the test extra).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from service.screening.report import write_report
from tests.support.report_population import EVALUATION_TIME, screened_rows, synthetic_rows

BROWSER_ARGUMENTS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync")


def browser_paths() -> tuple[str | None, str | None]:
    """Debian's chromium and chromedriver, when installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def chromium(width: int = 1280, height: int = 1000) -> Any:
    """A headless Chromium with its console and network logged (DevTools performance log)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver = browser_paths()
    if not (browser and driver):
        raise SystemExit("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    options = Options()
    options.binary_location = browser
    for argument in (*BROWSER_ARGUMENTS, f"--window-size={width},{height}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def screenshot_whole_page(driver: Any, out: Path, width: int) -> None:
    """Resize the window to the page's height, then photograph it."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(height + 140, 16000))
    driver.save_screenshot(str(out))


def example_facts(patients: int, source: str = "/data/exports/nephrology-2026-q4") -> dict[str, Any]:
    return {"source": source, "run_at": datetime(2026, 11, 15, 9, 12, tzinfo=timezone.utc),
            "evaluation_time": EVALUATION_TIME, "engine": "local (2 processes)", "patients": patients,
            "issues": max(1, patients // 60), "seconds": 212.4}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--patients", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--made-up", action="store_true", help="made-up rows instead of screening an export")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    page = args.out.with_suffix(".html")
    if args.made_up:
        rows, facts = list(synthetic_rows(args.patients, seed=args.seed)), example_facts(args.patients)
    else:
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as work:
            rows = screened_rows(args.patients, Path(work), seed=args.seed)
        facts = {**example_facts(len(rows), f"synthetic Bulk Data export (seed {args.seed})"),
                 "engine": "in process (one patient at a time)", "seconds": time.monotonic() - started,
                 "run_at": datetime.now(timezone.utc), "issues": sum(row["data_problems"] for row in rows)}
    write_report(rows, page, facts)
    driver = chromium(args.width)
    try:
        driver.get(page.resolve().as_uri())
        screenshot_whole_page(driver, args.out, args.width)
    finally:
        driver.quit()
    print(f"{args.out} ({page})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
