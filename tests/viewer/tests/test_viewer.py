"""The run viewer in a real headless Chromium, driven over the DevTools
protocol by Playwright, against real meshes (every agent and the
orchestrator its own process) that `cargo test -p agentmesh-e2e --test
viewer` starts and names in the environment:

- AGENTMESH_VIEWER_URL: a mesh whose analytics agent fails each task's
  first attempt (so steps retry, slowly enough to watch) and whose
  orchestrator has the `approved-summary` playbook (an approval gate);
- AGENTMESH_VIEWER_ASKING_URL: a mesh whose summary agent asks which
  audience to write for.

Screenshots of every page go to $CI_ARTIFACTS_DIR (else a temporary
folder).
"""

import json
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

Q2_GOAL = "Generate a Q2 sales performance report with visualizations and an executive summary"
GATED_GOAL = "Write an executive summary of Q2 sales"
ASKED_GOAL = "Generate a Q2 sales performance report with visualizations and an executive summary"
Q2_STEPS = {"dataset", "metrics", "charts", "summary"}


def env_url(name: str) -> str:
    url = os.environ.get(name)
    if not url:
        pytest.fail(f"{name} is not set: run these through `cargo test -p agentmesh-e2e --test viewer`")
    return url.rstrip("/")


@pytest.fixture(scope="session")
def viewer() -> str:
    return env_url("AGENTMESH_VIEWER_URL")


@pytest.fixture(scope="session")
def asking() -> str:
    return env_url("AGENTMESH_VIEWER_ASKING_URL")


@pytest.fixture(scope="session")
def shots() -> Path:
    folder = Path(os.environ.get("CI_ARTIFACTS_DIR") or tempfile.mkdtemp()) / "viewer"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser():
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.fail("Chromium not found (scripts/test installs Debian's chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"the page's script failed: {errors}"


def start(page: Page, base: str, goal: str) -> str:
    """Starts `goal` from the runs page; returns the run id once its page is open."""
    page.goto(base + "/")
    page.fill("#goal", goal)
    page.click("#start-button")
    page.wait_for_url("**/runs/*")
    return page.url.rsplit("/", 1)[1]


def graph(page: Page) -> dict:
    """The graph's steps and their states, and the run's state, as drawn."""
    return page.evaluate(
        """() => ({
            run: document.body.dataset.state || "",
            steps: Object.fromEntries([...document.querySelectorAll('#graph .step')]
                .map(g => [g.dataset.step, g.dataset.state])),
        })"""
    )


def wait_state(page: Page, state: str, timeout_s: float = 60) -> None:
    # Through Playwright's own script: the page's CSP allows no eval.
    expect(page.locator("body")).to_have_attribute("data-state", state, timeout=timeout_s * 1000)


def start_waiting(page: Page, base: str, goal: str, kind: str):
    """Starts `goal` and waits until its run waits for a person (`kind`:
    APPROVAL or QUESTION); returns the panel that asks."""
    start(page, base, goal)
    wait = page.locator(f".wait[data-kind={kind}]")
    expect(wait).to_be_visible(timeout=60000)
    wait_state(page, "WAITING")
    return wait


def log_seqs(page: Page) -> list:
    return page.eval_on_selector_all("#log li", "items => items.map(i => Number(i.dataset.seq))")


def api(base: str, path: str, headers=None):
    req = urllib.request.Request(base + path, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()


def test_q2_goal_turns_done_live_and_its_report_opens(page: Page, viewer: str, shots: Path):
    run_id = start(page, viewer, Q2_GOAL)
    first = graph(page)
    # Watch the graph as the run goes: sample what is drawn.
    seen = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        g = graph(page)
        for step, state in g["steps"].items():
            seen.setdefault(step, []).append(state)
        if g["run"] == "COMPLETED":
            break
        if g["run"] in ("FAILED", "CANCELED", "PARTIAL"):
            pytest.fail(f"the run ended {g['run']}: {g}")
        if len(seen.get("metrics", [])) == 3:
            page.screenshot(path=str(shots / "run-live.png"), full_page=True)
        time.sleep(0.05)
    final = graph(page)
    assert final["run"] == "COMPLETED", final
    assert set(final["steps"]) >= Q2_STEPS, final
    assert all(s == "done" for s in final["steps"].values()), final
    # Live: the page was open while the run went on, and steps changed
    # state in front of it without a reload.
    assert first["run"] != "COMPLETED", f"the run had finished before the page drew it: {first}"
    changed = [s for s, states in seen.items() if states[0] != "done" and states[-1] == "done"]
    assert changed, f"no step was seen turning done: {seen}"
    # The analytics agent fails every first attempt: the page showed it.
    assert any("retrying" in states for states in seen.values()) or page.locator(
        "#log li[data-kind=step_retrying]"
    ).count() > 0, seen
    # Provenance names who did each step.
    for step in Q2_STEPS:
        row = page.locator(f"#provenance tr[data-step='{step}']")
        expect(row).to_have_count(1)
    expect(page.locator("#provenance tr[data-step='metrics'] td").nth(4)).to_have_text("2")
    # The report, rendered in place with its charts.
    expect(page.locator("#report-section")).to_be_visible()
    frame = page.frame_locator("#report")
    expect(frame.locator("h1")).to_contain_text("Q2")
    expect(frame.locator("img").first).to_be_visible(timeout=10000)
    assert frame.locator("img").count() >= 2
    page.screenshot(path=str(shots / "run-done.png"), full_page=True)
    page.locator("#report").screenshot(path=str(shots / "report.png"))
    # The link opens the same page on its own (a sandboxed document: no
    # script runs in it, the automation's included, so it is read here).
    href = page.get_attribute("#report-link", "href")
    assert href == f"/api/runs/{run_id}/report", href
    html = api(viewer, href)
    assert "<h1>" in html and "Q2" in html and "data:image/svg+xml;base64," in html
    # The runs list shows it, and filters by state.
    page.goto(viewer + "/?state=COMPLETED")
    expect(page.locator(f"#runs tr[data-run='{run_id}']")).to_be_visible()
    page.screenshot(path=str(shots / "runs.png"), full_page=True)
    page.select_option("#state-filter", "FAILED")
    expect(page.locator(f"#runs tr[data-run='{run_id}']")).to_have_count(0)


def test_an_approval_gate_is_approved_from_the_page(page: Page, viewer: str, shots: Path):
    wait = start_waiting(page, viewer, GATED_GOAL, "APPROVAL")
    expect(wait.locator(".question")).to_contain_text("Approve the executive summary")
    # What is to be approved: the summary's output.
    expect(wait.locator("pre")).to_contain_text("summary")
    assert graph(page)["steps"]["approve"] == "waiting"
    page.screenshot(path=str(shots / "approval.png"), full_page=True)
    wait.locator("input[name=reason]").fill("figures checked")
    wait.locator("button[data-action=approve]").click()
    wait_state(page, "COMPLETED")
    expect(page.locator(".wait")).to_have_count(0)
    assert graph(page)["steps"]["approve"] == "done"
    expect(page.locator("#provenance tr[data-step='approve'] td").nth(1)).to_have_text("person")
    expect(page.locator("#log li[data-kind=step_answered]")).to_contain_text("figures checked")


def test_an_agents_question_is_answered_through_the_generated_form(page: Page, asking: str, shots: Path):
    wait = start_waiting(page, asking, ASKED_GOAL, "QUESTION")
    expect(wait.locator(".question")).to_contain_text("Who is this summary for?")
    # The form came from the answer's JSON Schema: an enum is a choice.
    choice = wait.locator("select[name='answer.audience']")
    expect(choice.locator("option")).to_have_count(3)
    page.screenshot(path=str(shots / "question.png"), full_page=True)
    choice.select_option(label="board")
    wait.locator("button[type=submit]").click()
    wait_state(page, "COMPLETED")
    assert all(s == "done" for s in graph(page)["steps"].values())
    expect(page.locator("#log li[data-kind=step_answered]")).to_contain_text("board")
    expect(page.frame_locator("#report").locator("h1")).to_contain_text("Q2", timeout=10000)


def test_the_waiting_filter_and_the_cancel_button(page: Page, asking: str, shots: Path):
    run_id = start(page, asking, ASKED_GOAL)
    wait_state(page, "WAITING")
    page.goto(asking + "/")
    page.check("#waiting-filter")
    row = page.locator(f"#runs tr[data-run='{run_id}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("Who is this summary for?")
    page.screenshot(path=str(shots / "runs-waiting.png"), full_page=True)
    row.locator("a").click()
    page.wait_for_url(f"**/runs/{run_id}")
    wait_state(page, "WAITING")
    page.click("#cancel")
    wait_state(page, "CANCELED")
    expect(page.locator("#run-state")).to_have_text("CANCELED")
    expect(page.locator("#cancel")).to_be_disabled()
    page.screenshot(path=str(shots / "canceled.png"), full_page=True)
    # No longer waiting for anyone.
    page.goto(asking + "/?waiting=mine")
    expect(page.locator("#runs-note")).to_be_visible()
    expect(page.locator(f"#runs tr[data-run='{run_id}']")).to_have_count(0)


def test_a_reload_mid_run_resumes_without_a_gap(page: Page, asking: str):
    run_id = start(page, asking, ASKED_GOAL)
    wait_state(page, "WAITING")
    before = log_seqs(page)
    assert before == list(range(1, len(before) + 1)), before
    page.reload()
    wait_state(page, "WAITING")
    page.locator(".wait[data-kind=QUESTION] select").select_option(label="analyst")
    page.locator(".wait[data-kind=QUESTION] button[type=submit]").click()
    wait_state(page, "COMPLETED")
    run = page.evaluate("({gaps: agentmeshRun.gaps, duplicates: agentmeshRun.duplicates, last: agentmeshRun.lastSeq})")
    assert run["gaps"] == 0 and run["duplicates"] == 0, run
    last_seq = json.loads(api(asking, f"/api/runs/{run_id}"))["run"]["last_seq"]
    assert run["last"] == last_seq
    # Every event is in the log once, in order.
    seqs = log_seqs(page)
    assert seqs == list(range(1, last_seq + 1)), seqs
    assert set(before) <= set(seqs)
    # A reconnecting browser sends Last-Event-ID: the stream resumes right
    # after it.
    text = api(asking, f"/api/runs/{run_id}/events", {"Last-Event-ID": "5"})
    ids = [int(line[3:]) for line in text.splitlines() if line.startswith("id:")]
    assert ids == list(range(6, last_seq + 1)), ids
    assert text.rstrip().endswith("event: end\ndata: end")


def test_the_agents_page_shows_endpoints_skills_and_load(page: Page, viewer: str, shots: Path):
    page.goto(viewer + "/agents")
    rows = page.locator("#agents tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#agents tbody tr[data-health=SERVING]")).to_have_count(3)
    expect(page.locator("#agents tbody")).to_contain_text("analytics.metrics")
    expect(page.locator("#agents tbody")).to_contain_text("sales.extract")
    # An open API (no [server.auth]): nobody is signed in, nothing to sign out of.
    expect(page.locator("form.logout")).to_have_count(0)
    page.screenshot(path=str(shots / "agents.png"), full_page=True)


def test_a_refused_answer_shows_the_field(page: Page, viewer: str):
    # An answer to a step that waits for nothing: the API's refusal is
    # shown as it is (reason and field), through the same call the forms use.
    run_id = start(page, viewer, Q2_GOAL)
    wait_state(page, "COMPLETED", 90)
    result = page.evaluate(
        """async (id) => {
            const r = await fetch(`/api/runs/${id}/steps/dataset/answer`, {method: 'POST',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify({answer: {x: 1}})});
            return {status: r.status, body: await r.json()};
        }""",
        run_id,
    )
    assert result["status"] == 409, result
    assert result["body"]["reason"] == "NOT_WAITING", result
    assert result["body"]["code"] == "FAILED_PRECONDITION", result
