"""Gateway logs read from a bucket: a report day's objects landed from real emulators on 127.0.0.1
(moto's S3, gcp-storage-emulator's GCS) into the local landing folder that ingest reads."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from emulators import S3_TEST_ENV, azurite, azurite_binary, gcs_emulator, moto_server
from helpers import payload
from usage_jobs.defs.gateway import layout
from usage_jobs.defs.gateway.landing import LandingError, land_bucket_day, landing_root
from usage_jobs.defs.gateway.layout import undated_window

DAY = dt.date(2026, 11, 10)
BUCKET = "gateway-logs"
URL = f"s3://{BUCKET}/litellm"
SECRET = "do-not-print-this-secret"
PAYLOADS = [json.dumps(payload(f"chatcmpl-{i:04d}", start=f"2026-11-10 {i:02d}:20:46.847371"), indent=1).encode() for i in range(12)]

# key (below the URL's prefix) → whether landing DAY brings it
OBJECTS = {
    "Team One/alice-laptop/2026-11-10/time-09-20-46-847371_chatcmpl-fx0001.json": True,  # team/key alias folders
    "Team One/alice-laptop/2026-11-10/time-23-59-59-900000_chatcmpl-fx0011.json": True,
    "Team One/nightly-batch/2026-11-11/time-00-00-04-100000_chatcmpl-fx0012.json": True,  # next day's folder
    "Team One/nightly-batch/2026-11-12/time-00-00-01-000000_late.json": False,  # two days on: not this day's
    "2026-11-10/13/time-13-45-10-000000_e585f08b.json": True,  # S3_PARTITION_GRANULARITY=hour
    "2026-11-10/batch_10-00-00_5b1c0a9e.jsonl": True,  # s3_batch_file_upload
    "2026-11-10/chatcmpl-5a9f562b-458b-4b8b": True,  # GCS-style object without extension
    "2026-11-09/time-22-00-00-000000_prev.json": False,  # the day before
    "audit_logs/2026-11-10/audit.json": False,  # not request data
    "3a0c5e2d-azure-ad-root.json": False,  # undated, last modified now (weeks after DAY)
}


@pytest.fixture(scope="module")
def aws_env():
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                     "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            env.delenv(name, raising=False)
        for name, value in S3_TEST_ENV.items():
            env.setenv(name, value)
        env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        yield env


@pytest.fixture(scope="module")
def s3(aws_env):
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def client(s3):
    import boto3

    return boto3.client("s3", endpoint_url=s3.url)


@pytest.fixture(scope="module")
def bucket(client) -> dict[str, bytes]:
    """The bucket's objects, key → bytes (the prefix `litellm/`, plus another prefix that is not read)."""
    client.create_bucket(Bucket=BUCKET)
    bodies = {}
    for index, key in enumerate(OBJECTS):
        body = PAYLOADS[index % len(PAYLOADS)]
        if key.endswith(".jsonl"):
            body = b"".join(json.dumps(json.loads(p)).encode() + b"\n" for p in PAYLOADS[:3])
        client.put_object(Bucket=BUCKET, Key=f"litellm/{key}", Body=body)
        bodies[key] = body
    client.put_object(Bucket=BUCKET, Key="other/2026-11-10/time-00-00-00-000000_other.json", Body=b"{}")
    client.put_object(Bucket=BUCKET, Key="litellm/Team One/", Body=b"")  # a console's folder marker
    return bodies


def landed_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and layout.SKIPPED_FOLDERS.isdisjoint(p.parts) and ".landed" not in p.relative_to(root).parts}


def test_lands_exactly_the_days_objects_byte_identical(s3, client, bucket, tmp_path):
    lines = []
    stats = land_bucket_day(URL, DAY, "UTC", tmp_path, endpoint_url=s3.url, concurrency=4, progress=lines.append)

    root = landing_root(tmp_path, URL)
    expected = {key: body for key, body in bucket.items() if OBJECTS[key]}
    assert landed_files(root) == expected
    assert (stats.listed, stats.fetched, stats.already_landed, stats.retries) == (len(expected), len(expected), 0, 0)
    assert stats.bytes_fetched == sum(map(len, expected.values())) and stats.source == URL and stats.day == "2026-11-10"
    assert lines and "done" in lines[-1]
    # each file carries its object's last-modified time, for the reader's window on undated files
    for key in expected:
        modified = client.head_object(Bucket=BUCKET, Key=f"litellm/{key}")["LastModified"]
        assert abs((root / key).stat().st_mtime - modified.timestamp()) < 1
    # the local-folder reader finds every one of them in place
    found = layout.files_for_day(root, DAY, "UTC")
    seen = [f.path for f in found.files] + [getattr(f, "path", f) for f in getattr(found, "unrecognised", getattr(found, "ignored", []))]
    assert sorted(p.relative_to(root).as_posix() for p in seen) == sorted(expected)
    # no temp file remains
    assert not list(root.rglob("*.part"))


def test_second_run_fetches_nothing_and_refetch_fetches_all(s3, bucket, tmp_path):
    expected = [key for key in bucket if OBJECTS[key]]
    land_bucket_day(URL, DAY, "UTC", tmp_path, endpoint_url=s3.url)
    again = land_bucket_day(URL, DAY, "UTC", tmp_path, endpoint_url=s3.url)
    assert (again.listed, again.fetched, again.already_landed, again.bytes_fetched) == (len(expected), 0, len(expected), 0)

    # the day's folders ended more than WRITE_LAG ago: marked complete, not listed again
    root = landing_root(tmp_path, URL)
    markers = sorted(p.relative_to(root / ".landed" / "complete").as_posix() for p in (root / ".landed" / "complete").rglob("*.json"))
    assert markers == ["2026-11-10.json", "Team One/alice-laptop/2026-11-10.json", "Team One/nightly-batch/2026-11-11.json"]
    lost = root / expected[0]
    lost.unlink()
    assert land_bucket_day(URL, DAY, "UTC", tmp_path, endpoint_url=s3.url).fetched == 0
    assert not lost.exists()

    refetched = land_bucket_day(URL, DAY, "UTC", tmp_path, endpoint_url=s3.url, refetch=True)
    assert (refetched.fetched, refetched.already_landed) == (len(expected), 0)
    assert lost.read_bytes() == bucket[expected[0]]


def test_undated_objects_land_on_the_day_they_were_written(s3, client, bucket, tmp_path):
    """Azure AD writes `<id>.json` at the root: it belongs to the days whose window holds its last-modified time."""
    today = dt.datetime.now(dt.UTC).date()
    client.put_object(Bucket=BUCKET, Key=f"litellm/{today}/time-00-00-01-000000_today.json", Body=b'{"id": "today"}')
    try:
        stats = land_bucket_day(URL, today, "UTC", tmp_path, endpoint_url=s3.url)
        root = landing_root(tmp_path, URL)
        assert set(landed_files(root)) == {"3a0c5e2d-azure-ad-root.json", f"{today}/time-00-00-01-000000_today.json"}
        assert stats.fetched == 2
        assert not (root / ".landed" / "complete").exists()  # today's folder may still grow: never marked complete
        assert land_bucket_day(URL, today, "UTC", tmp_path, endpoint_url=s3.url).already_landed == 2  # listed again, same sizes
        # a day long before: the root object is outside its window
        assert land_bucket_day(URL, today - dt.timedelta(days=5), "UTC", tmp_path / "old", endpoint_url=s3.url).listed == 0
    finally:
        client.delete_object(Bucket=BUCKET, Key=f"litellm/{today}/time-00-00-01-000000_today.json")


def test_undated_window_edges(tmp_path):
    """The window's edges, exactly: a store whose last-modified times can be set (the local
    filesystem through fsspec, since the emulator stamps objects with the upload time)."""
    import fsspec

    timezone = "Europe/Paris"
    low, high = undated_window(DAY, timezone)
    assert low == dt.datetime(2026, 11, 9, 22, tzinfo=dt.UTC) and high == dt.datetime(2026, 11, 12, 0, tzinfo=dt.UTC)
    store = tmp_path / "store" / "gw"
    times = {"at-start.json": low, "before.json": low - dt.timedelta(seconds=1),
             "last-second.json": high - dt.timedelta(seconds=1), "at-end.json": high}
    for name, moment in times.items():
        path = store / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        os.utime(path, (moment.timestamp(), moment.timestamp()))
    url = f"file://{store}"
    stats = land_bucket_day(url, DAY, timezone, tmp_path / "landing", filesystem=fsspec.filesystem("file"))
    root = landing_root(tmp_path / "landing", url)
    assert set(landed_files(root)) == {"at-start.json", "last-second.json"}
    assert stats.fetched == 2
    assert (root / "at-start.json").stat().st_mtime == low.timestamp()


def test_missing_bucket_wrong_endpoint_and_no_credentials_are_clear(s3, bucket, tmp_path, monkeypatch):
    with pytest.raises(LandingError) as missing:
        land_bucket_day("s3://no-such-bucket/litellm", DAY, "UTC", tmp_path, endpoint_url=s3.url)
    assert "s3://no-such-bucket/litellm" in str(missing.value) and "does not exist" in str(missing.value)

    with pytest.raises(LandingError) as unreachable:
        land_bucket_day(URL, DAY, "UTC", tmp_path, endpoint_url="http://127.0.0.1:9")
    assert "cannot reach endpoint http://127.0.0.1:9" in str(unreachable.value) and URL in str(unreachable.value)

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    with pytest.raises(LandingError) as anonymous:
        land_bucket_day(URL, DAY, "UTC", tmp_path, endpoint_url=s3.url)
    assert "no usable credentials" in str(anonymous.value) and "AWS_ACCESS_KEY_ID" in str(anonymous.value)

    for error in (missing, unreachable, anonymous):
        assert SECRET not in str(error.value) and "Traceback" not in str(error.value)
        assert error.value.__cause__ is None and error.value.__suppress_context__
    assert not (landing_root(tmp_path, URL).exists() and landed_files(landing_root(tmp_path, URL)))


def flaky_s3(endpoint: str, fail_first: int = 0, always_failing: str | None = None):
    """The real S3 filesystem, with a fault injected into its object reads."""
    from s3fs import S3FileSystem

    class FlakyS3(S3FileSystem):
        calls = 0

        async def _get_file(self, rpath, lpath, **kwargs):
            FlakyS3.calls += 1
            if FlakyS3.calls <= fail_first or (always_failing and rpath.endswith(always_failing)):
                with open(lpath, "wb") as half:  # a partial write before the connection drops
                    half.write(b'{"id": ')
                raise ConnectionResetError(104, "Connection reset by peer")
            return await super()._get_file(rpath, lpath, **kwargs)

    return FlakyS3(endpoint_url=endpoint, skip_instance_cache=True)


def test_transient_read_failures_are_retried(s3, bucket, tmp_path):
    expected = {key: body for key, body in bucket.items() if OBJECTS[key]}
    stats = land_bucket_day(URL, DAY, "UTC", tmp_path, concurrency=2, filesystem=flaky_s3(s3.url, fail_first=3))
    assert (stats.fetched, stats.retries) == (len(expected), 3)
    assert landed_files(landing_root(tmp_path, URL)) == expected


def test_an_object_that_keeps_failing_fails_the_day_and_is_named(s3, bucket, tmp_path):
    broken = "batch_10-00-00_5b1c0a9e.jsonl"
    with pytest.raises(LandingError) as failed:
        land_bucket_day(URL, DAY, "UTC", tmp_path, max_retries=2, filesystem=flaky_s3(s3.url, always_failing=broken))
    message = str(failed.value)
    assert message.startswith("1 object(s) of s3://gateway-logs/litellm could not be fetched") and "retried 2 times" in message
    assert f"s3://{BUCKET}/litellm/2026-11-10/{broken}" in message
    root = landing_root(tmp_path, URL)
    landed = landed_files(root)
    assert f"2026-11-10/{broken}" not in landed and len(landed) == sum(OBJECTS.values()) - 1  # no half file under a real name
    assert not (root / ".landed" / "complete" / "2026-11-10.json").exists()  # its folder is not complete
    assert (root / ".landed" / "complete" / "Team One" / "alice-laptop" / "2026-11-10.json").exists()


def test_a_gcs_day_lands_through_gs_urls(tmp_path, monkeypatch):
    """The GCS bucket logger's layout, from gcp-storage-emulator through gcsfs."""
    gcs_objects = {
        "2026-11-10/batch-1794312000000-9f8e7d6c.ndjson": True,
        "2026-11-10/chatcmpl-fx0004": True,  # batching off: the response id, no extension
        "2026-11-10/failure-0a1b2c3d": True,
        "2026-11-11/batch-1794355200123-01234567.ndjson": True,
        "2026-11-12/batch-1794441600000-89abcdef.ndjson": False,
        "audit_logs/2026-11-10/x.json": False,
    }
    with gcs_emulator() as gcs:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
        from gcsfs.core import GCSFileSystem

        fs = GCSFileSystem(token="anon", skip_instance_cache=True)
        fs.mkdir("gcs-logs")
        bodies = {}
        for index, key in enumerate(gcs_objects):
            bodies[key] = PAYLOADS[index % len(PAYLOADS)]
            fs.pipe(f"gcs-logs/{key}", bodies[key])

        stats = land_bucket_day("gs://gcs-logs", DAY, "UTC", tmp_path)
        expected = {key: body for key, body in bodies.items() if gcs_objects[key]}
        assert landed_files(landing_root(tmp_path, "gs://gcs-logs")) == expected
        assert (stats.listed, stats.fetched) == (4, 4)
        assert land_bucket_day("gs://gcs-logs", DAY, "UTC", tmp_path).already_landed == 4

        with pytest.raises(LandingError, match="the bucket 'no-such-bucket' of gs://no-such-bucket does not exist"):
            land_bucket_day("gs://no-such-bucket", DAY, "UTC", tmp_path)


@pytest.mark.skipif(azurite_binary() is None, reason="Azurite is not installed (npm install --prefix .azurite azurite@3)")
def test_an_azure_day_lands_through_az_urls(tmp_path, monkeypatch):
    """Azure's layouts, from Azurite through adlfs: account-key `YYYY-MM-DD/<id>.json`, and Azure AD's undated root objects."""
    today = dt.datetime.now(dt.UTC).date()
    with azurite() as blob:
        for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CLIENT_ID"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", blob.connection_string)
        from adlfs import AzureBlobFileSystem

        fs = AzureBlobFileSystem(skip_instance_cache=True)
        fs.mkdir("logs")
        keys = {"2026-11-10/chatcmpl-a.json": DAY, "2026-11-11/chatcmpl-b.json": DAY, "2026-11-12/chatcmpl-c.json": None,
                "audit_logs/2026-11-10/x.json": None, "chatcmpl-azure-ad.json": today}
        for index, key in enumerate(keys):
            fs.pipe(f"logs/{key}", PAYLOADS[index])
        for day in (DAY, today):
            stats = land_bucket_day("az://logs", day, "UTC", tmp_path)
            assert stats.fetched == sum(v == day for v in keys.values())
        assert landed_files(landing_root(tmp_path, "az://logs")) == {k: PAYLOADS[i] for i, (k, v) in enumerate(keys.items()) if v}

        with pytest.raises(LandingError, match="the container 'missing' of az://missing does not exist"):
            land_bucket_day("az://missing", DAY, "UTC", tmp_path)
        real_key = blob.connection_string.split("AccountKey=")[1].split(";")[0]
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", blob.connection_string.replace(real_key, "A" * 88))
        with pytest.raises(LandingError, match="access denied listing az://logs") as denied:
            land_bucket_day("az://logs", DAY, "UTC", tmp_path, refetch=True)
        assert "A" * 20 not in str(denied.value)


def test_run_reads_a_litellm_bucket_end_to_end_and_lands_it_once(client, s3, tmp_path, monkeypatch, capsys):
    """`usage-report run` on s3:// holding what LiteLLM's S3 logger wrote: every request stored, nothing fetched twice."""
    from test_litellm_fixtures import DAYS, FIXTURES, MANIFEST, expected

    from usage_jobs import cli, warehouse

    client.create_bucket(Bucket="litellm-e2e")
    for name in MANIFEST["layouts"]["s3_prefixed"]["files"]:
        client.put_object(Bucket="litellm-e2e", Key=name, Body=(FIXTURES / "s3_prefixed" / name).read_bytes())
    for name, value in {"USAGE_LOGS_DIR": "s3://litellm-e2e/litellm", "USAGE_S3_ENDPOINT_URL": s3.url, "USAGE_LANDING_DIR": str(tmp_path / "landing"),
                        "USAGE_WAREHOUSE": str(tmp_path / "w.duckdb"), "DAGSTER_HOME": str(tmp_path / "dagster")}.items():
        monkeypatch.setenv(name, value)
    run = ["run", "--start", DAYS[0].isoformat(), "--end", DAYS[-1].isoformat(), "--no-site"]
    assert cli.main(run) == 0
    first = capsys.readouterr().out
    assert cli.main(run) == 0
    second = capsys.readouterr().out

    want = expected("s3_prefixed")
    with warehouse.session(tmp_path / "w.duckdb", read_only=True) as conn:
        for day in DAYS:
            assert sorted(r[0] for r in conn.execute("SELECT request_id FROM requests WHERE day = ?", [day]).fetchall()) == want[day]["ids"]
    objects = len(MANIFEST["layouts"]["s3_prefixed"]["files"])
    fetched = [int(line.split("landed ")[1].split(" objects")[0]) for line in first.splitlines() if "landed " in line]
    assert sum(fetched) == objects  # each object once, though two days read the 2026-11-11 folder
    assert all("landed 0 objects" in line for line in second.splitlines() if line.startswith("["))


def _ingested(logs: Path, day: dt.date, database: Path) -> tuple[list, list]:
    from usage_jobs import warehouse
    from usage_jobs.defs.gateway.ingest import ingest_day
    from usage_jobs.defs.gateway.pricing import load_prices

    with warehouse.session(database) as conn:
        ingest_day(conn, logs_dir=logs, day=day, timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
        return (conn.execute("SELECT * EXCLUDE (source_line) FROM requests ORDER BY request_id, start_time").fetchall(),
                conn.execute("SELECT source_file, request_id, reason FROM rejected_records ORDER BY ALL").fetchall())


def test_a_complete_folder_lands_folded_and_ingest_reads_it_as_the_objects_litellm_wrote(client, s3, tmp_path):
    """LiteLLM's S3 logger writes an object per request: a day's folder, once landed whole, holds them as a few NDJSON shards
    (each line naming its object), which ingest reads exactly as the objects themselves."""
    from test_litellm_fixtures import DAYS, FIXTURES, MANIFEST

    names = MANIFEST["layouts"]["s3_default"]["files"]
    client.create_bucket(Bucket="litellm-fold")
    for name in names:
        client.put_object(Bucket="litellm-fold", Key=name, Body=(FIXTURES / "s3_default" / name).read_bytes())
    url = "s3://litellm-fold"
    stats = land_bucket_day(url, DAYS[0], "UTC", tmp_path / "landing", endpoint_url=s3.url)
    root = landing_root(tmp_path / "landing", url)
    assert stats.fetched == len([n for n in names if n.startswith(("2026-11-10/", "2026-11-11/"))])
    for folder in ("2026-11-10", "2026-11-11"):
        objects = [n for n in names if n.startswith(folder + "/")]
        marker = json.loads((root / ".landed" / "complete" / f"{folder}.json").read_text())
        lines = [json.loads(line) for shard in sorted((root / folder).glob("folded-*.ndjson")) for line in shard.read_text().splitlines()]
        left = sorted(p.relative_to(root).as_posix() for p in (root / folder).iterdir() if not p.name.startswith("folded-"))
        # Every object is in a shard, or left as it is when it is not plainly one object on one line (the odd ones LiteLLM wrote).
        assert sorted([line["__source_file"] for line in lines] + left) == sorted(objects)
        assert marker["folded"] == len(lines) >= len(objects) - 2 and len(marker["shards"]) == 1
    assert _ingested(root, DAYS[0], tmp_path / "folded.duckdb") == _ingested(FIXTURES / "s3_default", DAYS[0], tmp_path / "objects.duckdb")

    again = land_bucket_day(url, DAYS[0], "UTC", tmp_path / "landing", endpoint_url=s3.url)
    assert (again.fetched, again.already_landed) == (0, stats.fetched)

    # A fold cut short (the marker not yet written): its shards are dropped and the objects landed and folded again, once.
    (root / ".landed" / "complete" / "2026-11-10.json").unlink()
    land_bucket_day(url, DAYS[0], "UTC", tmp_path / "landing", endpoint_url=s3.url)
    refetched = land_bucket_day(url, DAYS[0], "UTC", tmp_path / "landing", endpoint_url=s3.url, refetch=True)
    assert refetched.fetched == stats.fetched
    assert _ingested(root, DAYS[0], tmp_path / "again.duckdb") == _ingested(FIXTURES / "s3_default", DAYS[0], tmp_path / "objects2.duckdb")
