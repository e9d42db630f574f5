"""The server through the official `openai` package, as users' clients meet it.

Starts `minicpmo serve` (the binary `swift build` made) on a free loopback port with the tiny fixture
model; MINICPMO_BIN overrides the binary.
"""
import base64
import io
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import wave
from contextlib import contextmanager

import openai
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MINICPMO_BIN", os.path.join(ROOT, ".build", "debug", "minicpmo"))
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "models", "tiny-minicpmo")
IMAGE = os.path.join(ROOT, "Tests", "Fixtures", "images", "chelsea-small.png")
AUDIO = os.path.join(ROOT, "Tests", "Fixtures", "audio", "speech-16k-s16.wav")
GREEDY = dict(temperature=0, extra_body={"repetition_penalty": 1})


@contextmanager
def _health(url):
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            yield r.status
    except urllib.error.HTTPError as e:
        yield e.code


@pytest.fixture(scope="module")
def server():
    log = tempfile.NamedTemporaryFile(prefix="minicpmo-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen([BIN, "serve", "--model", MODEL, "--port", "0", "--api-key", "sk-test"],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    assert line.startswith("listening on http://127.0.0.1:"), line
    url = line.split()[-1]
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0, timeout=120)
    for _ in range(600):
        with _health(url) as status:
            if status == 200:
                break
        time.sleep(0.05)
    yield client, url
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_models(server):
    client, _ = server
    assert [m.id for m in client.models.list().data] == ["tiny-minicpmo"]


def test_chat_streamed_equals_non_streamed(server):
    client, _ = server
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello!"}]
    plain = client.chat.completions.create(model="tiny-minicpmo", messages=messages, max_tokens=10, **GREEDY)
    assert plain.object == "chat.completion"
    assert plain.choices[0].finish_reason == "length"
    assert plain.usage.completion_tokens == 10
    text = plain.choices[0].message.content
    assert text
    pieces, usage = [], None
    stream = client.chat.completions.create(model="tiny-minicpmo", messages=messages, max_tokens=10, stream=True,
                                            stream_options={"include_usage": True}, **GREEDY)
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
    assert "".join(pieces) == text
    assert usage.completion_tokens == 10
    # the second turn, sent as the whole history, reuses the first one's cache
    again = client.chat.completions.create(model="tiny-minicpmo", max_tokens=4, messages=messages + [
        {"role": "assistant", "content": text}, {"role": "user", "content": "More."}], **GREEDY)
    assert again.usage.prompt_tokens_details.cached_tokens >= plain.usage.prompt_tokens


def test_image_and_input_audio(server):
    client, _ = server
    with open(IMAGE, "rb") as f:
        image = base64.b64encode(f.read()).decode()
    r = client.chat.completions.create(model="tiny-minicpmo", max_tokens=6, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}},
        {"type": "text", "text": "What is in the picture?"}]}], **GREEDY)
    assert r.usage.prompt_tokens > 64
    with open(AUDIO, "rb") as f:
        audio = base64.b64encode(f.read()).decode()
    r = client.chat.completions.create(model="tiny-minicpmo", max_tokens=6, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is said?"},
        {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}]}], **GREEDY)
    assert r.usage.prompt_tokens > 25
    assert r.choices[0].message.content is not None


def test_audio_out_equals_generate_speech_out(server):
    client, _ = server
    r = client.chat.completions.create(model="tiny-minicpmo", max_tokens=12, modalities=["text", "audio"],
                                       audio={"voice": "alloy", "format": "wav"},
                                       messages=[{"role": "user", "content": "Say hello."}], **GREEDY)
    audio = r.choices[0].message.audio
    data = base64.b64decode(audio.data)
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == 24000 and w.getnchannels() == 1 and w.getnframes() > 0
    assert audio.transcript
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "answer.wav")
        subprocess.run([BIN, "generate", "--model", MODEL, "--prompt", "Say hello.", "--max-tokens", "12",
                        "--temperature", "0", "--repetition-penalty", "1", "--speech-out", out, "--speech-greedy"],
                       check=True, capture_output=True)
        with open(out, "rb") as f:
            assert f.read() == data


def test_streamed_audio_chunks(server):
    client, _ = server
    stream = client.chat.completions.create(model="tiny-minicpmo", max_tokens=12, modalities=["text", "audio"],
                                            audio={"voice": "default", "format": "pcm16"}, stream=True,
                                            messages=[{"role": "user", "content": "Say hello."}], **GREEDY)
    pcm, transcript = b"", ""
    for chunk in stream:
        for c in chunk.choices:
            a = getattr(c.delta, "audio", None)
            if isinstance(a, dict):
                a = type("Audio", (), a)
            if a is not None:
                pcm += base64.b64decode(getattr(a, "data", None) or "")
                transcript += getattr(a, "transcript", None) or ""
    assert len(pcm) > 0 and len(pcm) % 2 == 0
    assert transcript


def test_transcription(server):
    client, _ = server
    with open(AUDIO, "rb") as f:
        t = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert isinstance(t.text, str)


def test_speech(server):
    client, _ = server
    r = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.", response_format="wav")
    with wave.open(io.BytesIO(r.content)) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 0


def test_error_object(server):
    client, url = server
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-minicpmo", n=2, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 400
    assert e.value.body["param"] == "n"
    assert e.value.body["type"] == "invalid_request_error"
    bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.models.list()
    assert e.value.body["code"] == "invalid_api_key"
