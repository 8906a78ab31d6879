"""The ``toolchain ...`` command line of a pipeline step, written from the click command itself.

A step holds its command's arguments as a dict keyed by click parameter names, with the values the
command's function would receive. The line is written by walking that command's parameters, so a
renamed or removed flag raises here (and in the round-trip test) instead of drifting from the CLI.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click


def cli_command(path: str) -> click.Command:
    """``"plugin build"`` -> the click command that ``toolchain plugin build`` runs."""
    from toolchain.cli import cli

    command: click.Command = cli
    ctx = click.Context(cli, info_name="toolchain")
    for name in path.split():
        found = command.get_command(ctx, name) if isinstance(command, click.Group) else None
        if found is None:
            raise ValueError(f"toolchain has no command {path!r}")
        command = found
    return command


def plain(value):
    """A value in the form JSON keeps and click's parsing gives back (Path -> str, tuple -> list)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _word(value) -> str:
    # A list given to a single-valued option is the toolchain's comma-separated form (--batch-sizes 1,8).
    return shlex.quote(",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))


def _option_words(param: click.Option, value) -> list[str]:
    flag = next((opt for opt in param.opts if opt.startswith("--")), param.opts[0])
    if param.is_flag:
        if value:
            return [flag]
        off = next((opt for opt in param.secondary_opts if opt.startswith("--")), None)
        if off is None:
            raise ValueError(f"{flag} is a flag without an off form, so it cannot be given {value!r}")
        return [off]
    return [word for item in (value if param.multiple else [value]) for word in (flag, _word(item))]


def command_line(path: str, args: dict) -> str:
    """``toolchain PATH ...`` that calls the command with ``args``: parameters in the command's order, each
    option by its first long flag, a ``multiple`` option once per value, values shell-quoted; ``None`` and
    values equal to the default are left out. Raises ValueError for a name that is not a parameter of
    the command, or a required parameter without a value (a bug in the step table, not the user's)."""
    command = cli_command(path)
    unknown = sorted(set(args) - {param.name for param in command.params})
    if unknown:
        raise ValueError(f"toolchain {path} has no parameter {', '.join(unknown)}")
    ctx = click.Context(command, info_name=path)
    words = ["toolchain", *path.split()]
    for param in command.params:
        value = args.get(param.name)
        if value is None or (param.multiple and not value):
            if param.required:
                raise ValueError(f"toolchain {path} needs a value for {param.name}")
            continue
        if isinstance(param, click.Argument):
            words.append(_word(value))
        elif param.required or plain(value) != plain(param.process_value(ctx, param.get_default(ctx))):
            words += _option_words(param, value)
    return " ".join(words)
