"""The `ceod` command: the parser is assembled from one module per command (ceod.pipeline.commands),
and every handler imports its stage lazily, so `ceod inspect` never loads torch."""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from ceod.contracts.errors import CeodError  # noqa: E402  (torch-free)
from ceod.pipeline.commands import MODULES  # noqa: E402  (torch-free: handlers import lazily)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ceod", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log INFO messages (stderr)")
    sub = p.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.register(sub)
    return p


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code = args.handler(args)
    except (CeodError, FileExistsError, FileNotFoundError, PermissionError) as exc:
        print(f"ceod {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        code = getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # `ceod inspect ... | head -1`: the reader is gone, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 141
    return _leave(code)

def _leave(code: int) -> int:
    """A command that ran under torchrun ends here, past the interpreter's teardown (see
    `exit_after_group`); looked up without importing torch, which `ceod inspect` never loads."""
    distributed = sys.modules.get("ceod.training.distributed")
    if distributed is not None:
        distributed.exit_after_group(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
