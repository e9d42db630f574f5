"""The chat page in real headless Chromium (Debian's chromium and chromium-driver) against
`minicpmo serve` with the tiny fixture model.

MINICPMO_SCREENSHOTS=DIR also writes the README's screenshots (light and dark, desktop and phone).
"""
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MINICPMO_BIN", os.path.join(ROOT, ".build", "debug", "minicpmo"))
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "models", "tiny-minicpmo")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
SETTINGS = {"temperature": 0, "repetition_penalty": 1, "max_tokens": 12, "top_k": 100, "top_p": 0.8}


@pytest.fixture(scope="module")
def server():
    log = tempfile.NamedTemporaryFile(prefix="minicpmo-page-", suffix=".log", delete=False)
    proc = subprocess.Popen([BIN, "serve", "--model", MODEL, "--port", "0"], stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    assert line.startswith("listening on http://127.0.0.1:"), line
    url = line.split()[-1]
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    break
        except Exception:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,800",
                "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                # the "microphone" plays this recording, over and over
                "--use-file-for-fake-audio-capture=" + os.path.join(FIXTURES, "audio", "speech-16k-s16.wav")]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def metric(url, name):
    with urllib.request.urlopen(url + "/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return None


def open_page(browser, url, settings=SETTINGS, conversations=None):
    browser.get(url + "/")
    browser.execute_script("localStorage.clear();")
    browser.execute_script("localStorage.setItem('minicpmo.settings', arguments[0]);", json.dumps(settings))
    if conversations is not None:
        browser.execute_script("localStorage.setItem('minicpmo.conversations', arguments[0]);", json.dumps(conversations))
    browser.get(url + "/")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "input").is_displayed())


def wait_idle(browser, timeout=60):
    WebDriverWait(browser, timeout).until(lambda d: d.execute_script("return window.minicpmo.requests > 0 && !window.minicpmo.busy"))


def send(browser, text):
    browser.execute_script("window.minicpmo.requests = 0;")
    box = browser.find_element(By.ID, "input")
    box.send_keys(text)
    browser.find_element(By.ID, "send").click()


def attach(browser, *paths):
    browser.execute_script("document.getElementById('file').removeAttribute('hidden');")
    browser.find_element(By.ID, "file").send_keys("\n".join(paths))
    WebDriverWait(browser, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#attachments .att")) == len(paths))


def assistant(browser):
    return browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")


def test_loads_without_console_errors(server, browser):
    open_page(browser, server)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    assert browser.find_element(By.ID, "send").is_displayed()


def test_typed_message_streams_an_answer(server, browser):
    open_page(browser, server)
    # record every text the answer shows while it streams
    browser.execute_script("""
        window.seen = new Set();
        new MutationObserver(() => {
          const b = document.querySelector('.msg.assistant .bubble');
          if (b && b.textContent) window.seen.add(b.textContent);
        }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});""")
    send(browser, "Hello!")
    wait_idle(browser)
    answer = assistant(browser)[-1]
    assert answer.find_element(By.CSS_SELECTOR, ".bubble").text.strip()
    assert browser.execute_script("return window.seen.size") > 1, "the answer appeared piece by piece"
    assert "12 generated" in answer.find_element(By.CSS_SELECTOR, ".usage").text
    # reload keeps the history
    browser.refresh()
    WebDriverWait(browser, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg")) == 2)
    assert browser.find_element(By.CSS_SELECTOR, ".msg.user .bubble").text == "Hello!"


def test_image_and_wav_reach_the_server(server, browser):
    open_page(browser, server)
    attach(browser, os.path.join(FIXTURES, "images", "chelsea-small.png"), os.path.join(FIXTURES, "audio", "speech-16k-s16.wav"))
    send(browser, "What do you see and hear?")
    wait_idle(browser)
    answer = assistant(browser)[-1]
    prompt_tokens = int(answer.get_attribute("data-prompt-tokens"))
    assert prompt_tokens > 64 + 25, "the image's 64 and the audio's placeholders are in the prompt"
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.user .media img")


def test_speak_answers_plays_audio(server, browser):
    open_page(browser, server, settings={**SETTINGS, "speak": True})
    assert browser.find_element(By.ID, "speak").is_selected()
    send(browser, "Say something.")
    wait_idle(browser, timeout=120)
    assert browser.execute_script("return window.minicpmo.scheduledSamples") > 0
    assert assistant(browser)[-1].find_elements(By.TAG_NAME, "audio"), "a player to replay the answer"


def test_stop_cancels_on_the_server(server, browser):
    open_page(browser, server, settings={**SETTINGS, "max_tokens": 20000})
    cancelled = metric(server, 'minicpmo_requests_total{endpoint="chat_completions",status="499"}') or 0
    send(browser, "Tell me a very long story.")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "const b = document.querySelector('.msg.assistant .bubble'); return b && b.textContent.length > 20"))
    browser.find_element(By.ID, "stop").click()
    wait_idle(browser)
    deadline = time.time() + 5
    while time.time() < deadline and metric(server, "minicpmo_requests_running") != 0:
        time.sleep(0.05)
    assert metric(server, "minicpmo_requests_running") == 0
    assert metric(server, 'minicpmo_requests_total{endpoint="chat_completions",status="499"}') == cancelled + 1
    assert "stopped" in assistant(browser)[-1].text


def test_model_output_is_text_never_markup(server, browser):
    hostile = "<script>window.__xss = 1</script> <img src=x onerror=\"window.__xss = 2\">\n\n```html\n<b onmouseover=alert(1)>x</b>\n```\n[link](javascript:alert(1)) **bold**"
    conversation = {"id": "x", "title": "hostile", "messages": [{"role": "user", "content": "<i>hi</i>"},
                                                               {"role": "assistant", "content": hostile}]}
    open_page(browser, server, conversations=[conversation])
    bubble = assistant(browser)[-1].find_element(By.CSS_SELECTOR, ".bubble")
    assert "<script>window.__xss = 1</script>" in bubble.text
    assert '<img src=x onerror="window.__xss = 2">' in bubble.text
    assert bubble.find_elements(By.TAG_NAME, "img") == [] and bubble.find_elements(By.TAG_NAME, "script") == []
    assert bubble.find_elements(By.TAG_NAME, "a") == [], "javascript: links are not links"
    assert bubble.find_element(By.TAG_NAME, "strong").text == "bold"
    assert bubble.find_element(By.CSS_SELECTOR, "pre code").text == "<b onmouseover=alert(1)>x</b>"
    assert browser.find_element(By.CSS_SELECTOR, ".msg.user .bubble").text == "<i>hi</i>"
    assert browser.execute_script("return window.__xss") is None


def test_refused_media_is_shown_in_place(server, browser):
    open_page(browser, server)
    attach(browser, os.path.join(FIXTURES, "images", "bad-corrupt.png"))
    send(browser, "What is this?")
    wait_idle(browser)
    error = browser.find_element(By.CSS_SELECTOR, ".msg.error .bubble").text
    assert "could not be decoded" in error


def test_phone_width_and_screenshots(server, browser):
    out = os.environ.get("MINICPMO_SCREENSHOTS")
    open_page(browser, server)
    send(browser, "Hello! Can you show me some code?")
    wait_idle(browser)
    for theme in ["light", "dark"]:
        browser.execute_script("localStorage.setItem('minicpmo.settings', JSON.stringify({...JSON.parse(localStorage.getItem('minicpmo.settings')), theme: arguments[0]}));", theme)
        for name, (w, h) in {"desktop": (1200, 760), "phone": (390, 780)}.items():
            browser.set_window_size(w, h)
            browser.refresh()
            WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "input").is_displayed())
            box = browser.find_element(By.ID, "input").rect
            width = browser.execute_script("return window.innerWidth")
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, "the composer fits the screen"
            if name == "phone":
                assert not browser.find_element(By.ID, "sidebar").is_displayed() or \
                    browser.find_element(By.ID, "sidebar").rect["x"] < 0, "the sidebar folds away on a phone"
            if out:
                os.makedirs(out, exist_ok=True)
                browser.save_screenshot(os.path.join(out, f"chat-{theme}-{name}.png"))
    browser.set_window_size(1200, 800)


def test_microphone_recording_becomes_an_attachment(server, browser):
    open_page(browser, server)
    browser.find_element(By.ID, "record").click()
    WebDriverWait(browser, 10).until(lambda d: "s" in d.find_element(By.ID, "record-time").text)
    time.sleep(1.5)
    browser.find_element(By.ID, "record").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attachments .att"))
    label = browser.find_element(By.CSS_SELECTOR, "#attachments .clip").text
    seconds = float(re.search(r"\(([\d.]+) s\)", label).group(1))
    assert 1.0 < seconds < 4.0, label
    send(browser, "What did I say?")
    wait_idle(browser)
    assert int(assistant(browser)[-1].get_attribute("data-prompt-tokens")) > 25, "the recording reached the model"


def test_call_mode_streams_to_the_live_endpoint_and_answers_aloud(server, browser):
    open_page(browser, server, settings={**SETTINGS, "silence_ms": 300, "max_tokens": 200})
    browser.find_element(By.ID, "call").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "call-panel").is_displayed())
    # the microphone streams to /v1/live, whose events come back
    WebDriverWait(browser, 30).until(lambda d: (d.execute_script("return window.minicpmo.liveAppends") or 0) > 5)
    WebDriverWait(browser, 30).until(lambda d: (d.execute_script("return window.minicpmo.liveEvents") or 0) > 1)
    # a turn ends at the pause between two plays of the recording; the answer is spoken
    WebDriverWait(browser, 90).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.user .media .clip"))
    WebDriverWait(browser, 120).until(lambda d: d.execute_script("return window.minicpmo.scheduledSamples") > 0)
    # the recording plays again while the answer is spoken: that interrupts it
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return window.minicpmo.interruptions") > 0)
    browser.find_element(By.ID, "hang-up").click()
    assert not browser.find_element(By.ID, "call-panel").is_displayed()
    assert "spoken turn" in browser.find_element(By.CSS_SELECTOR, ".msg.user .media .clip").text
