"""Decision makers behind the core's one protocol (:mod:`race.domain.agent`)."""
