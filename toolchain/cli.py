"""The ``toolchain`` command line: wires loaders, runners and comparators together.

Commands are imported lazily so ``toolchain --help`` works without torch or
TensorRT, and every :class:`~toolchain.errors.ToolchainError` becomes a single
line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import importlib
import importlib.util  # not implied by `import importlib`: a plain install crashed in --help
import sys

import click

from toolchain import __version__
from toolchain.errors import ToolchainError

# command name -> (module, attribute, one-line help shown by --help)
COMMANDS = {
    "summary": ("toolchain.commands.summary", "summary", "Per-layer shapes, parameters and FLOPs of a variant."),
    "train": ("toolchain.commands.train", "train", "Train a variant with the paper's recipe."),
    "evaluate": ("toolchain.commands.evaluate", "evaluate", "Top-1/top-5 of a checkpoint on a dataset."),
    "export": ("toolchain.commands.export", "export", "Export to ONNX with LRN as the plugin's custom op."),
    "quantize": ("toolchain.commands.quantize", "quantize", "Calibrate an INT8 Q/DQ ONNX (ONNX Runtime quantize_static)."),
    "parity": ("toolchain.commands.parity", "parity", "Compare a backend with eager PyTorch on the same inputs."),
    "plugin": ("toolchain.commands.plugin", "plugin", "Build and locate the LRN kernel and TensorRT plugin libraries."),
    "build": ("toolchain.commands.build", "build", "Build an FP16 TensorRT engine through the LRN plugin."),
    "benchmark": ("toolchain.commands.benchmark", "benchmark", "Time every backend in one harness."),
    "pipeline": ("toolchain.commands.pipeline", "pipeline", "Train, export, check, build and benchmark in one run."),
    "package": ("toolchain.commands.package", "package", "Write a Triton Inference Server model repository."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name, (module, _, _) in COMMANDS.items() if importlib.util.find_spec(module)]

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, attribute, _ = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return getattr(module, attribute)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="toolchain")
def cli():
    """PyTorch AlexNet with LRN -> ONNX -> FP16 TensorRT, with parity checks and benchmarks."""


def usage_line(exc: click.UsageError) -> str:
    """A usage error in one line: what was wrong, then where the options are described."""
    message = " ".join(exc.format_message().split())
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else "toolchain"
    return f"{message.rstrip('.')}; see '{path} --help'"


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="toolchain", standalone_mode=False)
    except ToolchainError as exc:
        click.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # click's own form takes four lines (usage, hint, blank, error)
        click.echo(f"error: {usage_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted; no output was left half-written", err=True)
        sys.exit(130)
    except OSError as exc:  # the last net: an OS error is the user's environment, not a bug
        where = f" {exc.filename}" if exc.filename else ""
        click.echo(f"error: cannot access{where}: {exc.strerror or exc}; check the path, the disk and its "
                   "permissions", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
