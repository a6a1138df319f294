"""The Drive emulator behaves like Drive where provider bugs would hide, driven by the
real googleapiclient client (through a provider's per-thread client)."""

from __future__ import annotations

import base64
import io
import json
import time

import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaIoBaseUpload

from tests.gdrive_emulator import FOLDER, FakeDrive, ServiceAccountKey
from tests.gdrive_emulator.auth import GOOGLE_TOKEN_AUDIENCE, JwtError, verify_assertion

ROOT = "/My Drive/sitesync"


@pytest.fixture
def files(make):
    return make().files()


def _reason(exc: HttpError) -> tuple[int, str, str]:
    error = json.loads(exc.content)["error"]["errors"][0]
    return exc.resp.status, error["reason"], error.get("location", "")


def test_default_fields_leave_out_size_and_md5(env, files):
    env.drive.put_file(f"{ROOT}/a.bin", b"abc")
    listed = files.list(q="name = 'a.bin'").execute()
    assert set(listed["files"][0]) == {"kind", "id", "name", "mimeType"}
    got = files.get(fileId=listed["files"][0]["id"]).execute()
    assert "md5Checksum" not in got and "size" not in got
    full = files.get(fileId=got["id"], fields="size,md5Checksum").execute()
    assert full == {"size": "3", "md5Checksum": "900150983cd24fb0d6963f7d28e17f72"}


@pytest.mark.parametrize("q", ["name = 'unterminated", "name == 'x'", "title = 'x'", "'x' in owners",
                               "name = 'a' and", "name = 'a\\x'"])
def test_invalid_queries_are_400_invalid_q(files, q):
    with pytest.raises(HttpError) as caught:
        files.list(q=q).execute()
    assert _reason(caught.value) == (400, "invalid", "q")


def test_listing_includes_trashed_items_unless_asked(env, files):
    item = env.drive.put_file(f"{ROOT}/t.bin", b"x")
    files.update(fileId=item, body={"trashed": True}).execute()
    assert len(files.list(q="name = 't.bin'").execute()["files"]) == 1
    assert files.list(q="name = 't.bin' and trashed = false").execute()["files"] == []


def test_shared_drive_items_need_supports_all_drives_and_corpora(env, files):
    item = env.drive.put_file("/Studio Team/projects/s.bin", b"s")
    with pytest.raises(HttpError) as caught:
        files.get(fileId=item).execute()
    assert _reason(caught.value)[:2] == (404, "notFound")
    assert files.get(fileId=item, supportsAllDrives=True).execute()["id"] == item
    drive_id = env.drive.items[item].drive_id
    assert files.list(q="name = 's.bin'").execute()["files"] == []
    listed = files.list(q="name = 's.bin'", corpora="drive", driveId=drive_id, supportsAllDrives=True,
                        includeItemsFromAllDrives=True).execute()
    assert [f["id"] for f in listed["files"]] == [item]


def test_pagination_with_list_next(env, files):
    for i in range(25):
        env.drive.put_file(f"{ROOT}/page/{i:02d}.bin", b"")
    request = files.list(q="name contains '.bin'", pageSize=10, orderBy="name")
    names = []
    while request is not None:
        page = request.execute()
        names += [f["name"] for f in page["files"]]
        request = files.list_next(request, page)
    assert names == [f"{i:02d}.bin" for i in range(25)]


@pytest.mark.parametrize("payload", [b"", b"\r", b"\n", b"x\r\n", b"\r\n--==============\r\n--",
                                     bytes(range(256))])
def test_multipart_bodies_round_trip_byte_for_byte(env, files, payload):
    media = MediaIoBaseUpload(io.BytesIO(payload), mimetype="application/octet-stream", resumable=False)
    made = files.create(body={"name": "m.bin", "parents": [env.drive.find(ROOT)[0].id]},
                        media_body=media, fields="id,size").execute()
    assert env.drive.items[made["id"]].content == payload and made["size"] == str(len(payload))


def test_parents_in_the_body_of_an_update_are_refused(env, files):
    item = env.drive.put_file(f"{ROOT}/p.bin", b"")
    with pytest.raises(HttpError) as caught:
        files.update(fileId=item, body={"parents": ["root"]}).execute()
    assert _reason(caught.value)[:2] == (403, "fieldNotWritable")


def test_empty_file_download_is_416_and_ranges_are_206(env, make):
    provider = make()
    empty = env.drive.put_file(f"{ROOT}/e.bin", b"")
    full = env.drive.put_file(f"{ROOT}/f.bin", b"0123456789")
    http = provider.client()._http
    request = provider.files().get_media(fileId=empty)
    resp, _ = http.request(request.uri, "GET", headers={"range": "bytes=0-99"})
    assert resp.status == 416 and resp["content-range"] == "bytes */0"
    request = provider.files().get_media(fileId=full)
    resp, body = http.request(request.uri, "GET", headers={"range": "bytes=3-5"})
    assert (resp.status, resp["content-range"], body) == (206, "bytes 3-5/10", b"345")


def test_strict_chunk_mode_refuses_chunks_off_the_256k_grid(tmp_path, monkeypatch):
    from providers.registry import create_provider
    from tests.gdrive_emulator.fixtures import drive_env

    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path))
    with drive_env(tmp_path, chunk_mode="strict") as env:
        provider = create_provider("gdrive", "g", env.site())
        folder = env.drive.find(ROOT)[0].id
        media = MediaIoBaseUpload(io.BytesIO(b"x" * 700_000), "application/octet-stream",
                                  chunksize=300 * 1024, resumable=True)
        request = provider.files().create(body={"name": "s.bin", "parents": [folder]}, media_body=media)
        with pytest.raises(HttpError) as caught:
            request.next_chunk()
        assert caught.value.resp.status == 400


def test_folders_are_folders(env, files):
    made = files.create(body={"name": "d", "mimeType": FOLDER}, fields="id,mimeType,parents").execute()
    assert made["mimeType"] == FOLDER and made["parents"] == [env.drive.root_id]


def _forge(claims: dict, key: ServiceAccountKey) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    private = serialization.load_pem_private_key(key.private_pem.encode(), None)
    signature = private.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    return f"{head}.{body}.{b64(signature)}"


def test_the_token_endpoint_checks_signature_audience_expiry_and_scope():
    key = ServiceAccountKey.generate()
    other = ServiceAccountKey.generate(key.client_email)
    now = time.time()
    good = {"iss": key.client_email, "aud": GOOGLE_TOKEN_AUDIENCE, "iat": now, "exp": now + 3600,
            "scope": "https://www.googleapis.com/auth/drive"}
    keys = {key.client_email: key.public_pem}
    assert verify_assertion(_forge(good, key), keys)["iss"] == key.client_email
    for claims, signer, problem in [
        (good, other, "Signature"),
        ({**good, "aud": "http://127.0.0.1/token"}, key, "audience"),
        ({**good, "exp": now - 1}, key, "timeframe"),
        ({**good, "scope": "email"}, key, "scope"),
        ({**good, "iss": "x@y"}, key, "unknown issuer"),
    ]:
        with pytest.raises(JwtError, match=problem):
            verify_assertion(_forge(claims, signer), keys)


def test_calls_without_a_token_are_401(env):
    import httplib2

    resp, content = httplib2.Http().request(f"{env.drive.url}drive/v3/files")
    assert resp.status == 401 and json.loads(content)["error"]["errors"][0]["reason"] == "authError"


def test_an_open_emulator_without_auth():
    with FakeDrive(require_auth=False) as drive:
        import httplib2

        resp, _ = httplib2.Http().request(f"{drive.url}drive/v3/files")
        assert resp.status == 200
