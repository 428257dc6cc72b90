"""Bundle locations and --storage-options (pure logic): what is a URL, how options parse, what is masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from nmig.errors import NmigError
from nmig.schema import (
    as_location,
    is_url,
    local_path,
    masked_options,
    open_root,
    parse_storage_options,
    secrets_of,
)


def test_urls_stay_strings_and_file_urls_name_local_folders(tmp_path: Path) -> None:
    assert as_location("s3://bucket/prefix") == "s3://bucket/prefix" and is_url("gs://b/p")
    assert as_location("bundle") == Path("bundle") and not is_url(Path("s3:/x"))
    assert local_path((tmp_path / "a b").as_uri()) == tmp_path / "a b"
    assert local_path("s3://bucket/p") is None
    assert open_root((tmp_path / "x").as_uri()).is_local
    with pytest.raises(NmigError, match="this machine's files"):
        local_path("file://otherhost/data")


def test_storage_options_as_json_or_pairs() -> None:
    assert parse_storage_options('{"anon": true, "client_kwargs": {"endpoint_url": "http://m:9000"}}') == {
        "anon": True, "client_kwargs": {"endpoint_url": "http://m:9000"}}
    assert parse_storage_options("key=AK, secret=a=b") == {"key": "AK", "secret": "a=b"}
    assert parse_storage_options(None) == {} and parse_storage_options("  ") == {}
    for bad, why in (("{nope", "not valid JSON"), ("[1]", "JSON object"), ("justaword", "KEY=VALUE")):
        with pytest.raises(NmigError, match=why):
            parse_storage_options(bad)


def test_credentials_are_masked_and_collected_for_redaction() -> None:
    options = {"key": "AKIA1", "secret": "s3cr3t", "token": "", "anon": False,
               "client_kwargs": {"endpoint_url": "http://m:9000", "aws_session_token": "sess"}}
    assert masked_options(options) == {"key": "***", "secret": "***", "token": "", "anon": False,
                                       "client_kwargs": {"endpoint_url": "http://m:9000", "aws_session_token": "***"}}
    assert sorted(secrets_of(options)) == ["AKIA1", "s3cr3t", "sess"]


def test_an_unknown_scheme_is_one_line() -> None:
    with pytest.raises(NmigError, match="unknown storage scheme nosuch://"):
        open_root("nosuch://bucket/x")
