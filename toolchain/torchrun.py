"""``toolchain-torchrun`` (or ``python -m toolchain.torchrun``): torchrun with one-line failures.

It takes torchrun's arguments unchanged. When a worker fails, each rank has already
printed its own one-line ``error: ...``; torchrun itself would then print a Python
traceback and a failure table. This launcher prints one line instead: which rank
failed first, how, and what to do. Successful runs behave exactly like torchrun.
"""

from __future__ import annotations

import logging
import signal
import sys


def failure_line(rank: int, exitcode: int, failed: int) -> str:
    """The one line for a failed launch (pure): the first failed rank, its exit code or signal."""
    if exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited with code {exitcode}"
    others = f"; {failed - 1} other worker(s) stopped with it" if failed > 1 else ""
    return (f"error: data-parallel run failed: rank {rank} {how}{others}; fix what that rank reported above, "
            "then rerun (toolchain train --resume continues a run)")


def main(argv: list[str] | None = None) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The agent's own "failed (exitcode: ...)" log line says what failure_line says.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        print(failure_line(rank, failure.exitcode, len(exc.failures)), file=sys.stderr)
        sys.exit(failure.exitcode if 0 < failure.exitcode < 256 else 1)
    except KeyboardInterrupt:
        print("error: interrupted; no output was left half-written", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
