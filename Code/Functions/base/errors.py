"""One exception type for mistakes a user can fix.

Anything raised as :class:`UserError` is printed by the command line as a
single line (``error: ...``) with exit status 2 and no traceback.  The
message must name the file or argument at fault and say how to fix it.
"""

from __future__ import annotations


class UserError(Exception):
    """A bad argument, file or folder; the message names it and the fix."""

    def __init__(self, message: str):
        # Keep it to one line: the CLI prints exactly this.
        super().__init__(" ".join(str(message).split()))


def require(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)
