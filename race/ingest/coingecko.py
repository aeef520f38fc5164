"""Ingestion from CoinGecko: live (everything missing since each asset's last stored
candle) or a resumable backfill of a range (:mod:`race.ingest.coingecko_plan`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

from market.coingecko import (
    ChartData,
    CoinGeckoAuthError,
    CoinGeckoClient,
    CoinGeckoError,
    CoinGeckoUnavailable,
    FetchStep,
    OhlcData,
    OhlcStep,
    describe_steps,
    ohlc_batch,
    range_batch,
)
from market.validation import CandleBatch, log_batch
from race.bootstrap import App
from race.domain import jobs as status
from race.domain.model import Candle
from race.ingest.coingecko_plan import (
    AssetWork,
    CoinGeckoRun,
    job_advance,
    plan_asset,
    update_job,
    update_job_quietly,
)
from race.ingest.common import (
    IngestRequest,
    Progress,
    ProgressCallback,
    asset_failed,
    coingecko_config,
    log,
    log_run,
    select_assets,
)
from race.ingest.report import AssetReport, IngestReport
from race.ingest.storing import (
    Destination,
    check_against_history,
    finish_asset,
    reference,
    store_batch,
)
from race.logging_setup import log_context, new_correlation_id

_OUTAGE = "CoinGecko was unavailable for an earlier asset"


@dataclass(frozen=True)
class Fetching:
    """What every asset of a CoinGecko run is fetched with."""

    app: App
    run: CoinGeckoRun
    client: CoinGeckoClient
    progress: Progress


async def ingest_coingecko(
    app: App,
    *,
    symbols: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    on_progress: ProgressCallback | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> IngestReport:
    """Fetch candles from CoinGecko for the enabled assets (or ``symbols``).

    Without ``start``: live ingestion, everything missing since each asset's last stored
    candle (at most ``RACE_INGEST_LOOKBACK`` back) up to the last settled close (at least
    ``COINGECKO_SETTLE_SECONDS`` ago). With ``start`` (and ``end``, default now): a
    resumable backfill of candles closing in [start, end] (and settled).

    Per-asset failures (unknown coin id, CoinGecko unavailable after the retries, a
    malformed answer, an unexpected error storing the candles) are recorded on the report
    (``report.ok`` is False) and never leave half a chunk written; after an outage the
    remaining assets are not tried. A bad configuration or a refused key raises
    :class:`market.coingecko.CoinGeckoError`."""
    with log_context(correlation_id=new_correlation_id()):
        if end is not None and start is None:
            raise ValueError("an end needs a start (--start)")
        request = IngestRequest.of(app.settings, start, end)
        run = CoinGeckoRun(request, coingecko_config(app.settings), app.clock.now())
        return await _ingest(app, run, symbols, on_progress, transport)


async def _ingest(
    app: App,
    run: CoinGeckoRun,
    symbols: Sequence[str] | None,
    on_progress: ProgressCallback | None,
    transport: httpx.AsyncBaseTransport | None,
) -> IngestReport:
    request, plan = run.request, run.config.plan
    report = IngestReport(
        "coingecko", request.interval, run.now, start=request.start, end=request.end, plan=plan
    )
    assets = select_assets(app, symbols, report.notes)
    work = [plan_asset(app, run, asset) for asset in assets]
    progress = Progress(sum(len(w.plan.steps) for w in work), on_progress)
    with app.telemetry.span("race.ingest", source="coingecko", plan=plan):
        async with CoinGeckoClient(run.config, clock=app.clock, transport=transport) as client:
            fetching = Fetching(app, run, client, progress)
            outage: str | None = None
            for item in work:
                result = AssetReport(item.asset.symbol, source="coingecko", job_id=item.job_id)
                result.notes.extend(item.plan.notes)
                report.assets.append(result)
                with log_context(asset=item.asset.symbol, job_id=item.job_id):
                    if await _ingest_asset(fetching, item, result, outage):
                        outage = _OUTAGE
            report.calls = client.calls
    report.finished_at = app.clock.now()
    log_run(report)
    return report


async def _ingest_asset(
    fetching: Fetching, item: AssetWork, result: AssetReport, outage: str | None
) -> bool:
    """One asset, its failures recorded on ``result``. True when CoinGecko was unavailable
    for it; with an ``outage`` before it the asset is not tried."""
    app = fetching.app
    if outage is not None:
        result.error = f"not tried: {outage}"
        update_job(app, item.job_id, status.FAILED, result.error)
        return False
    unavailable = False
    try:
        unavailable = await _fetch_asset(fetching, item, result)
    except CoinGeckoAuthError:
        raise  # a refused key fails the whole run, at once
    except Exception as exc:  # one asset's failure never stops the others
        asset_failed(result, exc, "ingesting")
    try:
        finish_asset(app, item.asset, result, fetching.run.request.interval)
    except Exception as exc:  # one asset's failure never stops the others
        asset_failed(result, exc, "reading back the stored candles")
    return unavailable


async def _fetch_asset(fetching: Fetching, item: AssetWork, result: AssetReport) -> bool:
    """Fetch, check and store every step of ``item`` (one transaction per step). Returns
    True when CoinGecko was unavailable (the run then stops asking). The report's window
    (``first_close`` … ``last_close``, where gaps are looked for) is what was fetched and
    stored: nothing when the first step failed."""
    app, client, plan = fetching.app, fetching.client, item.plan
    if plan.steps:
        result.source = f"coingecko {describe_steps(plan.steps)}"
    else:
        result.notes.append(
            "up to date" if plan.first_close > plan.last_close else "nothing to fetch"
        )
        if item.job_id is not None:
            update_job(app, item.job_id, status.COMPLETED, None)
    calls_before = client.calls
    outage = False
    covered: datetime | None = None
    try:
        for index, step in enumerate(plan.steps, start=1):
            outage = await _fetch_step(fetching, item, step, index == len(plan.steps), result)
            if result.error is not None:
                update_job_quietly(app, item.job_id, status.FAILED, result.error)
                fetching.progress.advance(len(plan.steps) - index + 1)
                break
            covered = step.last_close
            fetching.progress.advance()
    finally:
        result.calls = client.calls - calls_before
        if covered is None:
            result.first_close = result.last_close = None
        else:
            result.first_close, result.last_close = plan.steps[0].first_close, covered
    return outage


async def _fetch_step(
    fetching: Fetching, item: AssetWork, step: FetchStep, last_step: bool, result: AssetReport
) -> bool:
    """Fetch one step and store it; an error is left on ``result``. True when CoinGecko was
    unavailable."""
    app, asset = fetching.app, item.asset
    try:
        data = await fetching.client.fetch(asset.coingecko_id, step, fetching.run.request.interval)
    except CoinGeckoAuthError as exc:
        update_job(app, item.job_id, status.FAILED, str(exc))
        raise
    except CoinGeckoUnavailable as exc:
        result.error = str(exc)
        log.error("%s: %s", asset.symbol, result.error)
        return True
    except CoinGeckoError as exc:
        result.error = str(exc)
        log.error("%s: %s", asset.symbol, result.error)
        return False
    try:
        _check_and_store(fetching, item, step, data, last_step, result)
    except Exception as exc:  # e.g. a value the column cannot hold
        asset_failed(result, exc, f"storing the candles of {step.describe()}")
    return False


def _check_and_store(
    fetching: Fetching,
    item: AssetWork,
    step: FetchStep,
    data: OhlcData | ChartData,
    last_step: bool,
    result: AssetReport,
) -> None:
    app, asset, request = fetching.app, item.asset, fetching.run.request
    before = reference(app, asset, step.first_close, request.interval)
    batch = _to_batch(data, step, asset.symbol, request, before)
    check_against_history(app, asset, batch, request.interval, request.history)
    log_batch(batch, f"coingecko {step.describe()}")
    result.absorb(batch)
    source = "coingecko:ohlc" if isinstance(step, OhlcStep) else "coingecko:range"
    advance_job = (
        job_advance(app, item, step.last_close, last_step) if item.job_id is not None else None
    )
    store_batch(app, Destination(asset, request.interval, source), batch, result, also=advance_job)


def _to_batch(
    data: OhlcData | ChartData,
    step: FetchStep,
    symbol: str,
    request: IngestRequest,
    before: Candle | None,
) -> CandleBatch:
    interval, limits = request.interval, request.limits
    if isinstance(step, OhlcStep):
        assert isinstance(data, OhlcData)
        return ohlc_batch(
            data, step, symbol=symbol, interval=interval, limits=limits, reference=before
        )
    assert isinstance(data, ChartData)
    return range_batch(
        data, step, symbol=symbol, interval=interval, limits=limits, reference=before
    )
