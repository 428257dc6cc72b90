"""An S3 server for tests: moto's server mode on 127.0.0.1 (a free port) with one bucket, reached over real HTTP
by s3fs (nothing mocked in-process). Shared by tests/objstore and tests/shards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

BUCKET = "nmig-test"
KEY = "nmig"
SECRET = "s3cr3t-never-shown-0123456789"
REGION = "us-east-1"


@contextlib.contextmanager
def serve_s3() -> Iterator[dict[str, Any]]:
    """Yields the storage_options that reach the server (see `s3_env` for the same as AWS_* variables)."""
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    # s3fs keeps one filesystem per set of arguments in the process; one made from AWS_* variables for an
    # earlier server would still reach that server's (closed) port
    s3fs.S3FileSystem.clear_instance_cache()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET, region_name=REGION
        ).create_bucket(Bucket=BUCKET)
        yield {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": endpoint, "region_name": REGION}}
    finally:
        server.stop()


def s3_env(options: dict[str, Any]) -> dict[str, str]:
    """The environment that makes s3fs (botocore) reach the server without --storage-options, as a pod's would."""
    return {"AWS_ENDPOINT_URL": options["client_kwargs"]["endpoint_url"], "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": REGION}
