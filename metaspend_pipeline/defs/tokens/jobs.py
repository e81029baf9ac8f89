"""Extending Meta tokens before they expire."""

import dagster as dg

from metaspend_pipeline import token_refresh
from metaspend_pipeline.defs.common.resources import MetaAdsResource
from metaspend_pipeline.redaction import redact
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage.db import utcnow


@dg.op(
    description="Extend every token that expires within META_TOKEN_REFRESH_WITHIN_DAYS (7) days.",
    pool="meta_api",
)
def refresh_meta_tokens(context: dg.OpExecutionContext, meta: MetaAdsResource) -> dg.Nothing:
    settings = Settings.from_env()
    if not (meta.api_settings.app_id and meta.api_settings.app_secret):
        raise dg.Failure(description="META_APP_ID and META_APP_SECRET are needed to extend tokens; set both")
    outcomes = token_refresh.refresh_tokens(
        meta.engine(), meta.keyring(), meta.client, utcnow(), settings.token_refresh_within_days
    )
    by_status: dict[str, list[str]] = {}
    for outcome in outcomes:
        by_status.setdefault(outcome.status, []).append(str(outcome))
        failed = outcome.status in (token_refresh.FAILED, token_refresh.NEEDS_REAUTH)
        (context.log.warning if failed else context.log.info)(redact(str(outcome)))
    context.add_output_metadata(
        {
            **{f"{status.lower()}": dg.MetadataValue.int(len(items)) for status, items in by_status.items()},
            "report": dg.MetadataValue.md("\n".join(f"- {o}" for o in outcomes) or "no stored tokens"),
        }
    )
    failed = by_status.get(token_refresh.FAILED, []) + by_status.get(token_refresh.NEEDS_REAUTH, [])
    if failed:
        raise dg.Failure(description="tokens not extended: " + "; ".join(failed))


@dg.job(description="Extend Meta tokens before they expire; accounts whose token Meta rejects become NEEDS_REAUTH.")
def meta_token_refresh_job() -> None:
    refresh_meta_tokens()
