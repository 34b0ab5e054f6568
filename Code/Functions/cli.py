"""``python -m Functions <command>``: one entry point, one module per command.

Each module in :mod:`Functions.commands` defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``.  Adding a command means
adding a module there; nothing here changes.

A :class:`~Functions.errors.UserError` (or a missing file) anywhere below a
command is printed as one line, ``error: ...``, with exit status 2 and no
traceback.  Ctrl-C exits with status 130.  The library logs notices and progress on the
``"Functions"`` logger; :func:`configure_logging` shows its INFO lines plainly on stdout.

Fast, quiet failures: only the chosen command's module builds its arguments,
and no deep-learning backend is imported here.  :func:`Functions.base.quiet.install`
sets the backends' log variables and filters their start-up lines, so a
command that checks its arguments and paths before it imports Keras fails in
a fraction of a second with one line.  ``python -m Functions --verbose
<command>`` (or ``MIP_VERBOSE=1``) shows the backends' start-up lines.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from Functions.base.errors import UserError
from Functions.base.runs import flag_for


def _command_modules():
    from Functions import commands

    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line + exit 2, as everywhere else
        command = self.prog.split()[-1]
        where = "" if command == "Functions" else f"{command} "
        print(f"error: {message} (see `python -m Functions {where}--help`)", file=sys.stderr)
        raise SystemExit(2)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` only that command's arguments are built (the others list their help line)."""
    parser = _Parser(prog="python -m Functions",
                     description="Medical-Image-Processing: train, evaluate and compare segmentation and "
                                 "classification models. `python -m Functions <command> --help` for details.")
    parser.add_argument("--verbose", dest="show_backend_log", action="store_true",
                        help="show the deep-learning backends' start-up log lines (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        if command is None or mod.NAME == command:
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _chosen_command(argv: list[str]) -> str | None:
    """The command named in ``argv``: the first word that is not an option (None when there is none)."""
    return next((word for word in argv if not word.startswith("-")), None)


def user_message(exc: UserError) -> str:
    """The error as the command line shows it: a config field named by its flag (``--epochs``, ``--lr``)."""
    if exc.field is None:
        return str(exc)
    return f"{flag_for(exc.field)} {exc.detail}"


class _PlainLines(logging.Handler):
    """The library's ``"Functions"`` log as plain lines on the current ``sys.stdout`` (``warning: `` prefixed)."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        print(text, file=sys.stdout, flush=True)


def configure_logging(level: int = logging.INFO) -> None:
    """Show the ``"Functions"`` logger's INFO lines (progress, notices) plainly on stdout; idempotent."""
    logger = logging.getLogger("Functions")
    logger.setLevel(level)
    if not any(isinstance(h, _PlainLines) for h in logger.handlers):
        logger.addHandler(_PlainLines())
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    from Functions.base import quiet

    argv = sys.argv[1:] if argv is None else list(argv)
    command = _chosen_command(argv)
    verbose = "--verbose" in (argv[: argv.index(command)] if command else argv)
    quiet.install(verbose=verbose or quiet.verbose_requested())   # before anything can import a backend
    configure_logging()
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if command in argv:              # the command's own words (train tells the flags given from the defaults)
        args.command_argv = argv[argv.index(command) + 1:]
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        name = exc.filename or str(exc)
        print(f"error: file not found: {name}; check the path and try again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
