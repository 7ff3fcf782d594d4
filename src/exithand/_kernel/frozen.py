"""``@dataclass(frozen=True)`` without importing :mod:`dataclasses`, for the start-up path.

The core's small value types (:class:`ExitStatus`, :class:`ProcessIdentity`, ...) are frozen
dataclasses, and the handles every command opens need them; but ``import dataclasses``
imports :mod:`inspect` (and with it ``ast``, ``dis``, ``tokenize``), which alone costs a shell
tool about as much as the bare interpreter's start.  Modules on that path write::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from dataclasses import dataclass    # what type checkers see: the real thing
    else:
        from ._record import dataclass       # what runs: this

and this :func:`dataclass` gives ``frozen=True`` classes what the core relies on: an
``__init__`` taking the annotated fields in order (positionally or by name, defaults from the
class body), ``__repr__``, ``__eq__`` and ``__hash__`` over the fields, ``__match_args__``,
assignment refused with :class:`FrozenInstanceError` (an ``AttributeError``, as dataclasses'),
``__post_init__`` called when defined.  Anything else (not frozen, ``field()``, other options)
is handed to the real :func:`dataclasses.dataclass`.  ``dataclasses.fields()``, ``asdict()`` and
``replace()`` do not apply to these classes; nothing in exithand uses them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

_MISSING = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


def dataclass(cls: Any = None, *, frozen: bool = False, **options: Any) -> Any:
    """``@dataclass(frozen=True)`` (see the module docstring); other uses go to dataclasses."""
    if not frozen or options or cls is not None:
        import dataclasses

        return dataclasses.dataclass(cls, frozen=frozen, **options)
    return _make_frozen


def _make_frozen(cls: type) -> type:
    fields: list[tuple[str, object]] = []
    for base in reversed(cls.__mro__[1:]):
        fields += [f for f in getattr(base, "__record_fields__", ()) if f[0] not in
                   {n for n, _ in fields}]
    for name, ann in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if "ClassVar" in str(ann):
            continue
        fields = [f for f in fields if f[0] != name]
        fields.append((name, cls.__dict__.get(name, _MISSING)))
    names = tuple(n for n, _ in fields)
    defaults = dict(fields)
    qualname = cls.__qualname__
    post_init: Callable[..., None] | None = getattr(cls, "__post_init__", None)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{qualname}.__init__() takes {len(names) + 1} positional "
                            f"arguments but {len(args) + 1} were given")
        values = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in defaults:
                raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument "
                                f"{k!r}")
            if k in values:
                raise TypeError(f"{qualname}.__init__() got multiple values for argument "
                                f"{k!r}")
            values[k] = v
        for n in names:
            if n not in values:
                if defaults[n] is _MISSING:
                    raise TypeError(f"{qualname}.__init__() missing required argument: {n!r}")
                values[n] = defaults[n]
            object.__setattr__(self, n, values[n])
        if post_init is not None:
            post_init(self)

    def _astuple(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in names)

    def __repr__(self: Any) -> str:
        return f"{qualname}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(_astuple(self) == _astuple(other))

    def __hash__(self: Any) -> int:
        return hash(_astuple(self))

    def __setattr__(self: Any, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    for fn in (__init__, __repr__, __eq__, __hash__, __setattr__, __delattr__):
        fn.__qualname__ = f"{qualname}.{fn.__name__}"
        own = cls.__dict__.get(fn.__name__)
        # a method the class body defines stays (as dataclasses does), except the three that
        # make the record; a __hash__ of None is Python's implicit one for a class with __eq__
        if own is None or fn.__name__ in ("__init__", "__setattr__", "__delattr__"):
            setattr(cls, fn.__name__, fn)
    setattr(cls, "__match_args__", names)  # noqa: B010  (mypy: a read-only name)
    cls.__record_fields__ = tuple(fields)  # type: ignore[attr-defined]
    return cls
