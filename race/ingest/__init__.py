"""Ingestion: candles from CoinGecko or from the bundled sample into the candles table.

Both paths run the same checks (:mod:`market.validation`) and the same store step
(:mod:`race.ingest.storing`):

* a candle already stored with the same values is ``unchanged`` (re-running is a no-op);
* a candle already stored with other values is a ``conflict``: logged and counted, the
  stored (closed) candle is kept — never a silent overwrite;
* a candle still open at fetch time — or closed less than ``COINGECKO_SETTLE_SECONDS``
  before it (CoinGecko's caches may still be building it) — is never stored;
* ``volume`` is base-asset volume within the candle and ``quote_volume_24h`` CoinGecko's
  rolling 24 h USD volume at the close; each stays NULL when unknown, never a fake 0;
* new candles go in with one bulk ``INSERT … ON CONFLICT DO NOTHING`` per batch;
* one asset's failure (an API error, or an unexpected store error such as a value the
  column cannot hold) is recorded on its report; the other assets are still ingested.

Every run logs under its own ``correlation_id`` (:func:`race.logging_setup.log_context`),
on the ``race.ingest`` logger.

:func:`ingest_sample` (:mod:`race.ingest.sample`) records each bundled file it loaded in a
``jobs`` row of kind ``sample`` (:mod:`race.ingest.sample_files`): a later run skips a file
whose fingerprint is unchanged and whose candles are all still stored.

:func:`ingest_coingecko` (:mod:`race.ingest.coingecko`) without ``start`` is live
ingestion (the 5-minute timer): for each enabled asset it fetches what is missing since
the last stored candle (at most ``RACE_INGEST_LOOKBACK`` back). With ``start`` it is a
backfill: the range is split into the chunks the API allows, paced, and tracked in a
``jobs`` row (:mod:`race.ingest.coingecko_plan`) whose cursor advances in the same
transaction as each chunk's candles, so an interrupted run resumes where it stopped. Job
statuses are :mod:`race.domain.jobs`' vocabulary (a finished job is ``completed``).

Every SQL statement is in :mod:`race.store` (``candles``, ``jobs``).
"""

from __future__ import annotations

from market.coingecko import CoinGeckoConfigError
from race.ingest.coingecko import ingest_coingecko
from race.ingest.common import (
    ProgressCallback,
    coingecko_config,
    history_limits,
    max_retry_after,
    validation_limits,
)
from race.ingest.common import check_range as _check_range
from race.ingest.report import AssetReport, IngestReport
from race.ingest.sample import ingest_sample

__all__ = [
    "AssetReport",
    "CoinGeckoConfigError",
    "IngestReport",
    "ProgressCallback",
    "_check_range",
    "coingecko_config",
    "history_limits",
    "ingest_coingecko",
    "ingest_sample",
    "max_retry_after",
    "validation_limits",
]
