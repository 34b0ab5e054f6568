"""One exception type for mistakes a user can fix.

:class:`UserError` is a :class:`ValueError`, so a notebook can catch it with
``except ValueError`` as well.  The command line prints it as a single line
(``error: ...``) with exit status 2 and no traceback.  The message names the
file or setting at fault and says how to fix it.

When the fault is one setting of a config (``TrainConfig.epochs``, say), the
error carries that field's name in :attr:`UserError.field` and its message
starts with the field name (``epochs must be at least 1, got 0``).  The
command line shows the flag instead (``--epochs must be at least 1, got 0``)
through one table of field -> flag names (:mod:`Functions.commands.options`).
"""

from __future__ import annotations


class UserError(ValueError):
    """A bad argument, file or folder; the message names it and the fix.

    ``field``: the config field at fault, when there is one; the message then
    reads ``"<field> <message>"``.
    """

    def __init__(self, message: str, *, field: str | None = None):
        self.field = field
        self.detail = " ".join(str(message).split())     # one line: the CLI prints exactly this
        super().__init__(self.detail if field is None else f"{field} {self.detail}")

    def __reduce__(self):                                 # picklable across worker processes
        return (_rebuild, (self.detail, self.field))


def _rebuild(detail: str, field: str | None) -> UserError:
    return UserError(detail, field=field)
