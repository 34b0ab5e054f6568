"""Loading a saved ``.keras`` model: the one place every command reads ``model.keras``.

A run's ``model.keras`` names the package's own classes (``BCEDiceLoss``,
``DiceCoefficient``, the U-Net blocks ...), registered with
``keras.saving.register_keras_serializable``.  Keras can only rebuild them
once their modules have been imported, which a fresh ``predict`` or
``evaluate`` process has not done yet.  :func:`load_keras_model` imports them
first, loads in safe mode (no Lambda layers, no arbitrary code), and turns
any failure into one :class:`~Functions.base.errors.UserError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from Functions.base.errors import UserError


def register_custom_objects() -> None:
    """Import the modules that register the package's Keras classes (layers, losses, metrics)."""
    from Functions import losses, models  # noqa: F401 - importing registers them
    from Functions.metrics import streaming  # noqa: F401


def load_keras_model(path: str | os.PathLike, *, compile: bool = False, flag: str = "--model"):
    """The Keras model in the ``.keras`` file ``path``, loaded in safe mode after :func:`register_custom_objects`.

    ``compile=False`` (the default) skips the loss, metrics and optimizer:
    prediction needs none of them.  A missing or unreadable file is a
    :class:`UserError` naming it after ``flag``.
    """
    import keras

    register_custom_objects()
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{flag} {path} does not exist; pass the model.keras file of a training run")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load means the same thing to a user
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{flag} {path} could not be loaded as a Keras model ({reason}); pass the model.keras "
                        "written by training (a complete, uncorrupted file)") from None
