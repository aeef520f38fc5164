"""Candle sources and candle checks.

Every source — CoinGecko (:mod:`market.coingecko`) and the bundled real data
(:mod:`market.sample`) — hands the same thing to the ingestion service: raw rows
(:class:`market.validation.RawCandle`) plus the rows it could not even parse, which then go
through the one set of checks in :mod:`market.validation` and come out as a
:class:`market.validation.CandleBatch`. Nothing here touches SQL (``race.store``) or the HTTP
API (``race.api``); storing a batch is :mod:`race.ingest`'s job.
"""
