"""Hostile inputs at their real sizes (issue 18): peak memory of reading the ECB feed, and the time
to refuse a Meta row with 100,000 action types.

    .venv/bin/python bench/hostile_inputs.py [--before] [--smoke]

Each feed is built on disk first, then read and parsed (`fx.parse_feed(fx.read_feed(url), url)`)
in a fresh Python process, which reports its peak RSS (VmHWM) after the imports and after the
read: the growth is what the feed cost. Feeds: a gzip of about 1 MB that unpacks to 1 GB (from a
file, and over HTTP with Content-Encoding: gzip), a plain 63 MB XML file (both from the security
review of 2026-12-06), a valid feed just under the 16 MiB cap, and the sandbox's 3-year history.
`--before` runs the same in processes that load `fx.py` as it was before the fix
(`git show e8458f4:metaspend_pipeline/fx.py`), for the figures beside. The target: under 300 MB
whatever the feed is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BEFORE = "e8458f4"  # the commit before issue 18's fixes
MB = 1024 * 1024

# Run in the child: read and parse one feed, report peak RSS before and after.
CHILD = r"""
import importlib.util, json, sys, time
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
url, before_path = sys.argv[1], sys.argv[2]
import metaspend_pipeline.fx as fx
if before_path:
    spec = importlib.util.spec_from_file_location("fx_before", before_path)
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)
start = hwm()
started = time.monotonic()
try:
    days = len(fx.parse_feed(fx.read_feed(url), url))
    outcome = f"{days:,} days of rates"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {str(exc).replace(url, '<feed>')[:160]}"
print(json.dumps({"start_mb": start, "peak_mb": hwm(), "seconds": time.monotonic() - started, "outcome": outcome}))
"""


def _write_bomb(path: Path, unpacked: int) -> None:
    zeros = b"\0" * MB
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as out:
        for _ in range(unpacked // MB):
            out.write(zeros)


def _write_ecb_xml(path: Path, size: int) -> None:
    """A valid ECB file of about `size` bytes: business-like days, 30 currencies each."""
    from metaspend_pipeline.sandbox.ecb import BASE_RATES

    currencies = [*sorted(BASE_RATES)[:29], "XAU"]
    day = dt.date(2026, 12, 4)
    with path.open("w") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"'
            ' xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n\t<Cube>\n'
        )
        while out.tell() < size - 2000:
            out.write(f"\t\t<Cube time='{day}'>\n")
            for n, currency in enumerate(currencies):
                out.write(f"\t\t\t<Cube currency='{currency}' rate='{1 + n / 7:.4f}'/>\n")
            out.write("\t\t</Cube>\n")
            day -= dt.timedelta(days=1)
        out.write("\t</Cube>\n</gesmes:Envelope>\n")


def _write_sandbox_history(path: Path) -> None:
    from metaspend_pipeline.sandbox.ecb import EcbRates

    path.write_text(EcbRates(0).feed("eurofxref-hist.xml", dt.date(2026, 12, 6)))


class _Serve(http.server.BaseHTTPRequestHandler):
    body = b""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def _child(url: str, before: Path | None) -> dict[str, Any]:
    env = {**os.environ, "METASPEND_FX_TIMEOUT_SECONDS": "600"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(before or "")], capture_output=True, text=True, env=env, timeout=1800
    )
    if out.returncode != 0:
        return {"start_mb": 0, "peak_mb": 0, "seconds": 0, "outcome": f"crashed: {out.stderr.strip()[-200:]}"}
    return json.loads(out.stdout)


def feed_memory(before: bool, smoke: bool) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = None
        if before:
            old = folder / "fx_before.py"
            old.write_text(
                subprocess.run(
                    ["git", "-C", str(HERE.parent), "show", f"{BEFORE}:metaspend_pipeline/fx.py"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
        bomb, plain, at_cap, history = (folder / n for n in ("bomb.xml.gz", "plain.xml", "cap.xml", "hist.xml"))
        _write_bomb(bomb, (64 if smoke else 1024) * MB)
        _write_ecb_xml(plain, (20 if smoke else 63) * MB)
        _write_ecb_xml(at_cap, 16 * MB - 4096)
        _write_sandbox_history(history)
        _Serve.body = bomb.read_bytes()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Serve)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        http_url = f"http://127.0.0.1:{server.server_address[1]}/eurofxref-hist.xml"
        cases = [
            (f"gzip file, {bomb.stat().st_size / MB:.1f} MB unpacking to {(64 if smoke else 1024)} MB", bomb.as_uri()),
            ("the same over HTTP, Content-Encoding: gzip", http_url),
            (f"plain XML file, {plain.stat().st_size / MB:.0f} MB (valid, over the cap)", plain.as_uri()),
            (f"plain XML file, {at_cap.stat().st_size / MB:.1f} MB (valid, under the 16 MiB cap)", at_cap.as_uri()),
            (f"the sandbox's 3-year history, {history.stat().st_size / MB:.1f} MB", history.as_uri()),
        ]
        try:
            for name, url in cases:
                for label, code in (("after", None), *((("before", old),) if old else ())):
                    result = _child(url, code)
                    results.append({"feed": name, "code": label, **result})
                    print(json.dumps(results[-1]), flush=True)
        finally:
            server.shutdown()
            server.server_close()
    return results


def action_types(before: bool) -> dict[str, Any]:
    """Parsing a row with 100,000 action types (refused now) and with 1,000 (the most accepted)."""
    from metaspend_pipeline.meta.errors import MetaDataError
    from metaspend_pipeline.meta.parsing import parse_insight_row

    day = dt.date(2026, 12, 1)

    def row(count: int) -> dict[str, Any]:
        actions = [
            {"action_type": f"offsite_conversion.custom.{n}", "value": "1", "7d_click": "1"} for n in range(count)
        ]
        values = [{"action_type": f"offsite_conversion.custom.{n}", "value": "1.00"} for n in range(count)]
        return {
            "date_start": str(day),
            "account_currency": "USD",
            "spend": "1.00",
            "actions": actions,
            "action_values": values,
        }

    def timed(raw: dict[str, Any], parse: Any, repeat: int) -> tuple[float, str]:
        seconds, outcome = [], ""
        for _ in range(repeat):
            started = time.perf_counter()
            try:
                outcome = f"{len(parse(raw, 'act_1', 'account', day, day).conversions):,} conversions"
            except MetaDataError as exc:
                outcome = f"refused: {str(exc)[:100]}"
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds), outcome

    huge, most = row(100_000), row(1_000)
    result: dict[str, Any] = {}
    result["100k_seconds"], result["100k_outcome"] = timed(huge, parse_insight_row, 21)
    result["1k_seconds"], result["1k_outcome"] = timed(most, parse_insight_row, 21)
    if before:
        import importlib.util

        source = subprocess.run(
            ["git", "-C", str(HERE.parent), "show", f"{BEFORE}:metaspend_pipeline/meta/parsing.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as file:
            file.write(source)
        spec = importlib.util.spec_from_file_location("parsing_before", file.name)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        os.unlink(file.name)
        result["100k_before_seconds"], result["100k_before_outcome"] = timed(huge, module.parse_insight_row, 3)
    return result


def run(before: bool = True, smoke: bool = False) -> dict[str, Any]:
    return {"feeds": feed_memory(before, smoke), "action_types": action_types(before)}


def report(result: dict[str, Any]) -> list[str]:
    lines = [
        "Peak RSS of a fresh process reading and parsing the feed (`fx.parse_feed(fx.read_feed(url))`), "
        "after its imports and at its peak; target: under 300 MB whatever the feed is.",
        "",
        "| feed | code | peak RSS | growth | seconds | outcome |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["feeds"]:
        lines.append(
            f"| {r['feed']} | {r['code']} | {r['peak_mb']:,.0f} MB | {r['peak_mb'] - r['start_mb']:,.0f} MB | "
            f"{r['seconds']:.1f} | {r['outcome'].replace('|', '/')} |"
        )
    a = result["action_types"]
    lines += [
        "",
        "One Meta row, `parse_insight_row` (median):",
        "",
        f"- 100,000 action types: {a['100k_seconds'] * 1000:.3f} ms, {a['100k_outcome']}",
        f"- 1,000 action types (the most accepted): {a['1k_seconds'] * 1000:.1f} ms, {a['1k_outcome']}",
    ]
    if "100k_before_seconds" in a:
        lines.append(
            f"- 100,000 action types before the cap: {a['100k_before_seconds']:.2f} s, {a['100k_before_outcome']}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", action="store_true", help="also measure the code before the fix")
    parser.add_argument("--smoke", action="store_true", help="a 64 MB bomb and a 20 MB file")
    args = parser.parse_args()
    print("\n".join(report(run(args.before, args.smoke))))


if __name__ == "__main__":
    main()
