"""Hostile ECB feeds: read and parsed within bounds (size, time, values), or refused with one
`FxRatesError` naming the feed, the day and the value. Files are read from file:// paths; HTTP
behaviours come from a small server on 127.0.0.1 started here. The cases live in `bad_inputs.py`,
which docs/bad-inputs.md is rendered from."""

from __future__ import annotations

import datetime as dt
import gzip
import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from metaspend_pipeline import fx
from metaspend_pipeline.redaction import shown_url
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.settings import SettingsError, fx_rates_url, fx_timeout_seconds
from metaspend_pipeline_tests.bad_inputs import (
    FEED,
    FX_API_KEY,
    FX_FEEDS,
    FX_SERVERS,
    FX_TIMEOUT,
    FX_URLS,
    GOOD_FEED,
    FxFeed,
    FxServer,
    FxUrl,
    ecb_day,
    ecb_feed,
)
from metaspend_pipeline_tests.conftest import ascii_id

_BOMB = gzip.compress(b" " * (fx.MAX_FEED_BYTES + 1), compresslevel=9, mtime=0)


class _FeedHandler(http.server.BaseHTTPRequestHandler):
    """Each path is a behaviour of a feed's server (FX_SERVERS names them)."""

    server: FeedServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.split("?")[0].strip("/")
        self.server.calls[name] += 1
        if name == "trickle-body":
            self._headers(200, {"Content-Length": "400"})
            self._trickle(b" " * 400)
        elif name == "trickle-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._trickle(b"X-Slow: " + b"a" * 400 + b"\r\n\r\n")
        elif name.startswith("retry-after-"):
            self._headers(503, {"Retry-After": name.removeprefix("retry-after-"), "Content-Length": "0"})
        elif name == "once-503":
            if self.server.calls[name] == 1:
                self._headers(503, {"Retry-After": "0", "Content-Length": "0"})
            else:
                self._body(GOOD_FEED)
        elif name == "brotli":
            self._body(b"\x1b\x00\x00", {"Content-Encoding": "br"})
        elif name == "gzip-bomb":
            self._body(_BOMB, {"Content-Encoding": "gzip"})
        elif name == "gzip-encoded":
            self._body(gzip.compress(GOOD_FEED), {"Content-Encoding": "gzip"})
        elif name == "redirect-loop":
            self._headers(302, {"Location": "/redirect-loop", "Content-Length": "0"})
        elif name == "redirect":
            self._headers(302, {"Location": "/feed.xml", "Content-Length": "0"})
        elif name == "feed.xml":
            self._body(GOOD_FEED)
        else:
            self._headers(404, {"Content-Length": "0"})

    def _headers(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _body(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._headers(200, {"Content-Length": str(len(body)), **(headers or {})})
        self.wfile.write(body)

    def _trickle(self, data: bytes) -> None:
        try:
            for byte in data:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client gave up, as it should


class FeedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FeedHandler)
        self.calls: Counter[str] = Counter()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _message(template: str, url: str) -> str:
    return template.replace(FEED, shown_url(url))


@pytest.mark.parametrize("case", FX_FEEDS, ids=lambda c: ascii_id(c.what))
def test_a_bad_feed_is_one_error_naming_the_feed_the_day_and_the_value(tmp_path: Path, case: FxFeed) -> None:
    path = tmp_path / "eurofxref-hist.xml"
    path.write_bytes(case.body())
    url = path.as_uri()
    with pytest.raises(fx.FxRatesError) as info:
        fx.parse_feed(fx.read_feed(url), shown_url(url))
    assert str(info.value) == _message(case.message, url)


@pytest.mark.parametrize("case", FX_SERVERS, ids=lambda c: c.path)
def test_a_hostile_feed_server_is_given_up_on_within_the_deadline(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch, case: FxServer
) -> None:
    """METASPEND_FX_TIMEOUT_SECONDS bounds connections, retries, their waits and the reads together."""
    monkeypatch.setenv("METASPEND_FX_TIMEOUT_SECONDS", FX_TIMEOUT)
    url = f"{feed_server.url}/{case.path}?api_key={FX_API_KEY}"
    started = time.monotonic()
    with pytest.raises(fx.FxRatesError) as info:
        fx.read_feed(url)
    elapsed = time.monotonic() - started
    assert str(info.value) == _message(case.message, url)
    assert FX_API_KEY not in str(info.value)
    assert elapsed < float(FX_TIMEOUT) + 1.5, f"{case.path} held the read {elapsed:.1f} s"


def test_a_retry_after_is_honoured_up_to_30_seconds() -> None:
    assert fx.retry_wait("0", 0) == 0
    assert fx.retry_wait("20", 0) == 20
    assert fx.retry_wait("21600", 3) == fx.MAX_RETRY_AFTER_SECONDS == 30
    now = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)
    assert fx.retry_wait("Sun, 06 Dec 2026 12:00:10 GMT", 0, now) == 10
    assert fx.retry_wait("Mon, 07 Dec 2026 12:00:00 GMT", 0, now) == 30
    assert [fx.retry_wait(None, n) for n in range(4)] == [1, 2, 4, 8]
    assert fx.retry_wait("soon", 1) == 2
    assert fx.retry_wait("\u0662\u0660", 0) == 1  # no Arabic-Indic seconds


def test_the_feed_server_still_works_through_a_retry_a_redirect_and_gzip(feed_server: FeedServer) -> None:
    expected = {dt.date(2026, 10, 5): {"USD": Decimal("1.0838"), "JPY": Decimal("162.41")}}
    for path in ("once-503", "redirect", "gzip-encoded", "feed.xml"):
        url = f"{feed_server.url}/{path}"
        assert fx.parse_feed(fx.read_feed(url, timeout=5), url) == expected, path
    assert feed_server.calls["once-503"] == 2


def test_the_deadline_is_read_from_the_environment() -> None:
    assert fx_timeout_seconds({}) == 120.0
    assert fx_timeout_seconds({"METASPEND_FX_TIMEOUT_SECONDS": "30"}) == 30.0


def _read_settings(env: dict[str, str]) -> None:
    fx_rates_url(env)
    fx_timeout_seconds(env)


@pytest.mark.parametrize("case", FX_URLS, ids=lambda c: ascii_id(",".join(f"{k}={v}" for k, v in c.env.items())))
def test_the_feed_url_is_shown_without_its_query_string_or_refused(case: FxUrl) -> None:
    if case.refused:
        with pytest.raises(SettingsError) as info:
            _read_settings(case.env)
        assert str(info.value) == case.refused
        assert FX_API_KEY not in str(info.value)
    else:
        assert shown_url(fx_rates_url(case.env)) == case.shown


def test_a_file_in_the_ecb_s_own_layout_is_read_as_it_streams(tmp_path: Path) -> None:
    """The ECB's files as published: single quotes, the Sender, tabs and new lines, the newest day first."""
    path = tmp_path / "eurofxref-hist.xml.gz"
    text = (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
        'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n'
        "\t<gesmes:subject>Reference rates</gesmes:subject>\n"
        "\t<gesmes:Sender>\n\t\t<gesmes:name>European Central Bank</gesmes:name>\n\t</gesmes:Sender>\n"
        "\t<Cube>\n"
        "\t\t<Cube time='2026-12-04'>\n\t\t\t<Cube currency='USD' rate='1.0545'/>\n"
        "\t\t\t<Cube currency='IDR' rate='17153.93'/>\n\t\t</Cube>\n"
        "\t\t<Cube time='2026-12-03'>\n\t\t\t<Cube currency='USD' rate='1.0512'/>\n\t\t</Cube>\n"
        "\t</Cube>\n</gesmes:Envelope>"
    )
    path.write_bytes(gzip.compress(text.encode()))
    assert fx.parse_feed(fx.read_feed(path.as_uri()), str(path)) == {
        dt.date(2026, 12, 4): {"USD": Decimal("1.0545"), "IDR": Decimal("17153.93")},
        dt.date(2026, 12, 3): {"USD": Decimal("1.0512")},
    }


def test_rates_at_the_bounds_of_the_column_are_kept() -> None:
    feed = ecb_feed(ecb_day(("USD", "999999999999.999999"), ("JPY", "0.000001"), ("KRW", "0001520.5")))
    assert fx.parse_feed(feed, "bounds") == {
        dt.date(2026, 10, 5): {
            "USD": Decimal("999999999999.999999"),
            "JPY": Decimal("0.000001"),
            "KRW": Decimal("1520.5"),
        }
    }


@pytest.mark.parametrize("feed", ["eurofxref-hist.xml", "eurofxref-hist-90d.xml", "eurofxref-daily.xml"])
def test_the_sandbox_feeds_parse_exactly(feed: str) -> None:
    """Each of the sandbox's three ECB files, read over HTTP as the asset reads it, gives the rows of
    the sandbox's truth for the days it covers."""
    sandbox = Sandbox(3)
    with SandboxServer(sandbox) as server:
        publications = fx.parse_feed(fx.read_feed(f"{server.url}/__sandbox/ecb/{feed}", timeout=30), feed)
    first, last = min(publications), max(publications)
    since = first + dt.timedelta(days=fx.MAX_FILL_DAYS)  # from a day whose week before is in the file
    until = last if feed != "eurofxref-daily.xml" else first
    since = min(since, until)
    rows = sorted(fx.fill_days(publications, since, until), key=lambda r: (r.date, r.currency))
    assert [vars(r) for r in rows] == sandbox.ecb.truth(since, until)
