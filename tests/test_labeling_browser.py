"""The labeling app in a real headless Chromium: a labeler signs in with a secret link, ranks 4
shuffled responses (one dragged by the mouse, one moved and one tied by keyboard), scores them,
flags one, edits the best, critiques one and submits; the export holds exactly that. The admin
page is opened too. Screenshots of both go to tmp_path (and to $LABELING_SCREENSHOTS if set,
which is how README's were made)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


from framework.labeling.app import create_app
from framework.labeling.app.submission import display_order
from framework.labeling.export import write_exports
from framework.labeling.store import ADMIN
from framework.labeling.tasks import Task
from labeling_apps import make_store
from reward_servers import app_in_thread

EVIL = '<script>window.pwned = 1</script>'
TASK = Task("r1-0007-3f2a9c1e",
            [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": "How do I keep basil fresh?"}],
            ["Put it in the fridge.",
             "Trim the stems and stand the bunch in a glass of water at room temperature, "
             "loosely covered with a bag; change the water every day or two.",
             f"Basil likes warmth. {EVIL}",
             "Freeze it."], {"round": 1})


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def _keep(shot: Path) -> None:
    folder = os.environ.get("LABELING_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)


def test_a_labeler_ranks_scores_edits_and_critiques_in_chromium(tmp_path):
    from browser import full_page_screenshot, headless_chromium
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    store, tokens = make_store(tmp_path, [TASK], labelers=["ann"])
    order = display_order(TASK, "ann", store.settings()["secret"])  # position -> response
    driver = headless_chromium(height=2400)  # every card in view, for the mouse
    try:
        with app_in_thread(create_app(store)) as url:
            driver.get(f"{url}/login?token={tokens['ann']}")
            assert tokens["ann"] not in driver.current_url  # the link's token leaves the bar
            driver.find_element(By.ID, "start").click()
            assert driver.current_url == f"{url}/task/{TASK.task_id}"

            def cards():
                return driver.find_elements(By.CSS_SELECTOR, "#ranking > .card")

            def positions():
                return [int(c.get_attribute("data-pos")) for c in cards()]

            assert positions() == [0, 1, 2, 3]
            texts = [c.find_element(By.CSS_SELECTOR, ".text").text for c in cards()]
            assert texts == [TASK.responses[i] for i in order]  # shown shuffled, as text
            assert driver.execute_script("return window.pwned === undefined")
            messages = driver.find_elements(By.CSS_SELECTOR, ".conversation .content")
            assert [m.text for m in messages] == [m["content"] for m in TASK.prompt]

            # the mouse: drag the last card above the first by its handle
            handle = cards()[3].find_element(By.CSS_SELECTOR, ".handle")
            first = cards()[0]
            ActionChains(driver).click_and_hold(handle).move_to_element_with_offset(
                first, 0, -first.size["height"] // 2 + 4).pause(0.1).release().perform()
            assert positions() == [3, 0, 1, 2]
            # the keyboard: move the second card down one, tie the last with the one above
            cards()[1].send_keys(Keys.SHIFT, Keys.ARROW_DOWN)
            assert positions() == [3, 1, 0, 2]
            cards()[3].send_keys("t")
            ranks_shown = [c.find_element(By.CSS_SELECTOR, ".rank").text for c in cards()]
            assert ranks_shown == ["#1", "#2", "#3", "#3"]
            assert driver.find_element(By.ID, "order").get_attribute("value") == "3,1,0,2"

            scores = {3: 7, 1: 5, 0: 4, 2: 2}  # by position
            for card in cards():
                pos = int(card.get_attribute("data-pos"))
                if pos == 0:  # one by the mouse
                    card.find_element(By.CSS_SELECTOR, f'.score input[value="{scores[pos]}"]').click()
                else:
                    card.send_keys(str(scores[pos]))
            cards()[3].find_element(By.CSS_SELECTOR, 'input[value="makes_up_facts"]').click()
            best = cards()[0]
            best.send_keys("e")  # opens the edit box, focused
            edit = best.find_element(By.CSS_SELECTOR, "details.edit textarea")
            edit.clear()
            edit.send_keys("Trim the stems, stand the basil in water at room temperature, and\n"
                           "change the water daily.")
            worst = cards()[3]
            worst.send_keys("c")
            worst.find_element(By.CSS_SELECTOR, "details.critique textarea").send_keys(
                "Vague, and the warmth claim needs a source.")
            _keep(full_page_screenshot(driver, tmp_path / "labeling_task.png"))
            ActionChains(driver).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(
                Keys.CONTROL).perform()
            WebDriverWait(driver, 20).until(
                lambda d: "/task/" not in d.current_url or "Not done" in d.page_source)
            assert driver.current_url == f"{url}/?done=1", driver.find_element(By.TAG_NAME, "main").text
            assert driver.find_element(By.ID, "all-done").is_displayed()  # nothing left

            driver.delete_all_cookies()
            driver.set_window_size(1280, 700)
            driver.get(f"{url}/login?token={store.add_account('admin', ADMIN)}")
            assert "Labeling progress" in driver.page_source
            rows = driver.find_elements(By.CSS_SELECTOR, "#labelers tbody tr")
            assert [r.find_elements(By.TAG_NAME, "td")[2].text for r in rows] == ["1"]
            _keep(full_page_screenshot(driver, tmp_path / "labeling_admin.png"))
    finally:
        driver.quit()

    counts = write_exports(tmp_path / "export", store.tasks(), store.labels())
    # positions [3, 1, 0, 2] best first, 0 and 2 tied: response order[3] is best
    ranks = [0] * 4
    for pos, rank in ((3, 1), (1, 2), (0, 3), (2, 3)):
        ranks[order[pos]] = rank
    [label] = _jsonl(tmp_path / "export" / "labels.jsonl")
    assert label["ranks"] == ranks and label["labeler"] == "ann"
    assert label["scores"] == [scores[order.index(i)] for i in range(4)]
    assert label["flags"][order[2]] == ["makes_up_facts"]
    assert sum(map(len, label["flags"])) == 1
    pairs = {(r["chosen"], r["rejected"]) for r in _jsonl(tmp_path / "export" / "comparisons.jsonl")}
    R = TASK.responses
    expected = {(R[a], R[b]) for a in range(4) for b in range(4) if ranks[a] < ranks[b]}
    assert pairs == expected and counts["comparisons.jsonl"] == 5  # 6 pairs, one tied
    assert _jsonl(tmp_path / "export" / "demonstrations.jsonl") == [{
        "prompt": TASK.prompt, "task_id": TASK.task_id, "labeler": "ann",
        "completion": "Trim the stems, stand the basil in water at room temperature, and\n"
                      "change the water daily."}]
    assert [(c["response"], c["critique"]) for c in _jsonl(tmp_path / "export" / "critiques.jsonl")] \
        == [(R[order[2]], "Vague, and the warmth claim needs a source.")]
    assert counts["scores.jsonl"] == 4
