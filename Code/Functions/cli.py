"""``python -m Functions <command>``: one entry point, one module per command.

Each module in :mod:`Functions.commands` defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``.  Adding a command means
adding a module there; nothing here changes.

A :class:`~Functions.errors.UserError` (or a missing file) anywhere below a
command is printed as one line, ``error: ...``, with exit status 2 and no
traceback.  Ctrl-C exits with status 130.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from Functions.base.errors import UserError


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
        raise SystemExit(f"error: {message} (see `python -m Functions {self.prog.split()[-1]} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m Functions",
                     description="Medical-Image-Processing: train, evaluate and compare segmentation and "
                                 "classification models. `python -m Functions <command> --help` for details.")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        name = exc.filename or str(exc)
        print(f"error: file not found: {name}; check the path and try again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
