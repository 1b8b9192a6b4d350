"""The project's one root error type, :class:`GrowthError`.

Why here: every error of the project must be able to derive from the root, and the packages depend on
each other in one direction only (``baselines`` -> ``growth`` -> ``search_spaces``). The root therefore
lives in the lowest layer, ``search_spaces``, so that ``UnknownSeedError`` (raised here) can derive from
it without ``search_spaces`` importing ``growth``. The module imports nothing (in particular not torch),
so that ``growth.config`` and the ``grow`` command line can import it and still answer ``--help`` at once.
Users see it as ``growth.GrowthError`` (the engine's public API) or ``search_spaces.GrowthError``.

Why this name: the distribution is the growth engine, and ``except growth.GrowthError`` reads as "any
error the engine raised on purpose". Every subclass keeps its other, built-in base (``ValueError``,
``KeyError``), so older ``except ValueError`` code keeps working.

Example:
    >>> import search_spaces
    >>> try:
    ...     search_spaces.get_genotype("resnet20-thn")
    ... except GrowthError as err:
    ...     print(type(err).__name__, isinstance(err, KeyError))
    UnknownSeedError True
"""

from __future__ import annotations

__all__ = ["FamilyError", "GrowthError"]


class GrowthError(Exception):
    """Bad input the user can fix from the message alone: a seed name, a config, data, a run directory,
    a command line. ``grow`` prints it as one line (``grow: error: ...``) with exit code 2; any other
    exception is a bug and keeps its traceback.

    The subclasses: ``search_spaces.UnknownSeedError`` (also a ``KeyError``), :class:`FamilyError`,
    ``growth.config.ConfigError``, ``growth.data.DataError``, ``growth.runstore.RunError`` (each also a
    ``ValueError``) and ``growth.cli.UsageError``.
    """


class FamilyError(GrowthError, ValueError):
    """A model family was asked for something it cannot do, e.g. ``cannot deepen a 'timm' model``
    (see :class:`search_spaces.family.Family`), or a block that its family's rule keeps."""


def first_line(err: BaseException, limit: int = 300) -> str:
    """An error's message as one line (its first, at most ``limit`` characters), or its type's name
    when it has no message: how an error is shown or recorded where one line is wanted.

    >>> first_line(ValueError("bad" + chr(10) + "more"))
    'bad'
    >>> first_line(KeyboardInterrupt())
    'KeyboardInterrupt'
    """
    lines = str(err).strip().splitlines()
    return lines[0][:limit] if lines else type(err).__name__
