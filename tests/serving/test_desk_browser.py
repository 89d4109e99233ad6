"""The credit desk in a real browser, against ``riskcast serve``: an order is referred, an
analyst signs in with a key, opens the queue and the case, approves a limit with a reason; the
ERP reads the case's final decision and its next order is approved against the approved limit;
a manager's page shows the override. Screenshots of the queue, the case and the override page
are written to ``build/screenshots`` (``RISKCAST_SCREENSHOTS`` elsewhere).

Runs Debian's chromium (``apt-get install chromium``; ``.ci/run`` installs it) through
Playwright; skipped, saying which, where either is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("RISKCAST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(os.environ.get("RISKCAST_SCREENSHOTS", Path(__file__).resolve().parents[2] / "build" / "screenshots"))


def _call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_an_analyst_approves_a_referred_order_and_the_erp_sees_it(workdir_copy, tmp_path, referable_order):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    if CHROMIUM is None:
        pytest.skip("no chromium to drive (Debian: apt-get install chromium; or set RISKCAST_CHROMIUM)")
    from riskcast.config import WorkPaths, load_config
    from riskcast.serving.procs import start_serving, stop_serving, wait_ready
    from riskcast.serving.runtime import open_desk

    cfg = load_config(workdir_copy / "riskcast.toml")
    desk = open_desk(cfg, WorkPaths(root=workdir_copy))
    ann = desk.add_user("ann", "Ann Analyst", "analyst", by="test")
    max_ = desk.add_user("max", "Max Manager", "manager", by="test")
    desk.close()
    cid, limit, exposure, amount = referable_order
    SHOTS.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "serve.log"
    proc, port = start_serving(workdir_copy, log)
    try:
        assert wait_ready(proc, port), log.read_text()[-2000:]
        # the ERP's order takes the customer just past its recommended limit: referred, a case opened
        status, first = _call(port, "POST", "/score", {"customer_id": cid, "order_amount": amount,
                                                        "request_id": "erp-order-1"})
        assert status == 200 and first["decision"] == "refer", first
        assert first["limit_source"] == "recommended" and first["case_id"] is not None
        case_id = first["case_id"]
        status, case = _call(port, "GET", f"/cases/{case_id}")
        assert status == 200 and case["state"] == "open" and case["customer_id"] == cid
        assert [o["request_id"] for o in case["orders"]] == ["erp-order-1"] and case["orders"][0]["final_decision"] is None

        approved = float(round(limit * 1.25))
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            hosts = set()
            page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
            base = f"http://127.0.0.1:{port}"
            page.goto(f"{base}/")
            assert page.get_by_role("link", name="The credit desk").is_visible()
            page.get_by_role("link", name="The credit desk").click()
            # not signed in: the sign-in page, its field found by its label
            page.get_by_label("Desk key").fill("rk_not-a-key")
            page.get_by_role("button", name="Sign in").click()
            assert page.get_by_role("alert").is_visible()
            page.get_by_label("Desk key").fill(ann)
            page.keyboard.press("Enter")  # the form works from the keyboard
            page.get_by_role("heading", name="Referral queue").wait_for()
            row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"Case {case_id}", exact=True))
            assert row.count() == 1 and cid in row.inner_text()
            page.screenshot(path=str(SHOTS / "desk-queue.png"), full_page=True)

            page.get_by_role("link", name=f"Case {case_id}", exact=True).click()
            page.get_by_role("heading", name=f"Case {case_id}: {cid}").wait_for()
            assert "erp-order-1" in page.get_by_role("region", name="Orders in this case").inner_text()
            page.screenshot(path=str(SHOTS / "desk-case.png"), full_page=True)
            page.get_by_label("approve", exact=True).check()
            page.get_by_label("Credit limit").fill(f"{approved:.0f}")
            page.get_by_label("Reason code").select_option("PAY")
            page.get_by_label("Why (on record)").fill("Pays within terms for two years; the order is seasonal.")
            page.get_by_role("button", name="Record the decision").click()
            page.get_by_role("status").wait_for()
            assert "Decision recorded" in page.get_by_role("status").inner_text()
            page.screenshot(path=str(SHOTS / "desk-case-decided.png"), full_page=True)

            # the ERP reads the order's final decision
            status, case = _call(port, "GET", f"/cases/{case_id}")
            assert case["state"] == "decided" and case["orders"][0]["final_decision"] == "approve"
            assert case["decision"]["credit_limit"] == approved and case["decision"]["approvers"] == ["ann"]
            assert case["decision"]["override"] == "up"

            # the next order goes past the recommended limit (and its refer margin) but within the approved one
            nxt = round(approved - exposure - amount - 1.0, 2)
            assert exposure + amount + nxt > limit * 1.1
            status, second = _call(port, "POST", "/score", {"customer_id": cid, "order_amount": amount + nxt,
                                                             "request_id": "erp-order-2"})
            assert status == 200, second
            assert second["decision"] == "approve" and second["limit_source"] == "approved", {
                k: second[k] for k in ("decision", "decision_reason", "credit_limit", "limit_source",
                                       "exposure_after_order", "recommended_limit")}
            assert second["credit_limit"] == approved and second["recommended_limit"] == pytest.approx(limit, abs=0.01)
            assert "approved limit" in second["decision_reason"] and second["case_id"] is None

            # an analyst does not see the override report; a manager does, with ann's override
            page.goto(f"{base}/desk/overrides")
            assert page.get_by_role("heading", name="Not for your role").is_visible()
            page.get_by_role("button", name="Sign out").click()
            page.get_by_label("Desk key").fill(max_)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("link", name="Overrides").click()
            summary = page.locator("#override-summary").inner_text()
            assert summary.startswith("1 of 1 desk decisions were overrides") and "1 up" in summary
            by_analyst = page.get_by_role("table", name="By analyst").inner_text()
            assert "ann" in by_analyst
            page.screenshot(path=str(SHOTS / "desk-overrides.png"), full_page=True)
            # the customer's page: the approved limit, its review date and the decision history
            page.goto(f"{base}/desk/customers/{cid}")
            now = page.get_by_role("region", name="Now").inner_text()
            assert f"{approved:,.2f}" in now and "approved" in now
            aging = page.get_by_role("table", name="Aging (days past due)").inner_text()
            assert "current" in aging and "90+" in aging
            history = page.get_by_role("region", name="Decision history (order entry)").inner_text()
            assert "refer" in history and "approve" in history

            # collections: the ladder, the steps due now, a step recorded that shows on the list
            page.get_by_role("link", name="Collections").click()
            page.get_by_role("heading", name="Collections", exact=True).wait_for()
            ladder = page.get_by_role("region", name="The ladder").inner_text()
            assert "reminder" in ladder and "demand" in ladder and "new orders stop past 30 days" in ladder
            worklist = page.locator("table").last  # after the ladder's own table
            assert "invoices" in worklist.locator("caption").inner_text()
            first = worklist.locator("tbody tr").first
            invoice = first.locator("td").nth(2).inner_text().split()[0]
            page.screenshot(path=str(SHOTS / "desk-collections.png"), full_page=False)
            first.get_by_role("link", name=f"Step for {invoice}").click()
            page.get_by_role("heading", name=f"Invoice {invoice}").wait_for()
            page.get_by_label("Outcome").select_option("promise to pay")
            page.get_by_label("Promised payment date (a promise to pay only)").fill("2026-01-20")
            page.get_by_label("Note").fill("Treasurer confirmed by phone.")
            page.get_by_role("button", name="Record").click()
            page.get_by_role("status").wait_for()
            steps = page.get_by_role("region", name="Steps on record").inner_text()
            assert "promise to pay" in steps and "2026-01-20" in steps and "max" in steps
            page.screenshot(path=str(SHOTS / "desk-collection-step.png"), full_page=True)
            page.goto(f"{base}/desk/collections?show=all")
            row = page.locator("table").last.locator("tbody tr").filter(has_text=invoice).first
            assert "promise to pay, max" in row.inner_text()
            browser.close()
        assert hosts == {f"127.0.0.1:{port}"}, hosts  # nothing loaded from elsewhere
    finally:
        stop_serving(workdir_copy, proc)
    for name in ("desk-queue.png", "desk-case.png", "desk-overrides.png", "desk-collections.png"):
        assert (SHOTS / name).stat().st_size > 10_000
