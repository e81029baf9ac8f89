"""Where tokens and the app secret go: chosen by the environment only, never by run config."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import dagster as dg
import pytest

from metaspend_pipeline.definitions import load
from metaspend_pipeline.settings import MetaApiSettings, SettingsError
from metaspend_pipeline_tests.bad_inputs import DAY, RUN_CONFIG_MESSAGE, RUN_CONFIG_VALUES
from metaspend_pipeline_tests.conftest import Pipeline


class Listener:
    """A TCP listener on 127.0.0.1 that records every byte anyone sends it."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.received: list[bytes] = []
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    self.received.append(conn.recv(65536))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def _listener_works(listener: Listener) -> None:
    """The control: the listener does record what reaches it, so "nothing received" means something."""
    with socket.create_connection(("127.0.0.1", int(listener.url.rsplit(":", 1)[1]))) as conn:
        conn.sendall(b"control")
    for _ in range(50):
        if listener.received:
            break
        threading.Event().wait(0.05)
    assert listener.received == [b"control"]


@pytest.mark.parametrize("job", ["meta_spend_job", "meta_token_refresh_job"])
@pytest.mark.parametrize("name", RUN_CONFIG_VALUES)
def test_launch_config_cannot_change_where_tokens_go(
    pipeline: Pipeline, listener: Listener, job: str, name: str
) -> None:
    value = listener.url if name == "graph_api_url" else "v21.0"
    run_config = {"resources": {"meta": {"config": {name: value}}}}
    tags = {"dagster/asset_partition_range_start": DAY, "dagster/asset_partition_range_end": DAY}
    with dg.instance_for_test() as instance, pytest.raises(dg.DagsterInvalidConfigError) as info:
        load().resolve_job_def(job).execute_in_process(
            run_config=run_config, instance=instance, tags=tags if job == "meta_spend_job" else None
        )
    assert RUN_CONFIG_MESSAGE.format(name=name) in str(info.value)
    assert listener.connections == 0
    _listener_works(listener)


def test_outside_development_a_run_refuses_another_endpoint(
    pipeline: Pipeline, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored tokens and the app secret are never sent to an endpoint production does not accept."""
    monkeypatch.setenv("METASPEND_ENV", "production")
    monkeypatch.setenv("META_GRAPH_API_URL", listener.url)
    monkeypatch.setenv("META_APP_ID", pipeline.sandbox.config.app_id)
    monkeypatch.setenv("META_APP_SECRET", pipeline.sandbox.config.app_secret)
    expected = (
        f"META_GRAPH_API_URL {listener.url!r} uses plain http, which is refused outside METASPEND_ENV=development"
    )
    with dg.instance_for_test() as instance:
        spend = pipeline.run(DAY, instance=instance)
        refresh = (
            load().resolve_job_def("meta_token_refresh_job").execute_in_process(instance=instance, raise_on_error=False)
        )
        for result in (spend, refresh):
            assert not result.success
            text = "\n".join(
                e.event_specific_data.error.to_string()
                for e in result.all_events
                if e.is_failure and getattr(e.event_specific_data, "error", None)
            )
            assert expected in text
            assert pipeline.sandbox.config.app_secret not in text
    assert listener.connections == 0
    _listener_works(listener)


@pytest.mark.parametrize(
    "url", ["https://graph.facebook.com", "https://graph.facebook.com/", "https://graph.facebook.com:443"]
)
def test_production_accepts_meta_itself(url: str) -> None:
    settings = MetaApiSettings.from_env({"META_GRAPH_API_URL": url})
    assert settings.base_url == "https://graph.facebook.com/v21.0"


def test_development_accepts_the_sandbox_over_http() -> None:
    settings = MetaApiSettings.from_env({"METASPEND_ENV": "development", "META_GRAPH_API_URL": "http://127.0.0.1:8765"})
    assert settings.base_url == "http://127.0.0.1:8765/v21.0"
    with pytest.raises(SettingsError, match="refused outside METASPEND_ENV=development"):
        MetaApiSettings.from_env({"METASPEND_ENV": "staging", "META_GRAPH_API_URL": "http://127.0.0.1:8765"})
