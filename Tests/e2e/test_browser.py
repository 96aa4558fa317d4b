"""The demo page in headless Chromium: WebSocket and long-poll transports."""

from __future__ import annotations

import time

import pytest

from browser import SCREENSHOTS, launch_browser
from conftest import new_uid


@pytest.fixture(scope="module")
def driver():
    drv = launch_browser("1280,1600")
    drv.set_script_timeout(10)
    yield drv
    drv.quit()


def _wait(drv, cond, timeout, what):
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.1).until(cond)
    except Exception as e:  # TimeoutException: add the page state to the message
        shot = SCREENSHOTS / f"failure-{int(time.time() * 1000)}.png"
        drv.save_screenshot(str(shot))
        log = [li.text for li in drv.find_elements("css selector", "#log li")][:15]
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; state="
                             f"{drv.find_element('id', 'state').text!r}; log={log}; screenshot={shot}") from e


def _text(drv, element_id):
    return drv.find_element("id", element_id).text.strip()


def _run_sleep_on_page(drv, base_url: str, query: str, transport: str, shot_prefix: str, uid: str):
    from selenium.webdriver.common.by import By

    drv.get(f"{base_url}/{query}")
    _wait(drv, lambda d: d.execute_script("return !!window.TaskGateDemo"), 10, "app.js to load")
    assert _text(drv, "transport") == transport
    assert _text(drv, "state") == "disconnected", "the page must start disconnected"

    uid_input = drv.find_element(By.ID, "uid")
    uid_input.clear()
    uid_input.send_keys(uid)
    drv.find_element(By.ID, "connect").click()
    _wait(drv, lambda d: _text(d, "state") == "connected", 10, f"#state connected ({transport})")
    assert _text(drv, "transport") == transport
    drv.save_screenshot(str(SCREENSHOTS / f"{shot_prefix}-connected.png"))

    ms = drv.find_element(By.ID, "sleep-ms")
    ms.clear()
    ms.send_keys("800")
    t0 = time.monotonic()
    drv.find_element(By.CSS_SELECTOR, 'button[data-cmd="sleep"]').click()
    card = _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "div.task[data-id]"), 5, "a task card")[0]
    task_id = card.get_attribute("data-id")
    assert task_id
    _wait(drv, lambda d: d.find_element(By.CSS_SELECTOR, f'div.task[data-id="{task_id}"]')
          .get_attribute("data-status") == "succeeded", 10, "the task card to reach succeeded")
    assert time.monotonic() - t0 >= 0.75, "an 800 ms sleep cannot succeed that fast"
    card = drv.find_element(By.CSS_SELECTOR, f'div.task[data-id="{task_id}"]')
    assert "slept_ms" in card.text and "800" in card.text, card.text
    # Events carry what changed: merged into the submitted task, the card keeps its cmd and args.
    assert card.find_element(By.CSS_SELECTOR, ".task-cmd").text == "sleep", card.text
    assert card.find_element(By.CSS_SELECTOR, ".task-args").text == 'args {"ms":800}', card.text
    assert card.find_element(By.CSS_SELECTOR, ".task-elapsed").text.startswith("took "), card.text
    log = [li.text for li in drv.find_elements(By.CSS_SELECTOR, "#log li")]
    assert any(f"sleep {task_id} succeeded" in line for line in log), log[:10]
    assert int(_text(drv, "cursor")) >= 2, "the page must advance its cursor from the events"
    drv.save_screenshot(str(SCREENSHOTS / f"{shot_prefix}-succeeded.png"))
    return task_id


def test_demo_page_websocket(server, driver, api):
    from selenium.webdriver.common.by import By

    uid = new_uid("br-ws")
    task_id = _run_sleep_on_page(driver, server.base_url, "", "websocket", "websocket", uid)
    task = api.get(f"{server.base_url}/api/v1/tasks/{task_id}").json()
    assert task["uid"] == uid and task["status"] == "succeeded" and task["args"]["ms"] == 800
    clients = api.get(f"{server.base_url}/api/v1/clients").json()["clients"]
    assert any(c["uid"] == uid and c["transport"] == "websocket" for c in clients), clients

    # A task the page did not submit (a backend's, over REST): its events alone have no cmd or args, so the page
    # asks for its status, and the card gets them.
    r = api.post(f"{server.base_url}/api/v1/tasks", json={"cmd": "echo", "args": {"from": "rest"}, "uid": uid})
    assert r.status_code == 202, r.text
    rest_id = r.json()["id"]
    card = f'div.task[data-id="{rest_id}"]'
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, card)
          and d.find_element(By.CSS_SELECTOR, card).get_attribute("data-status") == "succeeded"
          and d.find_element(By.CSS_SELECTOR, f"{card} .task-cmd").text == "echo", 10,
          "the REST task's card, with its cmd from the status reply")
    assert driver.find_element(By.CSS_SELECTOR, f"{card} .task-args").text == 'args {"from":"rest"}'
    assert '"from": "rest"' in driver.find_element(By.CSS_SELECTOR, f"{card} .task-result").text
    log = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#log li")]
    assert not [line for line in log if f"status {rest_id}" in line], "the page's own lookup is not logged"


def test_demo_page_long_poll(server, driver, api):
    uid = new_uid("br-lp")
    task_id = _run_sleep_on_page(driver, server.base_url, "?transport=poll", "long-poll", "long-poll", uid)
    task = api.get(f"{server.base_url}/api/v1/tasks/{task_id}").json()
    assert task["uid"] == uid and task["status"] == "succeeded"
    clients = api.get(f"{server.base_url}/api/v1/clients").json()["clients"]
    assert any(c["uid"] == uid and c["transport"] == "long-poll" for c in clients), clients
    # leave the page so its pending long-poll is dropped before the server shuts down
    driver.get("about:blank")
