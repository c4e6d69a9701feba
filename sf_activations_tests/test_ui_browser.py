"""The one browser test: what a user sees of the demo in the Dagster UI.

The demo runs at small size into a temp dir (sample data, emulator, every sync, twice); then
``dagster dev`` serves that Dagster instance and Debian's Chromium, driven by Playwright, reads
the UI the way a user does: the lineage of models into syncs, a sync's materializations with
their metadata, and the asset check. Every assertion reads the page, not Dagster's API.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from sf_activations.demo import DemoResult, SyncTotals, run_demo

# The module's fixtures (demo, dagster dev) count towards its first test's time: about 40 s on an
# idle machine, over 2 minutes on a loaded one; the project default of 300 s is too tight then.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = Path("/usr/bin/chromium")
# From /work/.library/env/machines/python.md: without the background-networking flags Chromium
# keeps dialing Google on this closed network; --user-data-dir must not be in args (Playwright
# passes it itself for a persistent context).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# `dagster dev` started from a non-interactive shell inherits SIGINT as ignored (and ignores
# SIGTERM): restore SIGINT's default handler before exec so that SIGINT stops it cleanly.
SIGINT_WRAPPER = (
    "import signal,os,sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
DEMO_ROWS = 200
ACCOUNTS = "salesforce_accounts"
CONTACTS = "salesforce_contacts"
ENRICHMENT = "salesforce_contact_enrichment"
CHECK = "rejected_records_within_threshold"
# Group ids of the global lineage view, whose groups start collapsed (stack-notes.md).
EXPANDED_GROUPS = "global%40global%3Amodels%2Cglobal%40global%3Asalesforce_syncs"
SCREENSHOT_DIR = Path("/tmp")
UI_TIMEOUT_MS = 60_000  # generous: live data polls slowly on a loaded machine


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    msg = (
        f"{CHROMIUM} is missing: the browser test drives Debian's Chromium "
        "(`apt-get install -y chromium`; .ci/run installs it)"
    )
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(msg)
    pytest.skip(msg)


@dataclass(frozen=True)
class Demo:
    """The demo's result and what it printed."""

    result: DemoResult
    printed: str


@dataclass(frozen=True)
class DagsterUI:
    """A running ``dagster dev`` on the demo's Dagster instance."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The demo at small size, in a temp dir."""
    _require_chromium()
    out = io.StringIO()
    result = run_demo(rows=DEMO_ROWS, work_dir=tmp_path_factory.mktemp("ui") / "demo", out=out)
    return Demo(result=result, printed=out.getvalue())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _demo_env(work_dir: Path) -> dict[str, str]:
    """The variables the demo wrote to ``demo.env`` (``export K=V`` lines)."""
    env: dict[str, str] = {}
    for line in (work_dir / "demo.env").read_text(encoding="utf-8").splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env


def _process_group(pgid: int) -> list[int]:
    """Pids of live processes in process group ``pgid`` (zombies count as gone)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        # Fields after the ")" that closes the command name: state, ppid, pgrp, ...
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _wait_until_serving(ui: DagsterUI, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ui.process.poll() is not None:
            msg = f"dagster dev exited with {ui.process.returncode}:\n{ui.log.read_text()[-3000:]}"
            raise AssertionError(msg)
        try:
            with urllib.request.urlopen(f"{ui.url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    msg = f"dagster dev did not answer within {timeout:.0f} s:\n{ui.log.read_text()[-3000:]}"
    raise AssertionError(msg)


@pytest.fixture(scope="module")
def dagster_ui(demo: Demo) -> Iterator[DagsterUI]:
    """``dagster dev`` on the demo's instance; stopped with SIGINT, and nothing left running."""
    work = demo.result.work_dir
    port = _free_port()
    env = {**os.environ, **_demo_env(work)}
    env.pop("SF_ACTIVATIONS_PROJECT", None)  # the embedded demo project, as the demo ran it
    dagster = Path(sys.executable).parent / "dagster"
    log = work / "dagster_dev.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SIGINT_WRAPPER,
                str(dagster),
                "dev",
                "-m",
                "sf_activations.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # Its own process group: the webserver, daemon and code servers it starts are
            # found (and, if they outlive it, ended) by group id.
            start_new_session=True,
        )
    ui = DagsterUI(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        _wait_until_serving(ui)
        yield ui
    finally:
        _stop(ui)


def _stop(ui: DagsterUI) -> None:
    """SIGINT, as Ctrl-C would; then make sure no process of its group is left."""
    pgid = ui.process.pid
    if ui.process.poll() is None:
        ui.process.send_signal(signal.SIGINT)
    try:
        ui.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        ui.process.wait(timeout=10)
        msg = f"dagster dev ignored SIGINT for 60 s:\n{ui.log.read_text()[-3000:]}"
        raise AssertionError(msg) from None
    # Its children shut down through their shutdown pipes; give them a moment.
    deadline = time.monotonic() + 30
    while _process_group(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _process_group(pgid)
    if left:
        os.killpg(pgid, signal.SIGKILL)
        msg = f"processes of dagster dev still running after it exited: {left}"
        raise AssertionError(msg)


@pytest.fixture(scope="module")
def page(dagster_ui: DagsterUI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """A Chromium page (Playwright) on a fresh profile."""
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            tab = context.new_page()
            tab.set_default_timeout(UI_TIMEOUT_MS)
            # A fresh Dagster instance greets a first visit with "Join the Dagster community";
            # whenever it appears, a user skips it.
            tab.add_locator_handler(
                tab.get_by_role("button", name="Skip"), lambda dialog: dialog.click()
            )
            yield tab
        finally:
            context.close()


# Node boxes and edge endpoints of the lineage graph, in the graph's own SVG coordinates. An
# edge starts at its source's right side and ends (before its arrow head) at its target's left.
# A node's label is read from the HTML inside its foreignObject: SVG elements have no innerText.
_GRAPH_JS = """() => ({
  boxes: [...document.querySelectorAll('foreignObject')].map(fo => ({
    label: ((fo.querySelector('div') || {}).innerText || '').trim().split('\\n')[0].trim(),
    x: +fo.getAttribute('x'), y: +fo.getAttribute('y'),
    w: +fo.getAttribute('width'), h: +fo.getAttribute('height'),
  })),
  edges: [...document.querySelectorAll('path[marker-end]')].map(p => p.getAttribute('d')),
})"""


def _label_is(label: str, name: str) -> bool:
    """A node label shows ``name``, in full or cut in the middle ("salesfor…_accounts")."""
    if label == name:
        return True
    head, cut, tail = label.partition("…")
    return bool(cut) and name.startswith(head) and name.endswith(tail)


def _graph_edges(page: Page, names: list[str]) -> set[tuple[str, str]]:
    """The edges between the named assets that the lineage graph draws."""
    graph = page.evaluate(_GRAPH_JS)
    boxes: dict[str, dict[str, float]] = {}
    for name in names:
        matches = [b for b in graph["boxes"] if _label_is(b["label"], name)]
        assert matches, (
            f"no node {name} in the graph; labels: {[b['label'] for b in graph['boxes']]}"
        )
        boxes[name] = min(matches, key=lambda b: b["w"] * b["h"])  # the node, not its group

    def inside(box: dict[str, float], x: float, y: float, side: str) -> bool:
        edge_x = box["x"] + box["w"] if side == "right" else box["x"]
        return abs(x - edge_x) <= 15 and box["y"] <= y <= box["y"] + box["h"]

    found = set()
    for d in graph["edges"]:
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
        (x1, y1), (x2, y2) = numbers[:2], numbers[-2:]
        for src in names:
            for dst in names:
                if (
                    src != dst
                    and inside(boxes[src], x1, y1, "right")
                    and inside(boxes[dst], x2, y2, "left")
                ):
                    found.add((src, dst))
    return found


def _metadata_row(page: Page, key: str) -> Locator:
    """The row of one metadata entry in the materialization shown (its key cell, its value)."""
    return page.locator("tr").filter(has=page.get_by_text(key, exact=True)).first


def _metadata_value(page: Page, key: str) -> Locator:
    # Cells: key, value, then an empty one.
    return _metadata_row(page, key).locator("td").nth(1)


def test_lineage_shows_models_feeding_syncs(page: Page, dagster_ui: DagsterUI, demo: Demo) -> None:
    page.goto(f"{dagster_ui.url}/asset-groups?expanded={EXPANDED_GROUPS}")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for label in ("accounts", "contacts"):
        expect(page.locator("foreignObject").get_by_text(label, exact=True)).to_be_visible()
    # Sync names are long: the overview draws them cut in the middle.
    for name in (ACCOUNTS, CONTACTS):
        expect(
            page.locator("foreignObject").get_by_text(re.compile(f"^salesfor.*{name[-8:]}$"))
        ).to_be_visible()
    expect(
        page.locator("foreignObject").get_by_text(re.compile(r"^salesf.*_enrichment$"))
    ).to_be_visible()
    names = ["accounts", "contacts", "contact_enrichment", ACCOUNTS, CONTACTS, ENRICHMENT]
    wanted = {
        ("accounts", ACCOUNTS),
        ("contacts", CONTACTS),
        ("contact_enrichment", ENRICHMENT),
        (CONTACTS, ENRICHMENT),
    }
    # The nodes appear before the graph lays out its edges (later on a busy machine).
    deadline = time.monotonic() + 20
    edges = _graph_edges(page, names)
    while not wanted <= edges and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        edges = _graph_edges(page, names)
    page.screenshot(path=str(SCREENSHOT_DIR / "sf_activations_ui_lineage.png"))
    assert ("accounts", ACCOUNTS) in edges
    assert ("contacts", CONTACTS) in edges
    assert (ACCOUNTS, CONTACTS) in edges  # `after: [salesforce_accounts]`
    assert ("accounts", CONTACTS) not in edges  # contacts sync reads its own model only
    assert ("contact_enrichment", ENRICHMENT) in edges
    assert (CONTACTS, ENRICHMENT) in edges  # `after: [salesforce_contacts]`

    # The sync's own lineage tab, zoomed in: full names, materialized, the check passed, and
    # every hash bucket of the downstream contacts sync materialized.
    assert demo.result.second[ACCOUNTS].check_passed
    page.goto(f"{dagster_ui.url}/assets/salesforce/{ACCOUNTS}?view=lineage")
    node = page.locator("foreignObject").filter(has_text=re.compile(f"^{ACCOUNTS}"))
    expect(node.get_by_text("Materialized")).to_be_visible()
    expect(node.get_by_text("1 / 1 Passed")).to_be_visible()
    contacts = page.locator("foreignObject").filter(has_text=re.compile(f"^{CONTACTS}"))
    expect(contacts.get_by_text("100% filled")).to_be_visible()
    expect(
        contacts.get_by_text(f"{demo.result.first[CONTACTS].partitions} partitions")
    ).to_be_visible()
    assert ("accounts", ACCOUNTS) in _graph_edges(page, ["accounts", ACCOUNTS, CONTACTS])
    page.screenshot(path=str(SCREENSHOT_DIR / "sf_activations_ui_sync_lineage.png"))


def _expect_error_table(page: Page, totals: SyncTotals) -> None:
    table = _metadata_row(page, "sf/error_codes")
    for code, count in totals.errors.items():
        row = table.locator("tr").filter(has=page.get_by_text(code, exact=True))
        expect(row.locator("td").nth(1)).to_have_text(str(count))


def test_sync_materializations_show_the_demo_numbers(
    page: Page, dagster_ui: DagsterUI, demo: Demo
) -> None:
    first, second = demo.result.first[ACCOUNTS], demo.result.second[ACCOUNTS]
    assert first.created > 0 and first.errors  # the demo has something to show
    assert f"{ACCOUNTS}[__all__]: read {first.read}, created {first.created}," in demo.printed

    page.goto(f"{dagster_ui.url}/assets/salesforce/{ACCOUNTS}?view=events")
    events = page.locator("[data-index]").filter(has=page.get_by_role("img", name="run_success"))
    expect(events).to_have_count(2)  # the demo ran every sync twice

    # The latest materialization: the re-run, which sent nothing new.
    expect(_metadata_value(page, "sf/records_read")).to_have_text(str(second.read))
    expect(_metadata_value(page, "sf/created")).to_have_text("0")
    expect(_metadata_value(page, "sf/unchanged")).to_have_text(str(first.created))
    expect(_metadata_value(page, "sf/rejected")).to_have_text(str(second.rejected))
    _expect_error_table(page, second)
    page.screenshot(path=str(SCREENSHOT_DIR / "sf_activations_ui_events.png"), full_page=True)

    # The first materialization: the records created are those the demo printed.
    events.nth(1).click()
    expect(_metadata_value(page, "sf/created")).to_have_text(str(first.created))
    expect(_metadata_value(page, "sf/records_read")).to_have_text(str(first.read))
    expect(_metadata_value(page, "sf/invalid")).to_have_text(str(first.invalid))
    _expect_error_table(page, first)


def test_asset_check_shows_the_rejected_share(
    page: Page, dagster_ui: DagsterUI, demo: Demo
) -> None:
    latest = demo.result.second[ACCOUNTS]
    page.goto(f"{dagster_ui.url}/assets/salesforce/{ACCOUNTS}?view=checks")
    # The first match is a hidden copy the UI measures to truncate names.
    expect(page.get_by_text(CHECK, exact=True).filter(visible=True).first).to_be_visible()
    skipped = latest.invalid + latest.rejected
    expect(
        page.get_by_text(
            f"{skipped} of {latest.read} records skipped "
            f"({latest.invalid} invalid, {latest.rejected} rejected)"
        )
    ).to_be_visible()
    verdict = "Passed" if latest.check_passed else "Failed"
    expect(page.get_by_text(verdict, exact=True).filter(visible=True).first).to_be_visible()
    page.screenshot(path=str(SCREENSHOT_DIR / "sf_activations_ui_check.png"))
