"""Command line entry point: ``rlvr train | eval | compare | report | plan | verify | from-trl | bench |
rollout-server``.

Every sub-command is registered here, in ``COMMANDS``, and implemented in ``rlvr/commands/<name>.py``,
a module exposing ``add_arguments(parser)`` and ``run(args)``. Only the chosen one is imported, so
``rlvr verify`` never pays for importing torch models. The command modules parse and print; the work
is done by plain functions of ``rlvr``, ``evals`` and ``verifiers`` (which have no command line of
their own). The targets of ``rlvr bench`` are registered in :data:`rlvr.bench.BENCHMARKS`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from rlvr.bench import BENCHMARKS

# name -> (module, one-line help): every sub-command of ``rlvr``
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("rlvr.commands.train", "train a policy from a YAML recipe"),
    "eval": ("rlvr.commands.eval", "evaluate a model or checkpoint on a task"),
    "compare": ("rlvr.commands.compare", "run several presets over seeds with matched budgets"),
    "report": ("rlvr.commands.report", "render plots and an HTML/Markdown summary of a run directory"),
    "plan": ("rlvr.commands.plan", "seeds and held-out items a comparison needs, from pilot runs"),
    "verify": ("rlvr.commands.verify", "score completions against references with a verifier"),
    "from-trl": ("rlvr.commands.from_trl", "turn a TRL GRPOConfig (trl grpo --config YAML) into an rlvr recipe"),
    "bench": ("rlvr.commands.bench", "benchmarks: " + " | ".join(BENCHMARKS)),
    "rollout-server": ("rlvr.commands.rollout_server", "serve vLLM generation and weight updates to a remote trainer"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlvr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def command_parser(command: str) -> argparse.ArgumentParser:
    """The parser of one sub-command (``rlvr <command> ...``)."""
    module, help_ = COMMANDS[command]
    p = argparse.ArgumentParser(prog=f"rlvr {command}", description=help_)
    importlib.import_module(module).add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if command is None:
        parser = build_parser(None)
        parser.parse_args(argv)  # --help / unknown command messages
        parser.print_help()
        return 2
    # intermixed: dotted overrides may come before or after options
    # (``rlvr compare RECIPE --seeds 3 trainer.lr=1e-5``)
    parser = command_parser(command)
    if any(a.nargs == argparse.REMAINDER for a in parser._actions):
        args = parser.parse_args(argv[1:])  # the command passes the rest on (rlvr bench ...)
    else:
        args = parser.parse_intermixed_args(argv[1:])
    args.command = command
    from rlvr.errors import RlvrError
    from verifiers.errors import VerifierError

    try:
        rc = importlib.import_module(COMMANDS[command][0]).run(args)
    except (RlvrError, VerifierError) as e:  # user-facing errors: one line, no traceback
        print(f"rlvr {command}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
