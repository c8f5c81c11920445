"""Configuration: defaults, then an optional TOML file, then ``BLOCKDRIVE_*`` environment variables.

The defaults below are the same as ``conf/default.toml`` (a unit test keeps the two equal), so an
installed blockdrive works without the repository's ``conf/`` folder.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

DEFAULTS: dict[str, dict[str, Any]] = {
    "server": {"host": "127.0.0.1", "port": 8080, "workers": 2, "max_upload_bytes": 0,
               "max_json_bytes": 1024 * 1024, "public_url": "", "upload_expire_seconds": 86400,
               "auth_max_failures": 5, "auth_window_seconds": 900,
               "secret_key": "", "threads": 64, "header_timeout_seconds": 10, "body_timeout_seconds": 30,
               "body_min_bytes_per_second": 500, "ready_probe_seconds": 1.0},
    "metrics": {"allow_from": "", "bearer_token": ""},
    "storage": {
        "home": "./var",
        "url": "",
        "cold_url": "",
        "chunker": "fastcdc",
        "chunk_min": 256 * 1024,
        "chunk_avg": 1024 * 1024,
        "chunk_max": 4 * 1024 * 1024,
        "compression_level": 3,
        "min_compression_saving": 0.05,
        "pack_max_bytes": 128 * 1024 * 1024,
        "shared_pack_request_bytes": 1024 * 1024,
        "shared_pack_target_bytes": 64 * 1024 * 1024,
        "shared_pack_idle_seconds": 5.0,
        "shared_pack_max_age_seconds": 300.0,
        "group_commit": "auto",
        "group_commit_max": 64,
        "timeout_seconds": 30,
        "ingest_hash_threads": 2,
        "ingest_buffer_bytes": 16 * 1024 * 1024,
        "read_location_max_seconds": 600.0,
    },
    "database": {"url": "", "replica_url": "", "replica_wait_ms": 50, "replica_retry_seconds": 2.0, "pool_size": 16},
    "quota": {"free_bytes": 15_000_000_000, "premium_bytes": 1_000_000_000_000,
              "block_floor_bytes": 4096, "block_session_seconds": 86400,
              "block_session_max_blocks": 100_000},
    "retention": {"keep_all_seconds": 86400, "hourly_seconds": 2 * 86400, "daily_seconds": 30 * 86400,
                  "max_age_days": 0, "batch_nodes": 200},
    "trash": {"retention_days": 30},
    "changes": {"retention_days": 30.0, "wait_max_seconds": 90.0, "wait_poll_seconds": 0.1,
                "max_waiters": 20000},
    "limits": {"max_depth": 256, "max_nodes_per_user": 1_000_000, "max_nodes_per_copy": 10_000},
    "gc": {"grace_seconds": 86400},
    "security": {"scrypt_n": 2**17, "scrypt_r": 8, "scrypt_p": 1, "scrypt_concurrency": 2,
                 "scrypt_wait_seconds": 10.0, "login_free_failures": 5, "login_free_per_address": 20,
                 "login_free_per_account": 50, "login_max_delay_seconds": 900, "login_forget_seconds": 86400,
                 "basic_cache_seconds": 300, "login_flow_seconds": 1200,
                 "login_flows_per_address": 20,
                 "token_ttl_days": 90.0, "cli_token_ttl_days": 365.0, "trusted_proxies": "", "https": False},
    "web": {"thumb_max_pixels": 50_000_000, "thumb_max_bytes": 30_000_000, "thumb_size": 256,
            "thumb_timeout_seconds": 10.0, "thumb_memory_bytes": 1024**3, "thumb_workers": 2,
            "preview_text_bytes": 1024 * 1024},
    "jobs": {
        "spark_master": "local[2]",
        "shuffle_partitions": 4,
        "driver_memory": "1g",
        "jdbc": False,
        "jdbc_packages": "org.mariadb.jdbc:mariadb-java-client:3.5.1",
        "jdbc_partitions": 4,
        "target_pack_bytes": 256 * 1024 * 1024,
        "fill_threshold": 0.5,
        "dead_ratio": 0.3,
        "compact_max_bytes": 1024**4,
        "compact_max_amplification": 4.0,
        "compact_merge_bytes": 256 * 1024 * 1024,
        "compact_bound_extra_disk": False,
        "compact_wait_seconds": 0.0,
        "open_pack_grace_seconds": 86400,
        "tier_after_days": 30,
        "scrub_fraction": 1.0,
        "lease_seconds": 3600,
        "report_top_users": 20,
        "report_days": 90,
    },
    "schedule": {
        "scrub": "0 1 * * *",
        "gc": "0 2 * * *",
        "reconcile": "30 2 * * *",
        "compact": "0 3 * * *",
        "tier": "0 4 * * *",
        "dedup_scan": "0 5 * * 0",
        "rebuild_index": "",
        "report": "0 6 * * *",
    },
}

# Short environment names people expect to type.
ALIASES = {
    "BLOCKDRIVE_HOME": ("storage", "home"),
    "BLOCKDRIVE_DATABASE_URL": ("database", "url"),
    "BLOCKDRIVE_STORAGE_URL": ("storage", "url"),
    "BLOCKDRIVE_COLD_STORAGE_URL": ("storage", "cold_url"),
}

_SECRET_KEYS = re.compile(r"(password|secret|token|key)", re.I)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z0-9+.-]+://)(?P<user>[^:/@]*):(?P<pw>[^@/]*)@", re.I)
_URL_QUERY_SECRET = re.compile(r"((?:secret|password|token|key)[a-z_]*=)[^&]*", re.I)


class Config(dict):
    """The effective configuration: ``config["storage"]["chunk_avg"]``."""

    @property
    def home(self) -> Path:
        return Path(self["storage"]["home"]).expanduser().resolve()

    @property
    def database_url(self) -> str:
        return self["database"]["url"] or f"sqlite:///{self.home / 'blockdrive.db'}"

    @property
    def storage_url(self) -> str:
        return self["storage"]["url"] or (self.home / "packs").as_uri()

    @property
    def cold_url(self) -> str | None:
        return self["storage"]["cold_url"] or None

    def masked(self) -> dict:
        """A copy safe to print or log: passwords in URLs and secret-looking keys hidden."""
        out = copy.deepcopy(dict(self))
        for section in out.values():
            for key, value in section.items():
                if isinstance(value, str):
                    if _SECRET_KEYS.search(key) and value:
                        section[key] = "***"
                    else:
                        section[key] = mask_url(value)
        return out


def mask_url(value: str) -> str:
    value = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", value)
    return _URL_QUERY_SECRET.sub(r"\1***", value)


# Keys that take true, false or "auto" (chosen by the setup: see where each is read).
AUTO_OR_BOOL = {("storage", "group_commit")}


def _coerce(section: str, key: str, raw: str, default: Any) -> Any:
    auto = (section, key) in AUTO_OR_BOOL
    if auto:
        if raw.lower() == "auto":
            return "auto"
        default = False  # otherwise a boolean
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        expected = "true, false or auto" if auto else type(default).__name__
        raise ConfigError(f"{section}.{key}: expected {expected}, got {raw!r}") from None
    return raw


def _merge(base: dict, overlay: Mapping, origin: str) -> None:
    for section, values in overlay.items():
        if section not in base or not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: unknown section [{section}]")
        for key, value in values.items():
            if key not in base[section]:
                raise ConfigError(f"{origin}: unknown key {section}.{key}")
            default = base[section][key]
            if (section, key) in AUTO_OR_BOOL:
                if not (isinstance(value, bool) or value == "auto"):
                    raise ConfigError(f'{origin}: {section}.{key} must be true, false or "auto"')
                base[section][key] = value
                continue
            if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
                value = _coerce(section, key, value, default)
            elif isinstance(default, float) and isinstance(value, int):
                value = float(value)
            elif type(value) is not type(default) and not (isinstance(default, int) and isinstance(value, int)):
                raise ConfigError(f"{origin}: {section}.{key} must be {type(default).__name__}")
            base[section][key] = value


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                overrides: Mapping | None = None) -> Config:
    """Defaults, then the TOML file (``path`` or ``$BLOCKDRIVE_CONFIG``), then the environment,
    then ``overrides`` (a nested mapping, for tests and the CLI)."""
    env = os.environ if env is None else env
    cfg = copy.deepcopy(DEFAULTS)
    path = path or env.get("BLOCKDRIVE_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                _merge(cfg, tomllib.load(fh), str(path))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for name, value in env.items():
        if not name.startswith("BLOCKDRIVE_") or name == "BLOCKDRIVE_CONFIG":
            continue
        if name in ALIASES:
            section, key = ALIASES[name]
        else:
            rest = name[len("BLOCKDRIVE_"):].lower()
            section = next((s for s in cfg if rest.startswith(s + "_")), None)
            if section is None:
                continue  # other tools' variables (BLOCKDRIVE_TEST_*, BLOCKDRIVE_URL, ...)
            key = rest[len(section) + 1:]
            if key not in cfg[section]:
                continue
        cfg[section][key] = _coerce(section, key, value, cfg[section][key])
    if overrides:
        _merge(cfg, overrides, "overrides")
    _validate(cfg)
    return Config(cfg)


def _validate(cfg: dict) -> None:
    s = cfg["storage"]
    if not (64 <= s["chunk_min"] <= s["chunk_avg"] <= s["chunk_max"]):
        raise ConfigError("storage: need 64 <= chunk_min <= chunk_avg <= chunk_max")
    if s["chunker"] not in ("fastcdc", "fixed"):
        raise ConfigError(f"storage.chunker: unknown chunker {s['chunker']!r} (fastcdc or fixed)")
    if not 0 <= s["min_compression_saving"] < 1:
        raise ConfigError("storage.min_compression_saving must be in [0, 1)")
    if s["ingest_buffer_bytes"] < 1:
        raise ConfigError("storage.ingest_buffer_bytes must be positive")
    if s["read_location_max_seconds"] < 0:
        raise ConfigError("storage.read_location_max_seconds must be >= 0")
    db = cfg["database"]
    if db["replica_wait_ms"] < 0 or db["replica_retry_seconds"] < 0:
        raise ConfigError("database.replica_wait_ms and database.replica_retry_seconds must be >= 0")
    if db["pool_size"] < 1:
        raise ConfigError("database.pool_size must be at least 1")
    if cfg["gc"]["grace_seconds"] < 0:
        raise ConfigError("gc.grace_seconds must be >= 0")
    ch = cfg["changes"]
    if ch["retention_days"] <= 0 or ch["wait_max_seconds"] <= 0 or ch["wait_poll_seconds"] <= 0:
        raise ConfigError("changes.retention_days, wait_max_seconds and wait_poll_seconds must be > 0")
    import ipaddress
    for part in cfg["security"]["trusted_proxies"].split(","):
        try:
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)
        except ValueError:
            raise ConfigError(f"security.trusted_proxies: {part.strip()!r} is not an address or network "
                              "(e.g. 10.0.0.5, 10.0.0.0/8)") from None
