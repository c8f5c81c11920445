import tomllib
from pathlib import Path

import pytest

from storage.config import DEFAULTS, load_config, mask_url
from storage.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_conf_default_toml_matches_builtin_defaults():
    with open(ROOT / "conf" / "default.toml", "rb") as fh:
        assert tomllib.load(fh) == DEFAULTS


@pytest.mark.parametrize("example", sorted((ROOT / "conf").glob("*.example.toml")))
def test_examples_load(example):
    load_config(example, env={})


def test_env_overrides_file_overrides_defaults(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[storage]\nchunk_avg = 2097152\n[server]\nport = 9000\n')
    cfg = load_config(f, env={"BLOCKDRIVE_SERVER_PORT": "9100", "BLOCKDRIVE_HOME": "/data",
                              "BLOCKDRIVE_TEST_SOMETHING": "ignored"})
    assert cfg["storage"]["chunk_avg"] == 2097152
    assert cfg["server"]["port"] == 9100
    assert cfg.database_url == "sqlite:////data/blockdrive.db"
    assert cfg.storage_url == "file:///data/packs"


@pytest.mark.parametrize("env,msg", [
    ({"BLOCKDRIVE_SERVER_PORT": "eighty"}, "server.port"),
    ({"BLOCKDRIVE_STORAGE_CHUNKER": "magic"}, "unknown chunker"),
    ({"BLOCKDRIVE_STORAGE_CHUNK_MIN": "99999999"}, "chunk_min"),
    ({"BLOCKDRIVE_STORAGE_INGEST_BUFFER_BYTES": "0"}, "ingest_buffer_bytes must be positive"),
    ({"BLOCKDRIVE_DATABASE_POOL_SIZE": "0"}, "database.pool_size must be at least 1"),
])
def test_bad_values_are_clear_errors(env, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(env=env)


def test_unknown_keys_in_a_file_are_rejected(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[storage]\nchunk_avgg = 1\n')
    with pytest.raises(ConfigError, match="chunk_avgg"):
        load_config(f, env={})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, env={})


def test_secrets_are_masked():
    cfg = load_config(env={"BLOCKDRIVE_DATABASE_URL": "mysql+pymysql://bd:hunter2@db/blockdrive",
                           "BLOCKDRIVE_STORAGE_URL": "s3://b/p?endpoint=http://x&secret_key=abc"})
    text = repr(cfg.masked())
    assert "hunter2" not in text and "abc" not in text
    assert "bd:***@db" in text
    assert mask_url("https://u:p@h/x") == "https://u:***@h/x"
