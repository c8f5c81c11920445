"""``s3://bucket/prefix?endpoint=http://host:port&region=us-east-1`` — packs on S3 or any
S3-compatible store, through pyarrow's S3FileSystem. Credentials come from the usual AWS
environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``) or instance roles;
they never appear in the URL, so the URL can be logged."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import pyarrow.fs as pafs

from ..errors import ConfigError
from .arrow import ArrowBackend


class S3Backend(ArrowBackend):
    def __init__(self, url: str, timeout: float = 30):
        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigError(f"{url}: an s3:// URL needs a bucket (s3://bucket/prefix)")
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        kwargs = dict(region=q.get("region") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                      connect_timeout=timeout, request_timeout=timeout,
                      allow_bucket_creation=True,
                      retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3))
        endpoint = q.get("endpoint")
        if endpoint:
            ep = urlsplit(endpoint)
            kwargs["endpoint_override"] = ep.netloc or ep.path
            kwargs["scheme"] = ep.scheme or "https"
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if key and secret:
            kwargs.update(access_key=key, secret_key=secret)
        fs = pafs.S3FileSystem(**kwargs)
        root = (parts.netloc + parts.path).rstrip("/")
        super().__init__(fs, root, url)
        self.bucket = parts.netloc
