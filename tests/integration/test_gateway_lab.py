# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's front doors after `make lab` (tests/integration/conftest.py runs this file after test_readme_commands.py):

- the official `openai` and `ollama` Python clients work through the doors (TLS verified against the host's
  certificate, the key from the lab's vault): chat, streamed chat, completions, models list; Ollama chat, generate, list;
- each door refuses a request with no key or a wrong key, and the routes it must never open, with the right key;
- the engines' own ports answer on their host's loopback only: another lab host and the controller cannot connect;
- the key is in no file of the lab hosts' journals.
The whole route sweep (every route each engine serves) runs in Molecule: roles/*/molecule/default/verify_gateway.yml."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lab_doors  # noqa: E402  pylint: disable=wrong-import-position

ROOT = lab_doors.ROOT
SOCK = os.path.join(ROOT, ".lab", "docker", "docker.sock")
pytestmark = pytest.mark.skipif(not os.path.exists(SOCK), reason="lab dockerd not running: run `make lab`")


def docker(*args):
    env = dict(os.environ, DOCKER_HOST="unix://" + SOCK)
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def lab():
    return {"doors": lab_doors.doors(), "key": lab_doors.key()}


def call(door, path, key=None, body=None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    req = urllib.request.Request(door["url"] + path, data=None if body is None else json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120, context=lab_doors.context(door)) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_openai_client_through_the_vllm_door(lab):
    import httpx
    import openai
    door = lab["doors"]["llm-lab-1"]
    client = openai.OpenAI(base_url=door["url"] + "/v1", api_key=lab["key"], http_client=httpx.Client(verify=lab_doors.context(door)),
                           max_retries=0, timeout=120)
    assert [m.id for m in client.models.list()] == ["tiny"]
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=8,
                                          extra_body={"ignore_eos": True})
    assert chat.usage.completion_tokens == 8 and chat.choices[0].message.content
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=8,
                                                 stream=True, extra_body={"ignore_eos": True}))
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2
    completion = client.completions.create(model="tiny", prompt="Hello", max_tokens=8, extra_body={"ignore_eos": True})
    assert completion.usage.completion_tokens == 8
    streamed = list(client.completions.create(model="tiny", prompt="Hello", max_tokens=8, stream=True, extra_body={"ignore_eos": True}))
    assert len(streamed) >= 2
    # a wrong key: the client raises AuthenticationError (401 from the gateway)
    bad = openai.OpenAI(base_url=door["url"] + "/v1", api_key="wrong-" + lab["key"][6:], http_client=httpx.Client(verify=lab_doors.context(door)),
                        max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_the_ollama_client_through_the_ollama_door(lab):
    import ollama
    door = lab["doors"]["llm-lab-2"]
    client = ollama.Client(host=door["url"], verify=lab_doors.context(door), headers={"Authorization": "Bearer " + lab["key"]}, timeout=120)
    assert "tiny:latest" in [m.model for m in client.list().models]
    generated = client.generate(model="tiny", prompt="Hello", options={"num_predict": 8})
    assert generated.done and generated.eval_count >= 1
    chat = client.chat(model="tiny", messages=[{"role": "user", "content": "Hello"}], options={"num_predict": 8})
    assert chat.done and chat.message.role == "assistant"
    streamed = list(client.chat(model="tiny", messages=[{"role": "user", "content": "Hello"}], stream=True, options={"num_predict": 8}))
    assert streamed[-1].done and len(streamed) >= 2
    # the model-changing API is closed at the door, even with the key
    with pytest.raises(ollama.ResponseError) as refused:
        client.delete("tiny")
    assert refused.value.status_code == 403
    assert "tiny:latest" in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as no_key:
        ollama.Client(host=door["url"], verify=lab_doors.context(door)).list()
    assert no_key.value.status_code == 401


@pytest.mark.parametrize("host, path, body", [
    ("llm-lab-1", "/v1/models", None),
    ("llm-lab-1", "/v1/chat/completions", {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}),
    ("llm-lab-2", "/api/tags", None), ("llm-lab-2", "/api/generate", {"model": "tiny", "prompt": "Hi", "stream": False})])
def test_no_key_and_a_wrong_key_get_401_the_right_key_200(lab, host, path, body):
    door = lab["doors"][host]
    assert call(door, path, None, body)[0] == 401
    assert call(door, path, lab["key"][::-1], body)[0] == 401
    assert call(door, path, lab["key"], body)[0] == 200


@pytest.mark.parametrize("host, path", [("llm-lab-1", "/metrics"), ("llm-lab-1", "/invocations"), ("llm-lab-1", "/tokenize"),
                                        ("llm-lab-1", "/health"), ("llm-lab-2", "/api/delete"), ("llm-lab-2", "/api/create"),
                                        ("llm-lab-2", "/api/pull")])
def test_routes_the_door_never_opens(lab, host, path):
    assert call(lab["doors"][host], path, lab["key"], {})[0] == 403


CONNECT = ("import socket, sys\n"
           "try:\n"
           "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close(); print('open')\n"
           "except OSError as exc:\n"
           "    print(type(exc).__name__)\n")


def connect_from(host, address, port):
    out = docker("exec", host, "python3", "-c", CONNECT, address, str(port))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_engines_ports_answer_on_their_own_loopback_only(lab):
    vllm, ollama_ = lab["doors"]["llm-lab-1"]["address"], lab["doors"]["llm-lab-2"]["address"]
    seen = {
        "vllm from llm-lab-1 loopback": connect_from("llm-lab-1", "127.0.0.1", 8000),
        "ollama from llm-lab-2 loopback": connect_from("llm-lab-2", "127.0.0.1", 11434),
        "vllm from llm-lab-2": connect_from("llm-lab-2", vllm, 8000),
        "ollama from llm-lab-1": connect_from("llm-lab-1", ollama_, 11434),
        "vllm door from llm-lab-2": connect_from("llm-lab-2", vllm, 8443),
        "ollama door from llm-lab-1": connect_from("llm-lab-1", ollama_, 8444),
    }
    print("\n" + "\n".join("%-32s %s" % item for item in seen.items()))
    assert seen == {"vllm from llm-lab-1 loopback": "open", "ollama from llm-lab-2 loopback": "open",
                    "vllm from llm-lab-2": "ConnectionRefusedError", "ollama from llm-lab-1": "ConnectionRefusedError",
                    "vllm door from llm-lab-2": "open", "ollama door from llm-lab-1": "open"}
    # and from the controller
    import socket
    for address, port in ((vllm, 8000), (ollama_, 11434)):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, port), timeout=3).close()


def test_the_key_is_in_no_journal_of_the_lab_hosts(lab):
    for host in lab_doors.DOORS:
        journal = docker("exec", host, "journalctl", "--no-pager", "-o", "cat")
        assert journal.returncode == 0 and journal.stdout
        assert lab["key"] not in journal.stdout, host
        assert "key=lab " in journal.stdout, host  # the gateway logs the key's name
