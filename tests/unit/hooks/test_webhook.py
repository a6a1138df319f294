"""post_json against real HTTP servers on loopback: key header, retries, redirect policy."""

from __future__ import annotations

import pytest

from app.hooks.webhook import WebhookError, post_json
from tests.unit.hooks.http_server import scripted_server


def _post(url, **kw):
    kw.setdefault("sleep", lambda s: None)
    return post_json(url + "/hook", {"event": "representation_ready", "id": 7}, "sitesync-x-7",
                     timeout_s=5, **kw)


def test_the_payload_and_the_idempotency_key_arrive():
    with scripted_server() as server:
        result = _post(server.url, headers={"Authorization": "Bearer s3cret"})
    assert (result.status, result.attempts) == (200, 1)
    [request] = server.received
    assert request.method == "POST" and request.path == "/hook"
    assert request.json() == {"event": "representation_ready", "id": 7}
    assert request.headers["Idempotency-Key"] == "sitesync-x-7"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer s3cret"


def test_server_errors_are_retried_with_the_same_key():
    waits = []
    with scripted_server(script=[(503, {}), (429, {"Retry-After": "7"}), (200, {})]) as server:
        result = _post(server.url, sleep=waits.append, backoff_s=0.5)
    assert (result.status, result.attempts) == (200, 3)
    assert waits == [0.5, 7.0]
    assert {r.headers["Idempotency-Key"] for r in server.received} == {"sitesync-x-7"}


def test_giving_up_says_whether_later_may_work():
    with scripted_server(script=[(500, {})]) as server, pytest.raises(WebhookError) as excinfo:
        _post(server.url, retries=2)
    assert excinfo.value.retryable and excinfo.value.status == 500
    assert len(server.received) == 3
    with scripted_server(script=[(400, {})]) as server, pytest.raises(WebhookError) as excinfo:
        _post(server.url, retries=5)
    assert not excinfo.value.retryable and len(server.received) == 1
    with pytest.raises(WebhookError) as excinfo:  # nothing listens there
        _post(f"http://127.0.0.1:{_free_port()}", retries=1)
    assert excinfo.value.retryable and "cannot be reached" in str(excinfo.value)


def test_a_redirect_to_another_host_is_refused():
    with scripted_server(host="127.0.0.2") as elsewhere:
        target = elsewhere.url + "/steal"
        with scripted_server(script=[(307, {"Location": target})]) as server, \
                pytest.raises(WebhookError) as excinfo:
            _post(server.url, headers={"Authorization": "Bearer s3cret"})
    assert not excinfo.value.retryable
    assert "another server" in str(excinfo.value) and "s3cret" not in str(excinfo.value)
    assert elsewhere.received == []  # nothing, not even the headers, reached it
    assert len(server.received) == 1


def test_a_redirect_to_another_port_of_the_same_host_is_refused():
    """Another port is another server (another service, maybe nobody's): same rule."""
    with scripted_server(host="127.0.0.1") as elsewhere, \
            scripted_server(host="127.0.0.1", script=[(308, {"Location": elsewhere.url + "/x"})]) \
            as server, pytest.raises(WebhookError) as excinfo:
        _post(server.url, headers={"Authorization": "Bearer s3cret"})
    assert server.port != elsewhere.port
    assert not excinfo.value.retryable and "another server" in str(excinfo.value)
    assert f":{elsewhere.port}" in str(excinfo.value) and "s3cret" not in str(excinfo.value)
    assert elsewhere.received == [] and len(server.received) == 1


def test_a_redirect_within_the_server_is_followed_and_keeps_the_post():
    with scripted_server(script=[(308, {"Location": "{url}/moved"}), (200, {})]) as server:
        result = _post(server.url)
    assert result.status == 200
    first, second = server.received
    assert (second.method, second.path) == ("POST", "/moved")
    assert second.body == first.body and second.headers["Idempotency-Key"] == "sitesync-x-7"


def test_a_redirect_that_would_drop_the_body_is_refused():
    with scripted_server(script=[(302, {"Location": "{url}/elsewhere"})]) as server, \
            pytest.raises(WebhookError) as excinfo:
        _post(server.url)
    assert "final address" in str(excinfo.value) and len(server.received) == 1


def test_only_http_urls_are_accepted():
    for url in ("ftp://host/x", "file:///etc/passwd", "", "http://"):
        with pytest.raises(ValueError):
            post_json(url, {}, "k")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
