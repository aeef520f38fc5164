"""Fast paths for the domain's frozen values, which a replay builds thousands of a second.

* ``cached``: :func:`functools.cached_property` without the lock Python 3.11 takes on every
  first access (removed in 3.12 as a known bottleneck). The domain's values are built and
  read by one thread each, so the lock only cost time; computing a value twice in a race
  would give the same value anyway: every cached method is a pure function of a frozen
  object.
* :func:`assemble`: a frozen dataclass built without its per-field ``__setattr__``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class cached(Generic[T]):
    """A method computed on first access and stored in the instance's ``__dict__``: later
    reads find it there without calling the descriptor (a non-data descriptor)."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> T | cached[T]:
        if instance is None:
            return self
        value = self.func(instance)
        instance.__dict__[self.name] = value
        return value


def assemble(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of the frozen (non-slots) dataclass ``cls`` holding ``values``, which name
    every field: equal to ``cls(**values)``, without the generated ``__init__``'s
    ``object.__setattr__`` per field that a frozen dataclass pays (a decision record has 26:
    a tenth of a replay's deciding). Only for classes without ``__post_init__``; the caller's
    tests compare the result with ``cls(**values)``."""
    instance = object.__new__(cls)
    object.__setattr__(instance, "__dict__", values)
    return instance
