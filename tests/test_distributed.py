"""Data-parallel training: the pure decisions, and real 2-process gloo runs on the CPU."""

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
import torch

from toolchain.distributed import (
    SINGLE,
    Launch,
    backend_for,
    batch_plan,
    is_peer_failure,
    launch_from_env,
    lost_peers,
    lr_factor,
    metrics_from_sums,
    shard_indices,
    sigterm_as_error,
    state_digest,
)
from toolchain.errors import ToolchainError
from toolchain.train import rank_device, rank_seed

RUN_FILES = {"model.safetensors", "model.json", "last.safetensors", "last.json", "history.json", "train_state.pt"}


# --- decisions -------------------------------------------------------------------------------------------------


def test_launch_is_read_from_torchrun_environment():
    assert launch_from_env({}) == SINGLE and not SINGLE.distributed
    launch = launch_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert launch == Launch(rank=3, world_size=4, local_rank=1) and launch.distributed
    assert not launch_from_env({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}).distributed
    with pytest.raises(ToolchainError, match="only RANK"):
        launch_from_env({"RANK": "0"})
    with pytest.raises(ToolchainError, match="integers"):
        launch_from_env({"RANK": "a", "WORLD_SIZE": "2"})
    with pytest.raises(ToolchainError, match="does not fit"):
        launch_from_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_backend_and_device_per_rank():
    assert backend_for("cpu") == "gloo" and backend_for("cuda") == "nccl"
    cpu = torch.device("cpu")
    assert rank_device(cpu, 1, 2, 0) == cpu
    assert rank_device(torch.device("cuda"), 1, 2, 2) == torch.device("cuda", 1)
    assert rank_device(torch.device("cuda", 0), 0, 1, 1) == torch.device("cuda", 0)  # one process: as asked
    with pytest.raises(ToolchainError, match="LOCAL_RANK 1"):
        rank_device(torch.device("cuda", 0), 1, 2, 2)
    with pytest.raises(ToolchainError, match="has no GPU"):
        rank_device(torch.device("cuda"), 2, 3, 2)


def test_batch_plan_and_learning_rate_rule():
    plan = batch_plan(32, 4, lr=0.01, rule="linear")
    assert plan["batch_size_per_rank"] == 32 and plan["global_batch_size"] == 128
    assert plan["lr"] == pytest.approx(0.04) and plan["lr_rule"] == "linear" and plan["base_lr"] == 0.01
    assert batch_plan(32, 4, lr=0.01, rule="none")["lr"] == 0.01
    single = batch_plan(32, 1, lr=0.01, rule="linear")
    assert single["lr"] == 0.01 and single["global_batch_size"] == 32  # one process: as before
    # Resuming a 4-process run (global 128) on 2 processes (global 64) halves the learning rate.
    assert lr_factor("linear", 64, 128) == 0.5 and lr_factor("none", 64, 128) == 1.0
    with pytest.raises(ToolchainError, match="unknown learning-rate rule"):
        lr_factor("sqrt", 64, 128)
    with pytest.raises(ToolchainError, match="at least 1"):
        batch_plan(0, 2, lr=0.01, rule="linear")


def test_shards_cover_the_split_once_and_their_sums_give_the_whole_split_metrics():
    n, world = 11, 3
    shards = [shard_indices(n, rank, world) for rank in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(n))
    correct = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1])
    losses = torch.linspace(0.1, 1.1, n, dtype=torch.float64)
    sums = [0.0, 0.0, 0.0, 0.0]
    for shard in shards:
        part = [float(losses[shard].sum()), float(correct[shard].sum()), float(len(shard)), float(len(shard))]
        sums = [a + b for a, b in zip(sums, part)]
    metrics = metrics_from_sums(*sums)
    assert metrics["samples"] == n and metrics["top1"] == pytest.approx(7 / 11) and metrics["top5"] == 1.0
    assert metrics["loss"] == pytest.approx(float(losses.mean()))
    with pytest.raises(ToolchainError, match="empty"):
        metrics_from_sums(0.0, 0, 0, 0)


def test_ranks_draw_different_augmentations_and_digest_sees_one_changed_weight():
    assert len({rank_seed(0, rank, 0) for rank in range(8)} | {rank_seed(0, 0, 1)}) == 9
    model = torch.nn.Linear(3, 2)
    before = state_digest(model)
    assert state_digest(model) == before
    with torch.no_grad():
        model.weight[0, 0] += 1e-6
    assert state_digest(model) != before


def test_only_process_group_failures_become_the_lost_peers_error():
    gloo = RuntimeError("[/src/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:5862. more")
    assert is_peer_failure(gloo) and is_peer_failure(torch.distributed.DistBackendError("x"))
    assert not is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_peer_failure(torch.OutOfMemoryError("CUDA out of memory; NCCL"))
    assert not is_peer_failure(ValueError("timed out"))
    message = lost_peers("training epoch 3", gloo).one_line()
    assert "training epoch 3" in message and "(Connection closed by peer" in message and "--resume" in message


def test_sigterm_from_torchrun_becomes_a_one_line_error_and_the_handler_is_restored():
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ToolchainError, match="SIGTERM"):
        with sigterm_as_error():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    assert signal.getsignal(signal.SIGTERM) is before


# --- two real processes over gloo -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join_env(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)


def _train_rank(rank: int, world: int, port: int, workdir: str, report: str, config: dict) -> None:
    """One rank of a run; each rank works in its own folder, so anything rank 1 wrote would show."""
    from toolchain.train import TrainConfig, run_training

    _join_env(rank, world, port)
    os.chdir(workdir)
    try:
        result = run_training(TrainConfig(**config))
        outcome = {"digest": state_digest(result.model), "metrics": result.metrics, "rank": result.rank,
                   "world_size": result.world_size}
    except ToolchainError as exc:
        outcome = {"error": exc.one_line()}
    except BaseException:  # noqa: BLE001 - reported to the test, which shows it
        outcome = {"crash": traceback.format_exc()}
    Path(report).write_text(json.dumps(outcome))


def _killed_rank(rank: int, world: int, port: int, workdir: str, report: str, config: dict) -> None:
    """A rank killed while it trains (a crashed node, the OOM killer)."""
    threading.Timer(6.0, lambda: os._exit(1)).start()
    _train_rank(rank, world, port, workdir, report, config)


def _hung_rank(rank: int, world: int, port: int, workdir: str, report: str, config: dict) -> None:
    """A rank that joins the process group and then never takes part in a collective."""
    from toolchain.distributed import launch_from_env, start

    _join_env(rank, world, port)
    start(launch_from_env(), "cpu", timeout_s=config["dist_timeout"])
    time.sleep(120)


def _launch(tmp_path: Path, config: dict, targets) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    port, world = _free_port(), len(targets)
    procs, reports = [], []
    for rank, target in enumerate(targets):
        workdir = tmp_path / f"rank{rank}"
        workdir.mkdir()
        reports.append(tmp_path / f"report{rank}.json")
        procs.append(ctx.Process(target=target, args=(rank, world, port, str(workdir), str(reports[-1]), config)))
    for proc in procs:
        proc.start()
    procs[0].join(timeout=240)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
        proc.join()
    outcomes = [json.loads(report.read_text()) if report.exists() else None for report in reports]
    for outcome in outcomes:
        assert outcome is None or "crash" not in outcome, outcome["crash"]
    return outcomes


def _config(**overrides) -> dict:
    return {"variant": "paper", "dataset": "synthetic", "epochs": 2, "out_dir": "run", "device": "cpu",
            "progress": False, "seed": 0, "dist_timeout": 60.0, **overrides}


@pytest.mark.slow
def test_two_gloo_processes_train_identical_replicas_and_only_rank0_writes(tmp_path):
    from toolchain.evaluate import evaluate_checkpoint
    from toolchain.train import TrainConfig, run_training

    outcomes = _launch(tmp_path, _config(), [_train_rank, _train_rank])
    assert all(outcome and "digest" in outcome for outcome in outcomes), outcomes
    # The DDP invariant: every replica ends with the same weights, and they agree on the metrics.
    assert outcomes[0]["digest"] == outcomes[1]["digest"]
    assert outcomes[0]["metrics"]["val_top1"] == outcomes[1]["metrics"]["val_top1"]
    assert [o["rank"] for o in outcomes] == [0, 1] and outcomes[0]["world_size"] == 2

    run = tmp_path / "rank0" / "run"
    assert {p.name for p in run.iterdir()} == RUN_FILES  # no per-rank or temporary files
    assert list((tmp_path / "rank1").iterdir()) == []  # rank 1 wrote nothing
    meta = json.loads((run / "model.json").read_text())
    assert (meta["world_size"], meta["backend"]) == (2, "gloo")
    assert (meta["batch_size_per_rank"], meta["global_batch_size"], meta["lr_rule"]) == (32, 64, "linear")
    assert meta["lr"] == pytest.approx(0.02)
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2] and all(row["replicas_identical"] for row in history)
    assert history[0]["val"]["samples"] == 120  # the whole validation split, each sample once
    last = torch.load(run / "train_state.pt", weights_only=True)["model"]
    assert state_digest(_module_with(last)) == outcomes[0]["digest"]

    evaluated = evaluate_checkpoint(run / "model.safetensors", device="cpu")
    assert evaluated["top1"] == pytest.approx(meta["metrics"]["val_top1"])
    assert evaluated["top1"] == pytest.approx(outcomes[0]["metrics"]["val_top1"])

    # --resume with a different world size: one process continues rank 0's state; the linear rule halves the LR.
    resumed = run_training(TrainConfig(**_config(epochs=3, out_dir=str(run), resume=True)))
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert resumed.history[2]["lr"] == pytest.approx(history[1]["lr"] / 2)
    assert json.loads((run / "last.json").read_text())["world_size"] == 1


def _module_with(state: dict):
    module = torch.nn.Module()
    module.state_dict = lambda: state  # state_digest reads only state_dict()
    return module


@pytest.mark.slow
@pytest.mark.parametrize("failure", [_killed_rank, _hung_rank], ids=["killed", "hung"])
def test_a_failed_rank_stops_the_others_with_one_line(tmp_path, failure):
    started = time.monotonic()
    outcomes = _launch(tmp_path, _config(dist_timeout=5.0, epochs=4), [_train_rank, failure])
    assert time.monotonic() - started < 120
    assert outcomes[0] is not None and "error" in outcomes[0], outcomes
    message = outcomes[0]["error"]
    assert "\n" not in message and "data-parallel training stopped" in message and "--resume" in message
    run = tmp_path / "rank0" / "run"
    assert not run.exists() or not ({p.name for p in run.iterdir()} - RUN_FILES)  # nothing half-written


def _torchrun(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "toolchain", "train", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_torchrun_cli_prints_one_result_and_refuses_to_overwrite_on_every_rank(tmp_path):
    """The user's path: `torchrun --nproc-per-node 2 -m toolchain train`."""
    args = ("--dataset", "synthetic", "--epochs", "1", "--out", "run", "--quiet")
    first = _torchrun(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)  # one JSON document: only rank 0 prints its result
    assert result["checkpoint"] == str(Path("run") / "model.safetensors")
    assert {p.name for p in (tmp_path / "run").iterdir()} == RUN_FILES
    assert json.loads((tmp_path / "run" / "model.json").read_text())["world_size"] == 2
    before = (tmp_path / "run" / "model.safetensors").read_bytes()

    again = _torchrun(*args, cwd=tmp_path)  # rank 0's refusal reaches every rank
    errors = [line for line in again.stderr.splitlines() if line.startswith("error: ")]
    assert again.returncode != 0 and len(errors) == 2, again.stderr
    assert all("already exists" in line and "--force" in line for line in errors)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
