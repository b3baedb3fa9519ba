"""Authentication: none on loopback by default, a key required off loopback, Bearer / Basic
checked on every path but the health probes, and the key never printed or logged."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import httpx
import pytest
from serve_support import KEY, SUPPORT, free_port, raw_request, require

require("fastapi")

RECORD = {"completion": "<think>.</think><answer>opioids</answer>", "reference": {"substances": ["opioids"]}}


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``medreward serve`` that must refuse to start (it is killed if it does start)."""
    import os

    environment = {k: v for k, v in os.environ.items() if k != "MEDREWARD_API_KEY"}
    environment.update({"PYTHONPATH": SUPPORT, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})})
    return subprocess.run([sys.executable, "-m", "medreward.cli.app", "serve", "--port", str(free_port()), *args],
                          capture_output=True, text=True, env=environment, timeout=60)  # fmt: skip


def test_without_a_key_loopback_is_open(server_factory):
    server = server_factory("--spec", "toxicology")
    response = httpx.post(server.url + "/v1/score", json=[RECORD])
    assert response.status_code == 200 and response.json()["records"][0]["reward"] == 1.0
    assert httpx.get(server.url + "/metrics").status_code == 200
    assert "workers: 1 × 2 scoring threads" in server.output()  # the default for a rule-based spec


def test_any_other_address_without_a_key_refuses_to_start():
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
        run = _serve("--spec", "toxicology", "--host", host)
        assert run.returncode == 2, run.stderr
        assert f"refusing to listen on {host} without an API key" in run.stderr
        assert "MEDREWARD_API_KEY" in run.stderr and "Traceback" not in run.stderr


def test_bad_keys_refuse_to_start(tmp_path):
    run = _serve("--spec", "toxicology", env={"MEDREWARD_API_KEY": "short"})
    assert run.returncode == 2 and "too short" in run.stderr and "short" not in run.stderr.replace("too short", "")
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    run = _serve("--spec", "toxicology", "--api-key-file", str(empty))
    assert run.returncode == 2 and "API key file is empty" in run.stderr
    run = _serve("--spec", "toxicology", "--api-key-file", str(tmp_path / "missing.key"))
    assert run.returncode == 2 and "cannot read the API key file" in run.stderr and str(tmp_path) not in run.stderr


@pytest.fixture(scope="module")
def keyed(server_factory, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("key") / "api.key"
    key_file.write_text(KEY + "\n")
    # a key file on all addresses; the tests connect over loopback
    return server_factory("--spec", "toxicology", "--host", "0.0.0.0", "--api-key-file", str(key_file))


@pytest.mark.parametrize("header", [None, "Bearer wrong-key-0123456789", f"Bearer {KEY}x", f"Token {KEY}", "Bearer",
                                    "Basic " + base64.b64encode(b"medreward:nope").decode(), "Basic !!notbase64"])
def test_a_missing_or_wrong_key_is_401(keyed, header):
    headers = {"Authorization": header} if header else {}
    for method, path in (("POST", "/v1/score"), ("POST", "/get_reward"), ("GET", "/metrics"), ("POST", "/v1/score/nope"),
                         ("GET", "/docs")):
        response = httpx.request(method, keyed.url + path, json=[RECORD], headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["code"] == "unauthorized" and response.headers["www-authenticate"] == "Bearer"


def test_the_right_key_is_accepted_as_bearer_or_basic_password(keyed):
    for header in (f"Bearer {KEY}", "Basic " + base64.b64encode(f"anyone:{KEY}".encode()).decode()):
        response = httpx.post(keyed.url + "/v1/score", json=[RECORD], headers={"Authorization": header})
        assert response.status_code == 200 and response.json()["records"][0]["reward"] == 1.0
    assert httpx.get(keyed.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_health_probes_need_no_key_and_the_key_is_never_logged(keyed):
    assert httpx.get(keyed.url + "/healthz").status_code == 200
    assert httpx.get(keyed.url + "/readyz").status_code == 200
    log = keyed.output()
    assert "auth: on (key from --api-key-file)" in log
    assert KEY not in log


def test_a_client_without_the_key_is_refused_before_its_body_is_read(keyed):
    head = b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n"
    status, body, _ = raw_request(keyed.port, head + b"[" * 100)  # 19.99 MB never sent
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
