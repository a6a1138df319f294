"""What users are told: bad keys, missing shares, rate limits, the daily cap, a full
drive, bad settings; and `check()` for `sitesync doctor`."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from app.errors import ConfigError, PermanentError, SiteUnavailableError, TransientError
from tests.gdrive_emulator import ServiceAccountKey
from tests.unit.providers.gdrive.conftest import put

ROOT = "/My Drive/sitesync"


def test_check_is_clean_for_a_good_site(make):
    assert make().check() == []
    assert make("/Studio Team/projects").check() == []


def test_check_lists_every_bad_root(env, make):
    env.drive.mkdir(f"{ROOT}/readonly", readonly=True)
    provider = make({"work": f"{ROOT}/readonly", "renders": "/My Drive/nope", "rel": "My Drive/x",
                     "team": "/No Such Team/x"})
    problems = provider.check()
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert "is read-only for the service account" in text
    assert "/My Drive/nope does not exist or is not shared" in text
    assert "not an absolute path" in text and "/My Drive/folder" in text
    assert "no shared drive named 'No Such Team'" in text
    assert env.key.client_email in text


def test_a_key_the_server_does_not_know(env, make, tmp_path):
    stranger = ServiceAccountKey.generate("stranger@sitesync-test.iam.gserviceaccount.com")
    key_file = stranger.write(tmp_path / "stranger.json", env.drive.token_uri)
    provider = make(credentials_url=str(key_file))
    with pytest.raises(PermanentError) as caught:
        provider.stat("{root[work]}/x.exr")
    text = str(caught.value)
    assert "refused the service account key" in text and str(key_file) in text
    assert "PRIVATE KEY" not in text
    assert provider.check() == [text]


def test_revoked_tokens_are_refreshed_transparently(env, make):
    provider = make()
    put(provider, "{root[work]}/a.exr", b"a")
    env.drive.revoke_tokens()
    put(provider, "{root[work]}/b.exr", b"b")
    assert env.drive.token_grants == 2


@pytest.mark.parametrize("content, problem", [
    (None, "does not exist"),
    ("not json", "is not valid JSON"),
    (json.dumps({"installed": {"client_id": "x"}}), "is an OAuth client file"),
    (json.dumps({"type": "service_account", "client_email": "a@b"}), "lacks private_key, token_uri"),
    (json.dumps({"type": "service_account", "client_email": "a@b", "private_key": "garbage",
                 "token_uri": "http://x/token"}), "cannot be used"),
])
def test_bad_key_files_are_config_errors(env, make, tmp_path, content, problem):
    path = tmp_path / "key.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        make(credentials_url=str(path))
    assert problem in str(caught.value)
    assert caught.value.key == "sites.gdrive.credentials_url"
    assert "garbage" not in str(caught.value)


def test_per_platform_and_environment_credentials(env, make, monkeypatch):
    monkeypatch.setenv("SITESYNC_TEST_KEYS", str(env.key_file.parent))
    for platform in ("linux", "windows", "darwin"):
        value = {platform: "{SITESYNC_TEST_KEYS}/service-account.json"}
        monkeypatch.setattr("providers.gdrive.options.current_platform", lambda p=platform: p)
        assert make(credentials_url=value).options.credentials_path == str(env.key_file)
    monkeypatch.setattr("providers.gdrive.options.current_platform", lambda: "linux")
    with pytest.raises(ConfigError, match="no service account key file is set for linux"):
        make(credentials_url={"windows": "C:/key.json"})


@pytest.mark.parametrize("key, value, problem", [
    ("chunk_size", 1000 * 1000, "not a multiple of 256 KiB"),
    ("chunk_size", 1024, ">= 262144"),
    ("api_url", "ftp://x", "http(s) URL"),
    ("impersonate", "nobody", "e-mail"),
    ("max_calls_per_s", 0, ">= 0.01"),
    ("max_retries", -1, ">= 0"),
])
def test_bad_options_name_key_and_fix(make, key, value, problem):
    with pytest.raises(ConfigError) as caught:
        make(**{key: value})
    assert problem in str(caught.value)
    assert caught.value.key == f"sites.gdrive.{key}" and caught.value.fix


def test_impersonation_sends_the_user_as_subject(env, make):
    provider = make(impersonate="artist@studio.example")
    put(provider, "{root[work]}/a.exr", b"a")
    assert ("artist@studio.example") in [sub for _, sub in env.drive.tokens.values()]


def test_missing_share_permission_names_the_service_account(env, make):
    env.drive.mkdir(f"{ROOT}/locked", readonly=True)
    provider = make()
    with pytest.raises(PermanentError) as caught:
        put(provider, "{root[work]}/locked/a.exr", b"a")
    text = str(caught.value)
    assert "insufficientFilePermissions" in text
    assert f"share the folder with the service account {env.key.client_email} as Editor" in text


def test_disabled_api_names_the_console_page(env, make):
    env.drive.inject(path="/drive/v3/", status=403, reason="accessNotConfigured",
                     message="Drive API has not been used")
    with pytest.raises(PermanentError, match=r"enable it at https://console\.cloud\.google\.com/apis/library"):
        make().stat("{root[work]}/x.exr")


def test_rate_limits_slow_the_whole_account_and_honour_retry_after(env, make):
    env.drive.inject(path="/drive/v3/files", status=403, reason="userRateLimitExceeded",
                     message="User Rate Limit Exceeded", retry_after=0.4)
    env.drive.inject(path="/drive/v3/files", status=429)
    provider = make()
    started = time.monotonic()
    assert provider.stat("{root[work]}/x.exr") is None
    assert time.monotonic() - started >= 0.4, "Retry-After is a floor"
    assert provider.account.pacer.slowdowns == 2


def test_a_rate_limit_that_does_not_end_holds_the_site(env, make):
    env.drive.inject(path="/drive/v3/files", status=429, times=100)
    provider = make(max_retries=2)
    with pytest.raises(SiteUnavailableError) as caught:
        provider.stat("{root[work]}/x.exr")
    assert caught.value.site == "gdrive" and caught.value.retry_after_s >= 1
    assert "keeps rate-limiting" in str(caught.value)


def test_server_errors_are_retried_then_transient(env, make):
    env.drive.inject(path="/drive/v3/files", status=503, times=100)
    with pytest.raises(TransientError, match="server error") as caught:
        make(max_retries=2).stat("{root[work]}/x.exr")
    assert not isinstance(caught.value, SiteUnavailableError)


@pytest.mark.parametrize("size", [100, 700 * 1024], ids=["multipart", "resumable"])
def test_the_daily_upload_cap_holds_the_site(env, make, size):
    env.drive.upload_cap_bytes = 0  # Drive's answer: 403 userRateLimitExceeded "User rate limit exceeded."
    provider = make(upload_limit_wait_s=1800)
    with pytest.raises(SiteUnavailableError) as caught:
        put(provider, "{root[work]}/a.exr", os.urandom(size))
    error = caught.value
    assert error.site == "gdrive" and error.retry_after_s == 1800
    assert "daily upload limit" in str(error) and "no tries are counted" in str(error)
    assert env.drive.count("multipart") + env.drive.count("upload-init") == 1, "not retried"


def test_upload_limit_exceeded_reason_is_the_cap_too(env, make):
    env.drive.inject(method="POST", path="upload", status=403, reason="uploadLimitExceeded",
                     message="The user has exceeded their Drive upload limit")
    with pytest.raises(SiteUnavailableError, match="daily upload limit"):
        put(make(), "{root[work]}/a.exr", b"a")


def test_a_full_drive_holds_the_site(env, make):
    env.drive.inject(method="POST", path="upload", status=403, reason="storageQuotaExceeded",
                     message="The user's Drive storage quota has been exceeded.")
    with pytest.raises(SiteUnavailableError, match="full") as caught:
        put(make(), "{root[work]}/a.exr", b"a")
    assert "free space" in str(caught.value)


def test_a_service_account_without_storage_is_told_to_use_a_shared_drive(env, make):
    env.drive.inject(method="POST", path="upload", status=403, reason="storageQuotaExceeded",
                     message="Service Accounts do not have storage quota. Leverage shared drives.")
    with pytest.raises(SiteUnavailableError, match="put the root in a shared drive"):
        put(make(), "{root[work]}/a.exr", b"a")


def test_a_per_minute_rate_limit_on_an_upload_is_not_the_cap(env, make):
    env.drive.inject(method="POST", path="upload", status=403, reason="userRateLimitExceeded",
                     message="User Rate Limit Exceeded. Rate of requests for user exceed configured quota.")
    put(make(), "{root[work]}/a.exr", b"a")
    assert env.drive.read(f"{ROOT}/a.exr") == b"a"


def test_unreachable_server_is_transient_and_names_the_setting(env, make):
    provider = make(api_url="http://127.0.0.1:9/", max_retries=1)
    with pytest.raises(TransientError, match="network error talking to Google Drive"):
        provider.stat("{root[work]}/x.exr")


def test_missing_file_on_read_is_permanent_and_names_the_account(env, make):
    with pytest.raises(PermanentError) as caught:
        make().open_reader("{root[work]}/a/b.exr")
    assert "/My Drive/sitesync/a/b.exr" in str(caught.value)
    assert env.key.client_email in str(caught.value)


def test_google_docs_files_are_not_downloadable(env, make):
    item_id = env.drive.put_file(f"{ROOT}/doc.gdoc", b"")
    env.drive.items[item_id].mime_type = "application/vnd.google-apps.document"
    env.drive.items[item_id].content = None
    provider = make()
    reader = provider.open_reader("{root[work]}/doc.gdoc")
    reader._size = 10  # a Docs file has no size; ask for bytes anyway
    with pytest.raises(PermanentError, match="Google Docs file"):
        reader.read(10)


def test_messages_never_carry_the_session_uri_or_token(env, make):
    provider = make()
    writer = provider.open_writer("{root[work]}/a.exr", 4 * 256 * 1024)
    writer.write(os.urandom(2 * 256 * 1024))
    env.drive.expire_sessions(410)
    with pytest.raises(TransientError) as caught:
        writer.write(os.urandom(2 * 256 * 1024))
    assert "upload_id" not in str(caught.value) and "ya29" not in str(caught.value)
    writer.abort(keep_partial=False)


def test_one_pacer_holds_every_worker_of_every_site_of_the_account(env, make):
    """A Retry-After seen by one worker holds back the other workers, those of another
    site with the same key included: after the 429, nothing reaches Drive before it ends."""
    first, second = make(site="gdrive"), make(site="gdrive-renders")
    pacer = first.account.pacer
    assert second.account.pacer is pacer
    first.stat("{root[work]}/warm.exr")  # token and roots: later calls are plain lookups
    env.drive.reset_log()
    fault = env.drive.inject(path="/drive/v3/files", status=429, retry_after=1)
    results: list = []
    worker = threading.Thread(target=lambda: results.append(first.stat("{root[work]}/a.exr")))
    worker.start()
    deadline = time.monotonic() + 10
    while not pacer.blocked_for and time.monotonic() < deadline:
        time.sleep(0.005)
    assert fault.hits == 1 and pacer.blocked_for > 0.5
    others = [threading.Thread(target=lambda i=i: results.append(
        (first if i % 2 else second).stat(f"{{root[work]}}/b{i}.exr"))) for i in range(4)]
    for thread in [*others]:
        thread.start()
    for thread in [worker, *others]:
        thread.join(20)
    assert results == [None] * 5
    limited = next(e for e in env.drive.log if e.status == 429)
    later = [e for e in env.drive.log if e is not limited]
    assert len(later) >= 5, "every worker's lookup went out, after the hold"
    assert min(e.at for e in later) >= limited.at + 1.0 - 0.02, "Retry-After is a floor for everyone"
