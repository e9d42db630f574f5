"""Interoperability with the `huggingface_hub` package, both ways, through the stand-in hub
(`stand-in-hub`, built by `swift build`) named by HF_ENDPOINT: what one downloads the other finds."""
import hashlib
import json
import os
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, ".build", "debug")
BIN = os.environ.get("MINICPMO_BIN", os.path.join(BUILD, "minicpmo"))
HUB = os.path.join(BUILD, "stand-in-hub")
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "models", "tiny-minicpmo")
REPO = "openbmb/tiny-minicpmo"


def files():
    out = []
    for base, _, names in os.walk(MODEL):
        out += [os.path.relpath(os.path.join(base, n), MODEL) for n in names]
    return sorted(out)


@pytest.fixture(scope="module")
def hub():
    proc = subprocess.Popen([HUB, "--repo", f"{REPO}={MODEL}"], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().split()[-1]
    commit = proc.stdout.readline().split()[-1]
    yield url, commit
    proc.kill()
    proc.wait()


def minicpmo(args, env):
    return subprocess.run([BIN] + args, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


def greedy(model, env):
    r = minicpmo(["generate", "--model", model, "--prompt", "Hello!", "--max-tokens", "8", "--temperature", "0", "--json"], env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["token_ids"]


def hf_env(home, url, offline=False):
    env = {"HF_HOME": home, "HF_ENDPOINT": url, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1"}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def python(code, env):
    r = subprocess.run(["python3", "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_what_huggingface_hub_downloads_minicpmo_finds(hub):
    url, commit = hub
    with tempfile.TemporaryDirectory() as home:
        python(f"""
from huggingface_hub import hf_hub_download
for f in {files()!r}:
    hf_hub_download({REPO!r}, f)
""", hf_env(home, url))
        expected = greedy(MODEL, {})
        # offline, by repo id, with no copy: the snapshot folder is used as it is
        assert greedy(REPO, hf_env(home, url, offline=True)) == expected
        assert greedy(f"{REPO}@{commit}", hf_env(home, url, offline=True)) == expected


def test_what_minicpmo_downloads_huggingface_hub_finds(hub):
    url, commit = hub
    with tempfile.TemporaryDirectory() as home:
        r = minicpmo(["download", REPO], hf_env(home, url))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith(f"snapshots/{commit}")
        out = python(f"""
import hashlib
from huggingface_hub import hf_hub_download, snapshot_download, try_to_load_from_cache
for f in {files()!r}:
    p = hf_hub_download({REPO!r}, f, local_files_only=True)
    assert p == try_to_load_from_cache({REPO!r}, f), f
    print(f, hashlib.sha256(open(p, "rb").read()).hexdigest())
print("snapshot", snapshot_download({REPO!r}, local_files_only=True))
""", hf_env(home, url, offline=True))
        lines = dict(l.split(" ", 1) for l in out.strip().splitlines())
        for f in files():
            with open(os.path.join(MODEL, f), "rb") as fh:
                assert lines[f] == hashlib.sha256(fh.read()).hexdigest(), f
        assert lines["snapshot"].endswith(commit)
