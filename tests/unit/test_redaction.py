"""The one redaction rule (``core.redaction``): URLs, ``password=`` pairs, registered keys, log records."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from smartmarket.core.config import Settings, register_env_secrets
from smartmarket.core.errors import ConfigError, StoreError
from smartmarket.core.redaction import (
    RedactingFilter,
    install_log_redaction,
    redact_record,
    redact_text,
    redact_url,
    url_secrets,
)
from smartmarket.store.migrate import Checkpoint

PW = "Hunter2Secret"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (f"postgresql://postgres:{PW}@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        (f"postgresql://127.0.0.1/test?user=sm&password={PW}&sslmode=require",
         "postgresql://127.0.0.1/test?user=sm&sslmode=require"),
        (f"redis://:{PW}@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (f"rediss://default:{PW}@cache:6380/1?namespace=paper", "rediss://default@cache:6380/1?namespace=paper"),
        (f"questdb://admin:{PW}@127.0.0.1:9000?http_token={PW}x&pg_port=8812&http_password={PW}",
         "questdb://admin@127.0.0.1:9000?pg_port=8812"),
        (f"sm:{PW}@db:5432/prod", "sm@db:5432/prod"),  # no scheme
        ("duckdb:////abs/[x]/sm.duckdb", "duckdb:////abs/[x]/sm.duckdb"),
        ("memory://?namespace=a", "memory://?namespace=a"),
    ],
)  # fmt: skip
def test_redact_url_removes_passwords_and_secret_parameters(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_redact_text_cleans_urls_pairs_and_extra_values_inside_free_text() -> None:
    text = (
        f"cannot connect to 'postgresql://u:{PW}@h/db?password={PW}' (conninfo host=h password={PW} "
        f"dbname=db); SMARTMARKET_EXCHANGE_API_SECRET={PW}; token = '{PW} x'"
    )
    clean = redact_text(text)
    assert PW not in clean
    assert "postgresql://u@h/db" in clean and "host=h password=*** dbname=db" in clean
    # a driver that quotes a password outside any URL or pair: masked when passed as the URL's secrets
    url = "postgresql://u:p%40ss@h/db"
    assert url_secrets(url) == ["p%40ss", "p@ss"]
    assert redact_text('auth failed for "p@ss"', also=url_secrets(url)) == 'auth failed for "***"'
    assert redact_text("plain ts=1 volume=2.5 and http://host/path") == "plain ts=1 volume=2.5 and http://host/path"


def test_errors_redact_what_where_and_hint() -> None:
    exc = StoreError(f"failed on redis://:{PW}@h:1/0", where=f"postgresql://u:{PW}@h/d", hint=f"password={PW}")
    assert PW not in str(exc) and PW not in exc.one_line()


def test_env_secrets_are_masked_once_registered() -> None:
    key = "k3y-" + os.urandom(8).hex()
    assert register_env_secrets({"SMARTMARKET_EXCHANGE_API_KEY": key, "SMARTMARKET_API_KEY": ""}) == [
        "SMARTMARKET_EXCHANGE_API_KEY"
    ]
    assert key not in redact_text(f"header X-MBX-APIKEY: {key}")
    assert key not in str(ConfigError(f"exchange said {key}"))


def test_settings_repr_never_shows_a_url_password() -> None:
    settings = Settings(store=f"postgresql://u:{PW}@h/d", bus=f"redis://:{PW}@h:6379/0")
    assert PW not in repr(settings) and "postgresql://u@h/d" in repr(settings)


def test_every_log_record_is_redacted_messages_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.DEBUG):
        log.warning("connecting to %s", f"postgresql://u:{PW}@h/d")
        try:
            raise RuntimeError(f"refused by redis://:{PW}@h:1/0")
        except RuntimeError:
            log.exception("lost the bus")
    assert "postgresql://u@h/d" in caplog.text and "lost the bus" in caplog.text
    assert PW not in caplog.text
    assert all(PW not in r.getMessage() and PW not in (r.exc_text or "") for r in caplog.records)


def test_redacting_filter_on_a_handler(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    handler = logging.FileHandler(path)
    handler.addFilter(RedactingFilter())
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "url %s", (f"redis://:{PW}@h/0",), None)
    handler.handle(record)
    handler.close()
    assert path.read_text().strip() == "url redis://h/0"


def test_checkpoint_holds_redacted_urls_mode_0600_and_refuses_other_stores(tmp_path: Path) -> None:
    src, dst = f"postgresql://u:{PW}@h/d", "duckdb:////x.duckdb"
    path = Checkpoint.path_for(tmp_path, src, dst)
    # the password does not shape the file name: a changed password resumes the same migration
    assert path == Checkpoint.path_for(tmp_path, "postgresql://u:other@h/d", dst)
    checkpoint = Checkpoint(path, src, dst)
    checkpoint.mark_series("BTCUSDT/1m", 123)
    assert PW.encode() not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Checkpoint(path, f"postgresql://u:{PW}@h/d", dst)
    assert again.load() and again.series_done_until("BTCUSDT/1m") == 123
    with pytest.raises(ConfigError, match="recorded for another target") as other:
        Checkpoint(path, src, "duckdb:////y.duckdb").load()
    assert str(path) in str(other.value)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"series": {"A/1m": "x"}}', b""])
def test_a_corrupt_checkpoint_is_one_error_naming_the_file_and_the_fix(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "migration-x.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        Checkpoint(path, "duckdb:///a", "duckdb:///b").load()
    line = exc.value.one_line()
    assert str(path) in line and "delete that file" in line and "--resume" in line
    assert "\n" not in line


def test_formatters_that_read_the_arguments_still_work_after_redaction() -> None:
    """uvicorn's access log unpacks ``record.args`` (a 5-tuple) itself: redaction keeps the tuple, masking a
    secret inside an argument (every request of ``serve`` printed "--- Logging error --- TypeError" before)."""
    from uvicorn.logging import AccessFormatter

    formatter = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    plain = ("127.0.0.1:5000", "GET", "/api/health", "1.1", 200)
    secret = ("127.0.0.1:5000", "GET", f"/api/x?password={PW}", "1.1", 200)
    lines = []
    for args in (plain, secret):
        record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)
        lines.append(formatter.format(redact_record(record)))
    assert lines[0] == '127.0.0.1:5000 - "GET /api/health HTTP/1.1" 200 OK'
    assert PW not in lines[1] and lines[1].startswith('127.0.0.1:5000 - "GET /api/x?password=') and "200" in lines[1]
