"""The step engine: runs a table of steps in order and keeps each one's record.

A step runs unless ``--skip`` names it, a step it needs did not run, or its requirement check gives a
reason (a CUDA GPU, TensorRT, nvcc missing here): then it is *skipped* with that reason. A step that
raises is *failed* (the error's one line; for a bug also the traceback) and the run goes on with what
does not depend on it. Skipped or not, every step records its equivalent ``toolchain ...`` command.
"""

from __future__ import annotations

import re
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.pipeline.command_line import command_line, plain


@dataclass(frozen=True)
class Step:
    """One row of the table. ``context`` is what the functions are given (the pipeline)."""

    name: str
    title: str | Callable[[Any, dict], str]  # or made from (context, args)
    command: str  # the toolchain subcommand that does the same, e.g. "plugin build"
    args: Callable[[Any], dict]  # that command's arguments by click parameter name, from the run so far
    run: Callable[[Any, StepResult, dict], None]  # the API call, given the same arguments
    needs: tuple[str, ...] = ()  # steps that must have run
    requires: Callable[[Any], str | None] | None = None  # why it cannot run here, or None


@dataclass
class StepResult:
    name: str
    title: str
    command: str
    args: dict = field(default_factory=dict)  # the command's arguments (JSON form), by click parameter name
    status: str = "skipped"
    reason: str | None = None
    error: str | None = None
    seconds: float = 0.0
    summary: str = ""
    outputs: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


class StepRunner:
    def __init__(self, *, skip=(), console, total: int):
        self.skip = tuple(skip)
        self.console = console
        self.total = total  # for the "i/N" progress line
        self.records: list[StepResult] = []
        self.root_reasons: dict[str, str] = {}  # step -> the first cause of its skip
        self.said: dict[str, str] = {}  # skip reason -> the step that gave it in full

    def result(self, name: str) -> StepResult | None:
        return next((s for s in self.records if s.name == name), None)

    def ran(self, name: str) -> bool:
        step = self.result(name)
        return step is not None and step.status == "ran"

    def run(self, step: Step, context) -> StepResult:
        """Evaluate the row against the run so far (its arguments, title and command line), then execute it."""
        args = step.args(context)
        title = step.title if isinstance(step.title, str) else step.title(context, args)
        record = StepResult(name=step.name, title=title, command=command_line(step.command, args),
                            args={name: plain(value) for name, value in args.items()})
        requires = step.requires
        return self.execute(record, lambda r: step.run(context, r, args), needs=step.needs,
                            requires=None if requires is None else lambda: requires(context))

    def _once(self, name: str, reason: str) -> str:
        """``reason`` in full the first time a step gives it; later its gist and the step that gave it in full
        (an environment reason carries an install hint, and several steps share it)."""
        first = self.said.setdefault(reason, name)
        if first == name:
            return reason
        gist = re.sub(r"\s*\([^()]*\)", "", reason.split("; ")[0]).strip()
        return f"{gist}; see step {first}"

    def execute(self, record: StepResult, fn: Callable[[StepResult], None], *, needs: tuple[str, ...] = (),
                requires: Callable[[], str | None] | None = None) -> StepResult:
        """Skip, run or fail ``record``'s step, keeping the bookkeeping (see the module docstring)."""
        name = record.name
        self.records.append(record)
        self.console.rule(f"[bold]{len(self.records)}/{self.total} {name}[/]: {record.title}", align="left")
        self.console.print(f"[dim]$ {record.command}[/]", highlight=False, soft_wrap=True)
        reason = None
        if name in self.skip:
            reason = "skipped by --skip"
        for dep in needs:
            if reason:
                break
            dep_step = self.result(dep)
            if dep_step is None or dep_step.status != "ran":
                if dep_step is None:
                    state = "did not run"
                elif dep_step.status == "failed":
                    state = "failed"
                else:  # carry the root cause along, so each skip says why on its own
                    root = self.root_reasons.get(dep, dep_step.reason)
                    state = f"was skipped ({root if root == 'skipped by --skip' else self._once(name, root)})"
                    record.details["root_reason"] = root
                reason = f"needs step {dep}, which {state}"
        if reason is None and requires is not None:
            reason = requires()
            if reason:
                record.details["skip_cause"] = reason  # in full, for the report and the dependents
                reason = self._once(name, reason)
        if reason:
            record.status, record.reason = "skipped", reason
            self.root_reasons[name] = record.details.get("root_reason") or record.details.get("skip_cause") or reason
            self.console.print(f"[yellow]skipped[/]: {reason}", highlight=False)
            return record
        started = time.perf_counter()
        try:
            fn(record)
            record.status = "ran"
        except MissingDependencyError as exc:  # found missing only while running (e.g. cmake)
            record.status, record.reason = "skipped", self._once(name, exc.one_line())
            record.details["skip_cause"] = self.root_reasons[name] = exc.one_line()
        except ToolchainError as exc:
            record.status, record.error = "failed", exc.one_line()
        except Exception as exc:  # a bug: keep going, keep the traceback for the report
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
            record.details["traceback"] = traceback.format_exc()
        record.seconds = time.perf_counter() - started
        if record.status == "ran":
            self.console.print(f"[green]ran[/] in {record.seconds:.1f} s" + (f": {record.summary}" if record.summary
                                                                             else ""), highlight=False)
        elif record.status == "skipped":
            self.console.print(f"[yellow]skipped[/]: {record.reason}", highlight=False)
        else:
            self.console.print(f"[bold red]FAILED[/] after {record.seconds:.1f} s: {record.error}", highlight=False)
        return record
