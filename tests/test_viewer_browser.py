"""The viewer in a real browser: headless Chromium (system package) driven by Selenium, against
``sqlitestream serve`` in its own process and a writer in another. Waits are WebDriverWait
conditions; the only deadline that is part of a check is the issue's: an event appended by
another process is on the page within 1 s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browsing import (
    Server,
    Writer,
    all_rows,
    chrome,
    forget_everything,
    narrow,
    page_problems,
    rows_in_view,
    skip_without_browser,
)

from sqlitestream import Event, Run, Session, SQLiteSessionStore

DELIVERY_DEADLINE_S = 1.0  # the issue's: appended by another process, shown within 1 s
PATIENCE_S = 30.0  # how long a wait for something not timed may take on a busy machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module's tests in this process (starting one costs about 1 s of
    wall time and 0.5 s of CPU); ``driver`` gives each test a clean one."""
    skip_without_browser()
    shared = chrome()
    try:
        yield shared
    finally:
        shared.quit()


@pytest.fixture
def driver(browser: Any) -> Iterator[Any]:
    """The shared browser as a new one would be: a blank page, no cookies, no cached responses
    (the server lets the browser cache session pages, and a later test's server may get the
    same port), the window's own size, and no console messages from earlier tests."""
    forget_everything(browser)
    try:
        yield browser
    finally:
        forget_everything(browser)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "viewer.db"


@pytest.fixture
def server(db: Path, tmp_path: Path) -> Iterator[Server]:
    skip_without_browser()
    running = Server(db, tmp_path / "serve.log")
    SQLiteSessionStore(db).close()  # the file exists before the writer and the server meet
    running.start()
    try:
        yield running
    finally:
        running.stop()


def wait(driver: Any, condition: Any, timeout: float = PATIENCE_S, what: str = "") -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    # Each look is a WebDriver round trip through chromedriver into the page: at 100 a second
    # the looking cost more CPU than the pages; 20 a second still times the 1 s deadline finely.
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, what)


def present(css: str) -> Any:
    from selenium.webdriver.common.by import By

    return lambda d: d.find_elements(By.CSS_SELECTOR, css)


def text_of(css: str, expected: str) -> Any:
    # Read in the page, in one step: the listing replaces its rows when they change, so an
    # element found in one WebDriver call may be gone by the next.
    return lambda d: (
        d.execute_script("return document.querySelector(arguments[0])?.textContent", css) == expected
    )


def click(css: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt(d: Any) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True

    return attempt


def listed_ids(d: Any) -> list[str]:
    return list(
        d.execute_script(
            "return [...document.querySelectorAll('#sessions tbody tr')].map((r) => r.dataset.id)"
        )
    )


def test_live_sessions_and_events_from_another_process_survive_a_server_restart(
    driver: Any, server: Server, db: Path
) -> None:
    from selenium.webdriver.common.by import By

    writer = Writer(db)
    try:
        driver.get(server.url + "/")
        wait(driver, text_of("#count", "No sessions match."), what="the empty listing")

        writer.session("ses_live", "coder")
        for text in ("hello", "world", "again"):
            writer.append("ses_live", "message_sent", {"role": "user", "content": text})
        wait(driver, present('tr[data-id="ses_live"]'), what="the new session on the sessions page")
        wait(driver, text_of('tr[data-id="ses_live"] td[data-label="Events"]', "3"), what="its event count")
        writer.append("ses_live", "message_sent", {"content": "four"})
        wait(driver, text_of('tr[data-id="ses_live"] td[data-label="Latest seq"]', "4"), what="a live count")

        wait(driver, click('tr[data-id="ses_live"] a'), what="a click on the session")
        wait(driver, present("#event-4"), what="the session's first events")
        assert [seq for seq, _ in rows_in_view(driver)] == [1, 2, 3, 4]

        for expected in range(5, 15):
            assert writer.append("ses_live", "tool_call_started", {"tool": "grep", "n": expected}) == expected
            wait(driver, present(f"#event-{expected}"), DELIVERY_DEADLINE_S, f"event {expected} within 1 s")
            shown = [seq for seq, _ in rows_in_view(driver)]
            assert shown == list(range(shown[0], expected + 1)), shown
        assert page_problems(driver) == []

        server.kill()
        wait(driver, present('#live[data-state="down"]'), what="the page noticing the server is gone")
        for n in range(15, 20):
            assert writer.append("ses_live", "message_received", {"content": f"while down {n}"}) == n
        server.start()
        wait(driver, present("#event-19"), what="the events appended while the server was down")
        wait(driver, present('#live[data-state="live"]'), what="the page live again")
        for expected in range(20, 23):
            writer.append("ses_live", "message_sent", {"content": "after restart"})
            wait(driver, present(f"#event-{expected}"), DELIVERY_DEADLINE_S, f"event {expected} within 1 s")

        assert [seq for seq, _ in all_rows(driver)] == list(range(1, 23))
        assert driver.find_element(By.ID, "events").text == "22"
        # While the server was down the browser logged its refused connections; nothing else.
        problems = page_problems(driver)
        assert all(entry["source"] == "network" for entry in problems), problems
    finally:
        writer.close()


def _filter_fixture(db: Path) -> None:
    with SQLiteSessionStore(db) as store:
        store.save_session(Session(id="ses_f", agent_id="coder", status="failed"))
        store.save_session(Session(id="ses_g", agent_id="reviewer", status="completed"))
        store.save_session(Session(id="other_h", agent_id="coder", status="active"))
        store.save_run(Run(session_id="ses_f", id="r1", status="completed", token_usage={"input_tokens": 7}))
        store.append_events(
            [
                Event(type="session_started", session_id="ses_f"),
                Event(type="run_started", session_id="ses_f", run_id="r1"),
                Event(type="tool_call_started", session_id="ses_f", run_id="r1", data={"tool": "ls"}),
                Event(type="tool_call_completed", session_id="ses_f", run_id="r1", data={"tool": "ls"}),
                Event(type="run_completed", session_id="ses_f", run_id="r1"),
                Event(type="run_started", session_id="ses_f", run_id="r2"),
                Event(type="tool_call_started", session_id="ses_f", run_id="r2", data={"tool": "rm"}),
                Event(type="error_occurred", session_id="ses_f", run_id="r2", data={"message": "denied"}),
                Event(type="run_failed", session_id="ses_f", run_id="r2"),
                Event(type="session_failed", session_id="ses_f"),
            ]
        )
        store.append_event(Event(type="message_sent", session_id="ses_g"))


@pytest.fixture(scope="module")
def filter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on the sessions of ``_filter_fixture``, shared by the tests that only read them."""
    skip_without_browser()
    directory = tmp_path_factory.mktemp("filters")
    _filter_fixture(directory / "viewer.db")
    running = Server(directory / "viewer.db", directory / "serve.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_the_filters_of_both_pages(driver: Any, filter_server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    server = filter_server
    driver.get(server.url + "/")
    ids = listed_ids
    wait(driver, lambda d: sorted(ids(d)) == ["other_h", "ses_f", "ses_g"], what="all sessions")
    Select(driver.find_element(By.ID, "status")).select_by_value("failed")
    wait(driver, lambda d: ids(d) == ["ses_f"], what="the status filter")
    Select(driver.find_element(By.ID, "status")).select_by_value("")
    driver.find_element(By.ID, "agent").send_keys("coder")
    wait(driver, lambda d: sorted(ids(d)) == ["other_h", "ses_f"], what="the agent filter")
    driver.find_element(By.ID, "agent").clear()
    driver.find_element(By.ID, "q").send_keys("SES_")
    wait(driver, lambda d: sorted(ids(d)) == ["ses_f", "ses_g"], what="the id search")
    assert "q=SES_" in driver.current_url  # the filters are in the address, to share or reload

    driver.get(server.url + "/session?id=ses_f")
    wait(driver, present("#event-10"), what="the session")

    def text(css: str) -> str:
        return str(
            driver.execute_script("return document.querySelector(arguments[0])?.textContent ?? ''", css)
        )

    def seqs() -> list[int]:
        return [seq for seq, _ in rows_in_view(driver)]

    def headings() -> list[str]:
        script = "return [...document.querySelectorAll('#timeline .row.group')].map((n) => n.dataset.run)"
        return list(driver.execute_script(script))

    assert seqs() == list(range(1, 11))
    assert headings() == ["r1", "r2", ""]  # grouped by run; the last event is outside any run
    # Readable summaries: the tool's name, the error's message; colour by family, failures marked.
    assert (text("#event-3 .text"), text("#event-8 .text")) == ("ls", "denied")
    badge = "return document.querySelector(arguments[0] + ' .badge').className"
    assert driver.execute_script(badge, "#event-3") == "badge fam-tool"
    assert driver.execute_script(badge, "#event-8") == "badge fam-error failed"
    types = Select(driver.find_element(By.ID, "type"))
    types.select_by_value("tool_call_started")
    wait(driver, lambda d: seqs() == [3, 7], what="the type filter")
    types.select_by_value("family:run")
    wait(driver, lambda d: seqs() == [2, 5, 6, 9], what="the family filter")
    types.select_by_value("")
    runs = Select(driver.find_element(By.ID, "run"))
    runs.select_by_value("r2")
    wait(driver, lambda d: seqs() == [6, 7, 8, 9], what="the run filter")
    assert headings() == ["r2"]
    runs.select_by_value("-")
    wait(driver, lambda d: seqs() == [1, 10], what="events outside any run")
    runs.select_by_value("")
    wait(driver, lambda d: seqs() == list(range(1, 11)), what="no filter")

    r1, r2 = '#runs button[data-run="r1"]', '#runs button[data-run="r2"]'
    # The saved run's status and token usage; the unsaved one's status from its events.
    wait(driver, lambda d: "completed" in text(r1) and "in 7 tokens" in text(r1), what="run r1")
    assert "failed" in text(r2)
    wait(driver, click(r1), what="a click on run r1")
    wait(driver, lambda d: seqs() == [2, 3, 4, 5], what="a run chosen from the runs list")
    wait(driver, lambda d: d.execute_script(f"return document.querySelector('{r1}').ariaPressed") == "true")
    driver.refresh()
    wait(driver, present("#event-5"), what="the page reloaded")
    wait(driver, lambda d: seqs() == [2, 3, 4, 5], what="the run filter kept in the address")
    assert page_problems(driver) == []


def test_a_session_of_100000_events_renders_only_what_is_in_view(
    driver: Any, server: Server, db: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    total = 100_000
    with SQLiteSessionStore(db) as store:
        for start in range(0, total, 5000):
            store.append_events(
                [
                    Event(type="message_streamed", session_id="big", data={"text": f"word {n}"})
                    for n in range(start, start + 5000)
                ]
            )
    driver.get(server.url + "/session?id=big")
    wait(driver, text_of("#shown", "100,000 events"), 120, "the whole session")
    wait(driver, present(f"#event-{total}"), what="the newest event, followed")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#timeline [role=option]")) < 80

    timeline = driver.find_element(By.ID, "timeline")
    timeline.send_keys(Keys.HOME)
    wait(driver, lambda d: timeline.get_attribute("aria-activedescendant") == "event-1", what="Home")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#timeline [role=option]")) < 80
    timeline.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN)
    wait(driver, lambda d: timeline.get_attribute("aria-activedescendant") == "event-3", what="arrows")
    timeline.send_keys(Keys.ENTER)
    # Read in the page, in one step: the list may render the row again between two WebDriver
    # calls (a stale element, seen with three workers on two cores).
    detail = "return document.querySelector('#event-3 .detail')?.textContent ?? ''"
    wait(driver, lambda d: '"text": "word 2"' in d.execute_script(detail), what="the event's JSON")
    timeline.send_keys(Keys.ESCAPE)
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, ".detail"), what="Escape")
    timeline.send_keys(Keys.END)
    wait(driver, lambda d: timeline.get_attribute("aria-activedescendant") == f"event-{total}", what="End")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#timeline [role=option]")) < 80
    assert page_problems(driver) == []


_CONTRAST = """
const luminance = (rgb) => {
  const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map(Number).map((c) => {
    c /= 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const background = (node) => {
  for (; node; node = node.parentElement) {
    const color = getComputedStyle(node).backgroundColor;
    if (!/rgba\\(.*, 0\\)$/.test(color) && color !== 'transparent') return color;
  }
  return 'rgb(255, 255, 255)';
};
const worst = [];
for (const node of document.querySelectorAll('body *')) {
  if (!node.childNodes.length || ![...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim())) continue;
  if (!node.getClientRects().length || node.closest('.visually-hidden')) continue;
  const [a, b] = [luminance(getComputedStyle(node).color), luminance(background(node))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) worst.push([node.tagName, node.className, node.textContent.slice(0, 30), ratio]);
}
return worst;
"""

_OVERFLOW = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];"


def test_both_pages_work_at_375_px_with_readable_contrast(driver: Any, filter_server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server = filter_server
    narrow(driver)
    driver.get(server.url + "/")
    wait(driver, present('tr[data-id="ses_f"]'), what="the listing")
    assert driver.execute_script(_OVERFLOW) == [375, 375]
    assert driver.execute_script(_CONTRAST) == []
    # Keyboard: "/" jumps to the search box; Tab reaches the sessions' links.
    driver.find_element(By.TAG_NAME, "body").send_keys("/")
    assert driver.switch_to.active_element.get_attribute("id") == "q"
    driver.switch_to.active_element.send_keys("ses_f", Keys.TAB)
    wait(driver, lambda d: listed_ids(d) == ["ses_f"], what="search")
    assert driver.switch_to.active_element.get_attribute("id") != "q"  # Tab moved on
    driver.find_element(By.CSS_SELECTOR, 'tr[data-id="ses_f"] a').send_keys(Keys.ENTER)
    wait(driver, present("#event-10"), what="the session page")
    assert driver.execute_script(_OVERFLOW) == [375, 375]
    assert driver.execute_script(_CONTRAST) == []
    right = driver.execute_script("return document.querySelector('#event-10').getBoundingClientRect().right")
    assert right <= 375
    assert page_problems(driver) == []


def test_a_session_deleted_and_written_again_longer_while_away_is_shown_from_sequence_1(
    driver: Any, server: Server, db: Path
) -> None:
    with SQLiteSessionStore(db) as store:
        store.append_events([Event(type="message_sent", session_id="again", data={"n": n}) for n in range(3)])
    driver.get(server.url + "/session?id=again")
    wait(driver, present("#event-3"), what="the first log")
    server.kill()
    with SQLiteSessionStore(db) as store:
        store.delete_session("again")
        # Longer than the log on the page: only the offset's generation tells the two apart.
        store.append_events([Event(type="message_received", session_id="again") for _ in range(5)])
    server.start()
    wait(driver, present("#banner:not([hidden])"), what="the page noticing the new log")
    wait(driver, lambda d: [seq for seq, _ in rows_in_view(d)] == [1, 2, 3, 4, 5], what="the new log")
    assert {kind for _, kind in rows_in_view(driver)} == {"message_received"}
    problems = page_problems(driver)
    assert all(entry["source"] == "network" for entry in problems), problems


def test_a_trimmed_session_starts_at_its_first_retained_event_and_a_trim_past_the_page_starts_over(
    driver: Any, server: Server, db: Path
) -> None:
    with SQLiteSessionStore(db) as store:
        store.append_events([Event(type="message_sent", session_id="kept", data={"n": n}) for n in range(10)])
        store.trim_session("kept", keep_last=4)
    driver.get(server.url + "/session?id=kept")
    wait(driver, lambda d: [seq for seq, _ in rows_in_view(d)] == [7, 8, 9, 10], what="the retained events")
    note = driver.find_element("css selector", "#trimmed")
    assert note.is_displayed() and "Events 1 to 6 were trimmed" in note.text
    assert not driver.find_element("css selector", "#banner").is_displayed()
    server.kill()
    with SQLiteSessionStore(db) as store:  # while the page is away, the log moves past it
        store.append_events([Event(type="message_received", session_id="kept") for _ in range(6)])
        store.trim_session("kept", keep_last=3)
    server.start()
    wait(driver, present("#banner:not([hidden])"), what="the page noticing it was trimmed past")
    wait(
        driver,
        lambda d: [seq for seq, _ in rows_in_view(d)] == [14, 15, 16],
        what="the log from its new start",
    )
    problems = page_problems(driver)
    assert all(entry["source"] == "network" for entry in problems), problems


def test_a_server_with_a_token_asks_for_it_once_then_follows_live_with_a_cookie(
    driver: Any, db: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    token = "viewer-t0ken-value"
    with SQLiteSessionStore(db) as store:
        store.append_events(
            [Event(type="message_sent", session_id="guarded", data={"n": n}) for n in range(2)]
        )
    server = Server(db, tmp_path / "serve.log", token=token)
    server.start()
    writer = Writer(db)
    try:
        driver.get(server.url + "/")
        wait(driver, present("#signin #token"), what="the sign-in form")
        assert listed_ids(driver) == []  # nothing of the store is shown before signing in
        driver.find_element(By.ID, "token").send_keys(token + "\n")
        wait(driver, present('tr[data-id="guarded"]'), what="the listing once signed in")
        assert not driver.find_elements(By.ID, "signin")
        # The cookie is HttpOnly: no script on the page can read it (or the token).
        assert driver.execute_script("return document.cookie") == ""
        wait(driver, click('tr[data-id="guarded"] a'), what="a click on the session")
        wait(driver, present("#event-2"), what="the session's events over SSE, with the cookie")
        assert not driver.find_elements(By.ID, "signin")  # asked once, not on every page
        writer.append("guarded", "message_received", {"content": "live"})
        wait(driver, present("#event-3"), DELIVERY_DEADLINE_S, "an appended event within 1 s")
        assert token not in driver.current_url
        assert page_problems(driver) == []
    finally:
        writer.close()
        server.stop()
    assert token not in (tmp_path / "serve.log").read_text()
