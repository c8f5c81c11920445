"""Smoke tests for the real services started by ``scripts/services.sh up``.

Each test does a real round trip against one service and asserts on the data,
so a misbehaving service fails here before it confuses the storage tests.

Checksum behaviour of the S3 test server (moto 5.2.5 in server mode, checked
by hand and pinned by test_s3_checksum_behaviour below):

* ``put_object(..., ChecksumAlgorithm='SHA256', ChecksumSHA256=<wrong>)`` is
  ACCEPTED (HTTP 200). The body is stored intact, but moto stores and echoes
  back the *wrong* checksum as the object's ChecksumSHA256. The same holds for
  a wrong ``ChecksumCRC32``.
* A wrong ``ContentMD5`` is ACCEPTED too (even a value that is not base64);
  the ETag is the MD5 of the bytes actually received.
* So moto does NOT verify upload checksums server-side (real S3 and MinIO
  reject these with BadDigest / InvalidDigest). Code that relies on the server
  rejecting a corrupted upload cannot be tested against moto; verify on read
  instead. botocore does exactly that: by default
  (response_checksum_validation="when_supported") reading such an object's
  body raises ``botocore.exceptions.FlexibleChecksumError``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

pytestmark = pytest.mark.timeout(120)

MiB = 1 << 20


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- MariaDB ---------------------------------------------------------------------


def test_mariadb_create_insert_select(mysql_url):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy import text

    engine = sqlalchemy.create_engine(mysql_url, pool_pre_ping=True)
    table = _unique("svc_smoke").replace("-", "_")
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL,"
                    " digest VARBINARY(32) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                )
            )
            rows = [
                {"id": 1, "name": "plain", "digest": hashlib.sha256(b"a").digest()},
                {"id": 2, "name": "emoji \U0001f4be ümlaut", "digest": hashlib.sha256(b"b").digest()},
            ]
            conn.execute(text(f"INSERT INTO {table} (id, name, digest) VALUES (:id, :name, :digest)"), rows)
        with engine.connect() as conn:
            got = conn.execute(text(f"SELECT id, name, digest FROM {table} ORDER BY id")).all()
            version = conn.execute(text("SELECT VERSION()")).scalar_one()
            charset = conn.execute(text("SELECT @@character_set_database")).scalar_one()
        assert [tuple(r) for r in got] == [(r["id"], r["name"], r["digest"]) for r in rows]
        assert "MariaDB" in version
        assert charset == "utf8mb4"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_mariadb_user_can_create_per_test_databases(mysql_url):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy import text

    db = _unique("blockdrive_test").replace("-", "_")
    engine = sqlalchemy.create_engine(mysql_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4"))
            conn.execute(text(f"CREATE TABLE `{db}`.t (x INT)"))
            conn.execute(text(f"INSERT INTO `{db}`.t VALUES (42)"))
            assert conn.execute(text(f"SELECT x FROM `{db}`.t")).scalar_one() == 42
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{db}`"))
        engine.dispose()


# --- HDFS ----------------------------------------------------------------------------


def _webhdfs(webhdfs_url):
    hdfs = pytest.importorskip("hdfs")
    parts = urlsplit(webhdfs_url)
    client = hdfs.InsecureClient(f"http://{parts.hostname}:{parts.port}", user="root")
    return client, parts.path.rstrip("/") or "/"


def test_webhdfs_write_read_5mib_replicated(webhdfs_url):
    client, base = _webhdfs(webhdfs_url)
    path = f"{base}/{_unique('svc-smoke')}.bin"
    data = os.urandom(5 * MiB)
    try:
        # CREATE goes NameNode -> 307 redirect -> DataNode: this only works if
        # the redirect names an address reachable from here.
        client.write(path, data=data, overwrite=True)
        with client.read(path) as reader:
            got = reader.read()
        assert len(got) == len(data)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        status = client.status(path)
        assert status["length"] == len(data)
        assert status["replication"] == 2
        with client.read(path, offset=3 * MiB, length=1000) as reader:
            assert reader.read() == data[3 * MiB : 3 * MiB + 1000]
    finally:
        client.delete(path)
    assert client.status(path, strict=False) is None


def test_hdfs_native_write_read(hdfs_url):
    hdfs_native = pytest.importorskip("hdfs_native")
    parts = urlsplit(hdfs_url)
    # Without failover.max.attempts=0 hdfs-native retries a refused connection
    # for ~3 minutes before giving up.
    client = hdfs_native.Client(
        f"hdfs://{parts.hostname}:{parts.port}", {"dfs.client.failover.max.attempts": "0"}
    )
    base = parts.path.rstrip("/") or "/"
    path = f"{base}/{_unique('svc-native')}.bin"
    data = os.urandom(3 * MiB + 12345)
    try:
        with client.create(path, hdfs_native.WriteOptions(overwrite=True)) as writer:
            writer.write(data[: MiB])
            writer.write(data[MiB:])
        info = client.get_file_info(path)
        assert info.length == len(data)
        assert info.replication == 2
        with client.read(path) as reader:
            got = reader.read()
        assert got == data
        with client.read(path) as reader:
            assert reader.read_range(2 * MiB, 777) == data[2 * MiB : 2 * MiB + 777]
    finally:
        client.delete(path)


# --- S3 ----------------------------------------------------------------------------------


def _s3_parts(s3_url):
    parts = urlsplit(s3_url)
    q = parse_qs(parts.query)
    return parts.netloc, parts.path.strip("/"), q.get("region", ["us-east-1"])[0]


@pytest.fixture(scope="module")
def s3_client(s3_endpoint, s3_url):
    boto3 = pytest.importorskip("boto3")
    _, _, region = _s3_parts(s3_url)
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        region_name=region,
    )


def test_s3_boto3_put_get(s3_client, s3_url):
    bucket, prefix, _ = _s3_parts(s3_url)
    key = f"{prefix}/{_unique('svc-boto3')}"
    data = os.urandom(MiB + 7)
    try:
        s3_client.put_object(Bucket=bucket, Key=key, Body=data)
        got = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert got == data
        ranged = s3_client.get_object(Bucket=bucket, Key=key, Range="bytes=100-199")["Body"].read()
        assert ranged == data[100:200]
        listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=key)
        assert [o["Key"] for o in listed.get("Contents", [])] == [key]
    finally:
        s3_client.delete_object(Bucket=bucket, Key=key)


def test_s3_pyarrow_filesystem(s3_client, s3_url, s3_endpoint):
    pafs = pytest.importorskip("pyarrow.fs")
    bucket, prefix, region = _s3_parts(s3_url)
    endpoint = urlsplit(s3_endpoint)
    fs = pafs.S3FileSystem(
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme or "http",
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        region=region,
    )
    key = f"{prefix}/{_unique('svc-arrow')}"
    path = f"{bucket}/{key}"
    data = os.urandom(2 * MiB + 3)
    try:
        with fs.open_output_stream(path) as out:
            out.write(data[:MiB])
            out.write(data[MiB:])
        info = fs.get_file_info(path)
        assert info.type == pafs.FileType.File
        assert info.size == len(data)
        # The object written through arrow is visible to boto3, byte for byte.
        assert s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        with fs.open_input_file(path) as f:
            assert f.size() == len(data)
            assert f.read_at(4096, MiB - 100) == data[MiB - 100 : MiB - 100 + 4096]
            assert f.read_at(10, len(data) - 10) == data[-10:]
    finally:
        fs.delete_file(path)
    assert fs.get_file_info(path).type == pafs.FileType.NotFound


def test_s3_checksum_behaviour(s3_client, s3_url):
    """Pins what the moto server does with wrong upload checksums (see the
    module docstring): it accepts them. If this starts failing because the
    server rejects the upload, the server now validates checksums; update the
    docstring and any tests that work around it."""
    from botocore.exceptions import FlexibleChecksumError

    bucket, prefix, _ = _s3_parts(s3_url)
    body = b"blockdrive checksum probe " + os.urandom(64)
    wrong_sha = base64.b64encode(hashlib.sha256(b"not the body").digest()).decode()
    wrong_md5 = base64.b64encode(hashlib.md5(b"not the body").digest()).decode()
    k_sha = f"{prefix}/{_unique('svc-cksum-sha256')}"
    k_md5 = f"{prefix}/{_unique('svc-cksum-md5')}"
    try:
        # Wrong SHA-256: accepted, and the wrong value is stored and echoed.
        r = s3_client.put_object(
            Bucket=bucket, Key=k_sha, Body=body, ChecksumAlgorithm="SHA256", ChecksumSHA256=wrong_sha
        )
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert r.get("ChecksumSHA256") == wrong_sha
        head = s3_client.head_object(Bucket=bucket, Key=k_sha, ChecksumMode="ENABLED")
        assert head["ContentLength"] == len(body)
        assert head.get("ChecksumSHA256") == wrong_sha
        # ...and botocore catches the mismatch when the body is read.
        resp = s3_client.get_object(Bucket=bucket, Key=k_sha, ChecksumMode="ENABLED")
        with pytest.raises(FlexibleChecksumError):
            resp["Body"].read()

        # Wrong Content-MD5: accepted; the ETag is the MD5 of the real body.
        r = s3_client.put_object(Bucket=bucket, Key=k_md5, Body=body, ContentMD5=wrong_md5)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert r["ETag"].strip('"') == hashlib.md5(body).hexdigest()
        assert s3_client.get_object(Bucket=bucket, Key=k_md5)["Body"].read() == body
    finally:
        s3_client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k_sha}, {"Key": k_md5}]})
