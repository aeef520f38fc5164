"""The one job-status vocabulary (race.domain.jobs): the words stored in ``jobs.status``
and the status a job takes after a step."""

from __future__ import annotations

from race.domain import jobs


def test_the_vocabulary_is_the_stored_words():
    assert jobs.STATUSES == ("queued", "running", "completed", "partial", "failed")
    assert set(jobs.UNFINISHED) | set(jobs.FINISHED) == set(jobs.STATUSES)
    assert not set(jobs.UNFINISHED) & set(jobs.FINISHED)


def test_a_job_runs_until_its_last_step_then_completes_or_is_partial():
    assert jobs.after_step(last_step=False, reached_end=False) == "running"
    assert jobs.after_step(last_step=False, reached_end=True) == "running"
    assert jobs.after_step(last_step=True, reached_end=True) == "completed"
    assert jobs.after_step(last_step=True, reached_end=False) == "partial"
