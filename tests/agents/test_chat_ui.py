"""The gradio chat page in a real headless Chromium: it loads, a message is sent, the streamed reply appears
(equal to generate()'s greedy text for the same chat), and a screenshot is saved."""
import os
import shutil
import socket
import time

import pytest

gradio = pytest.importorskip("gradio", reason="the chat UI needs gradio (test extra)")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test drives Chromium with selenium")

from formers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from formers.agents.chat_ui import model_chat_ui  # noqa: E402
from formers.default_model import DEFAULT_MODEL_NAME  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
# CI installs them (.ci/run), so there a missing browser fails the test instead of skipping it
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
                                reason="chromium and chromium-driver (Debian packages) are not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_chat_page_streams_the_models_reply(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_NAME)
    model = AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_NAME)
    message = "How do I open a file in Python?"
    chat = [{"role": "user", "content": message}]
    inputs = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    expected = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert expected

    page = model_chat_ui(model, tokenizer, max_new_tokens=24, do_sample=False)
    port = _free_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        box = _wait_for(lambda: browser.find_element("css selector", "#message textarea"), 60)
        box.send_keys(message)
        box.send_keys("\n")
        bubble_text = _wait_for(lambda: _reply_text(browser, expected), 120)
        assert " ".join(expected.split()) in " ".join(bubble_text.split())
        screenshot = tmp_path / "chat_ui.png"
        browser.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 1000
    finally:
        browser.quit()
        page.close()


def _reply_text(browser, expected):
    text = browser.find_element("css selector", "#chatbot").text
    return text if " ".join(expected.split()[:3]) in " ".join(text.split()) and expected.split()[-1] in text else None


def _wait_for(probe, timeout):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - the page is still loading
            last_error = error
        time.sleep(0.5)
    raise AssertionError(f"the page did not show the expected content within {timeout} s ({last_error})")
