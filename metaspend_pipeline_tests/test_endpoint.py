"""Where tokens and the app secret go: chosen by the environment only, never by run config."""

from __future__ import annotations

import dagster as dg
import pytest

from metaspend_pipeline.definitions import load
from metaspend_pipeline.settings import MetaApiSettings, SettingsError
from metaspend_pipeline_tests.bad_inputs import DAY, RUN_CONFIG_MESSAGE, RUN_CONFIG_VALUES
from metaspend_pipeline_tests.conftest import Listener, Pipeline


@pytest.mark.parametrize("job", ["meta_spend_job", "meta_token_refresh_job"])
@pytest.mark.parametrize("name", RUN_CONFIG_VALUES)
def test_launch_config_cannot_change_where_tokens_go(
    pipeline: Pipeline, listener: Listener, job: str, name: str
) -> None:
    value = listener.url if name == "graph_api_url" else "v26.0"
    run_config = {"resources": {"meta": {"config": {name: value}}}}
    tags = {"dagster/asset_partition_range_start": DAY, "dagster/asset_partition_range_end": DAY}
    with dg.instance_for_test() as instance, pytest.raises(dg.DagsterInvalidConfigError) as info:
        load().resolve_job_def(job).execute_in_process(
            run_config=run_config, instance=instance, tags=tags if job == "meta_spend_job" else None
        )
    assert RUN_CONFIG_MESSAGE.format(name=name) in str(info.value)
    assert listener.connections == 0
    listener.assert_records_what_reaches_it()


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
    listener.assert_records_what_reaches_it()


@pytest.mark.parametrize(
    "url", ["https://graph.facebook.com", "https://graph.facebook.com/", "https://graph.facebook.com:443"]
)
def test_production_accepts_meta_itself(url: str) -> None:
    settings = MetaApiSettings.from_env({"META_GRAPH_API_URL": url})
    assert settings.base_url == "https://graph.facebook.com/v26.0"


def test_development_accepts_the_sandbox_over_http() -> None:
    settings = MetaApiSettings.from_env({"METASPEND_ENV": "development", "META_GRAPH_API_URL": "http://127.0.0.1:8765"})
    assert settings.base_url == "http://127.0.0.1:8765/v26.0"
    with pytest.raises(SettingsError, match="refused outside METASPEND_ENV=development"):
        MetaApiSettings.from_env({"METASPEND_ENV": "staging", "META_GRAPH_API_URL": "http://127.0.0.1:8765"})
