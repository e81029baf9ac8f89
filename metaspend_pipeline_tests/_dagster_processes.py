"""The real Dagster processes for end-to-end tests: started in their own process group on free
ports, talked to over GraphQL, stopped even when the test fails.

A process that dies fails the test at once with its log, instead of a wait until a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import requests

ROOT = Path(__file__).resolve().parents[1]
LOCATION = "metaspend_pipeline"  # pyproject.toml and workspace.yaml name the code location so
BIN = Path(sys.executable).parent

T = TypeVar("T")

REPOSITORY = """
query {
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name } schedules { name } assetNodes { assetKey { path } } }
    }
    ... on PythonError { message }
  }
}
"""
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
STATUS = """
query Status($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without the project's or Dagster's settings, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "METASPEND_", "DAGSTER_"))}
    env.update(values)
    return env


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc: Dagster's code servers run in process groups of their own."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process exited meanwhile
    found: list[int] = []
    frontier = [pid]
    while frontier:
        above = frontier.pop()
        children = [child for child, parent in parents.items() if parent == above]
        found += children
        frontier += children
    return found


def kill(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def crash(proc: subprocess.Popen) -> None:
    """SIGKILL the process, its group and everything below it, as a crashed machine would."""
    below = descendants(proc.pid)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    kill(below)
    proc.wait(timeout=30)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process's group, give it 10 s, then SIGKILL whatever is left of the group and
    of the processes below it (code servers and run workers outliving their parent)."""
    below = descendants(proc.pid)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    kill(below + descendants(proc.pid))
    proc.wait(timeout=30)


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} was not written)"


class Processes:
    """Processes started in their own sessions, each with a log file, stopped together."""

    def __init__(self, stack: ExitStack, directory: Path) -> None:
        self._stack = stack
        self._directory = directory
        self.running: dict[str, tuple[subprocess.Popen, Path]] = {}
        self._commands: dict[str, tuple[list[str], dict[str, str], Path]] = {}

    def start(self, name: str, args: list[str], env: Mapping[str, str], cwd: Path = ROOT) -> subprocess.Popen:
        log = self._directory / f"{name}.log"
        with log.open("a") as out:
            proc = subprocess.Popen(
                args, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._stack.callback(stop_process_group, proc)
        self.running[name] = (proc, log)
        self._commands[name] = (args, dict(env), cwd)
        return proc

    def crash_and_restart(self, name: str) -> subprocess.Popen:
        """SIGKILL the process and everything below it (the machine crashed), then start it again."""
        proc, _ = self.running.pop(name)
        crash(proc)
        return self.start(name, *self._commands[name])

    def check_alive(self) -> None:
        """Fail now, with the log, if a process has exited."""
        for name, (proc, log) in self.running.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with code {proc.returncode}; its log ends with:\n{tail(log)}")


class GraphQL:
    """The webserver's GraphQL endpoint; every call first checks that the processes are alive."""

    def __init__(self, port: int, processes: Processes) -> None:
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.processes = processes

    def __call__(self, query: str, **variables: object) -> dict:
        self.processes.check_alive()
        try:
            response = requests.post(self.url, json={"query": query, "variables": variables}, timeout=60)
        except requests.ConnectionError as exc:
            self.processes.check_alive()
            raise AssertionError(f"the webserver at {self.url} does not answer: {exc}") from None
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def wait_until_ready(self, timeout: float = 120) -> None:
        """Until the code location is loaded; a process that exits meanwhile fails at once."""
        deadline = time.monotonic() + timeout
        while True:
            self.processes.check_alive()
            try:
                body = requests.post(self.url, json={"query": REPOSITORY}, timeout=5).json()
                if body.get("data", {}).get("repositoriesOrError", {}).get("nodes"):
                    return
            except (requests.ConnectionError, requests.Timeout, ValueError):
                pass  # the webserver is still starting
            assert time.monotonic() < deadline, f"the webserver did not load {LOCATION} in {timeout} s"
            time.sleep(0.5)

    def run_status(self, run_id: str) -> str:
        return self(STATUS, runId=run_id)["runOrError"]["status"]

    def wait_for_run(self, run_id: str, timeout: float = 240) -> str:
        return wait_for(
            lambda: s if (s := self.run_status(run_id)) in FINISHED else None,
            timeout,
            f"run {run_id} to finish",
            self.processes.check_alive,
        )


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, check: Callable[[], None]) -> T:
    """Poll `condition` until it returns something other than None; `check` fails fast."""
    deadline = time.monotonic() + timeout
    while True:
        check()
        value = condition()
        if value is not None:
            return value
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.2)


@contextmanager
def dagster_dev(env: Mapping[str, str], directory: Path) -> Iterator[GraphQL]:
    """`dagster dev` from the repository root (webserver and daemon in one command)."""
    port = free_port()
    with ExitStack() as stack:
        processes = Processes(stack, directory)
        processes.start(
            "dagster_dev",
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            env,
        )
        graphql = GraphQL(port, processes)
        graphql.wait_until_ready()
        yield graphql


@contextmanager
def dg_dev(env: Mapping[str, str], directory: Path) -> Iterator[GraphQL]:
    """`dg dev` from the repository root, as the README starts the UI (webserver and daemon)."""
    port = free_port()
    with ExitStack() as stack:
        processes = Processes(stack, directory)
        processes.start("dg_dev", [str(BIN / "dg"), "dev", "-h", "127.0.0.1", "-p", str(port)], env)
        graphql = GraphQL(port, processes)
        graphql.wait_until_ready()
        yield graphql


@contextmanager
def webserver_and_daemon(env: Mapping[str, str], directory: Path) -> Iterator[GraphQL]:
    """`dagster-webserver` on 127.0.0.1 and `dagster-daemon run`, as deploy/README.md runs them."""
    port = free_port()
    with ExitStack() as stack:
        processes = Processes(stack, directory)
        processes.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env)
        processes.start(
            "webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
            env,
        )
        graphql = GraphQL(port, processes)
        graphql.wait_until_ready()
        yield graphql


# --- what an instance stored, for leak scans ------------------------------------------------------


def postgres_text(url: str) -> dict[str, str]:
    """Every table of a database as text, compressed columns (Dagster's snapshots) inflated."""
    import psycopg

    out: dict[str, str] = {}
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
        ).fetchall()
        for (table,) in tables:
            values: list[str] = []
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                values.extend(_text(v) for v in row)
            out[table] = "\n".join(values)
    return out


def _text(value: object) -> str:
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        with suppress(zlib.error):
            value = zlib.decompress(value)
        return value.decode("utf-8", errors="replace")
    return str(value)


def files_text(*directories: Path) -> dict[str, str]:
    """Every file under the directories (compute logs, storage, process logs), by path."""
    return {
        str(path): path.read_bytes().decode("utf-8", errors="replace")
        for directory in directories
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def leaks(texts: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """Where each secret appears: `name in place`; empty when none does."""
    return [f"{name} in {place}" for place, text in texts.items() for name, secret in secrets.items() if secret in text]
