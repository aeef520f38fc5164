"""Read repositories: every SELECT behind the API, the leaderboard and the market reads,
with the storage encoding (SQLite's integer amounts and time text) decoded beside the SQL
that reads it. They return plain dataclasses and tuples; they never write."""
