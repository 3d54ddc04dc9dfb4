"""Training that survives what clusters do to it (issue 14): ``kill -9`` at many points (before the
first checkpoint, inside checkpoint writes and swaps), SIGTERM / SIGINT / SIGUSR1, a full disk,
damaged or tampered files, and a torchrun elastic restart after a process died.

The kills land exactly where a test wants them through the HQVAE_FAULT_INJECT hook
(hqvae/faults.py). Every resumed run must end with the parameters of the uninterrupted run, bit
for bit, and no checkpoint left in place may be unreadable."""
from __future__ import annotations

import errno
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import hqvae
import hqvae.io
import hqvae.models.pretrained
from hqvae import faults
from hqvae.cli import main
from hqvae.train import checkpoint
from hqvae.train.tokenizer import train
from hqvae.train.run_dir import RunDir
from test_train import (REPO, Crash, assert_bitwise_equal, crash_at_step, image_folder,  # noqa: F401 (fixture)
                        last_weights, tiny_config, tiny_overrides)

STEPS, EVERY = 40, 10  # checkpoints (and validation) at 10, 20, 30, 40; train records every 5 steps
# a τ schedule that does not depend on the budget, so that a run extended from 10 to 40 steps is the 40-step run
SETTINGS = {"model.overrides": "{hidden: 16, codebook_size: 16, dim: 8}", "train.log_every": 5,
            "train.val_every": EVERY, "train.checkpoint_every": EVERY,
            "temperature.decay": 7e-5}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One thread (identical numerics in this process and in the killed subprocesses), and the
    fault hook's counts reset for runs in this process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(faults, "_reached", Counter())
    yield
    torch.set_num_threads(threads)


def command(image_folder: Path, out: Path, steps: int = STEPS) -> list[str]:
    """The command line a scheduler would submit, again and again: ``--resume auto``."""
    return ["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out", str(out),
            "--resume", "auto", *tiny_overrides(image_folder, "sqvae2", steps, **SETTINGS)]


def on_one_thread(args: list[str]) -> None:
    """``hqvae <args>`` in this process on one thread (module fixtures run before ``one_thread``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(image_folder, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    on_one_thread(command(image_folder, out))
    return out


def run_with_hook(args: list[str], spec: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), faults.ENV: spec}
    return subprocess.run([sys.executable, "-m", "hqvae", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def unreadable_checkpoints(out: Path) -> list[str]:
    """The checkpoint folders in place that do not load (weights; and the train state of last)."""
    run, bad = RunDir(out), []
    for which in ("best", "last"):
        if run.checkpoint(which).exists():
            try:
                hqvae.from_pretrained(run.checkpoint(which))
                if which == "last":
                    checkpoint.load_train_state(run)
            except Exception as error:
                bad.append(f"{which}: {error}")
    return bad


def assert_same_run(reference: Path, out: Path) -> None:
    assert RunDir(out).read_info().status == "finished"
    assert_bitwise_equal(last_weights(reference), last_weights(out))
    assert_bitwise_equal(load_file(reference / "checkpoints/best/model.safetensors"),
                         load_file(out / "checkpoints/best/model.safetensors"))
    assert not list((out / "checkpoints").glob(".*")) and not list(out.glob(".*.tmp"))


# ---------------------------------------------------------------------------------------- kill -9

# every kind of moment of a 40-step run: a step before the first checkpoint (1-10) or after it, the
# n-th atomic file write of the process (1: run.json at the start; 2-6: staged best and last at step
# 10; 7: run.json; then 6 more per checkpoint with a new best, 4 without: in the reference run
# 9, 12, 15 and 24 are checkpoint files, 19 is run.json), the n-th checkpoint swap (old folder
# moved aside, new one not yet in place; 1, 3, 5: last at steps 20, 30, 40; 2: best at step 20)
KILL_POINTS = ["step:1", "step:4", "step:9", "step:10", "step:11", "step:16", "step:20", "step:27", "step:33",
               "step:40", "write:1", "write:2", "write:4", "write:6", "write:7", "write:9", "write:12",
               "write:15", "write:19", "write:24", "swap:1", "swap:2", "swap:3", "swap:5"]


def kill_and_resume(image_folder: Path, reference: Path, out: Path, points: list[str]) -> list[str]:
    """Run the command once per kill point (each one killed there), then once more to the end;
    returns the unreadable checkpoints seen after the kills (asserting the end matches)."""
    unreadable = []
    for point in points:
        killed = run_with_hook(command(image_folder, out), point)
        assert killed.returncode == -signal.SIGKILL, f"{point} was not reached: {killed.stderr[-2000:]}"
        unreadable += unreadable_checkpoints(out)
    assert main(command(image_folder, out)) == 0
    assert_same_run(reference, out)
    return unreadable


def test_kill_9_before_the_first_checkpoint_inside_a_write_and_a_swap(image_folder, reference, tmp_path):
    """One run killed three times over (fast variant of the test below): at step 3, while writing
    its first checkpoint, and half-way through the swap of its second."""
    assert kill_and_resume(image_folder, reference, tmp_path / "run", ["step:3", "write:6", "swap:1"]) == []


@pytest.mark.slow
def test_kill_9_at_24_points_resumes_bitwise_and_leaves_no_unreadable_checkpoint(image_folder, reference, tmp_path,
                                                                               capsys):
    exact, unreadable = 0, []
    start = time.perf_counter()
    for n, point in enumerate(KILL_POINTS):
        unreadable += kill_and_resume(image_folder, reference, tmp_path / f"run{n}", [point])
        exact += 1
    with capsys.disabled():
        print(f"\nkill -9 points tried: {len(KILL_POINTS)}, resumed bit-exactly: {exact}, unreadable checkpoints: "
              f"{len(unreadable)} ({time.perf_counter() - start:.0f} s)")
    assert unreadable == [] and exact == len(KILL_POINTS) >= 20


def test_resume_of_a_run_without_a_checkpoint_starts_it_over(image_folder, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        crash_at_step(patch, 3)
        with pytest.raises(Crash):
            main(command(image_folder, out))
    assert RunDir(out).exists() and not RunDir(out).checkpoint("last").exists()
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume"]) == 0  # plain --resume: the stored config
    assert "has no checkpoint yet" in capsys.readouterr().err
    assert_same_run(reference, out)
    assert RunDir(out).read_info().resumed_at_steps == [0]


def test_resume_auto_starts_a_run_and_checks_the_model(image_folder, reference, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(command(image_folder, out, steps=10)) == 0  # nothing there: starts it
    assert RunDir(out).read_info().resumed_at_steps == []
    assert main(command(image_folder, out)) == 0  # train.steps=40 now: continues it
    assert_same_run(reference, out)
    assert main(command(image_folder, out)) == 0  # finished: nothing to do
    other = [a.replace("hidden: 16", "hidden: 8") for a in command(image_folder, out)]
    capsys.readouterr()
    assert main(other) == 2
    assert "holds a run of model" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- signals


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT", "SIGUSR1"])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resumes_bitwise(image_folder, reference, tmp_path,
                                                                            monkeypatch, capsys, name):
    out = tmp_path / "run"
    signum = getattr(signal, name)
    handler = signal.getsignal(signum)
    monkeypatch.setenv(faults.ENV, f"step:15:{name}")  # the signal arrives during step 15
    assert main(command(image_folder, out)) == 128 + signum
    assert signal.getsignal(signum) is handler  # put back
    info = RunDir(out).read_info()
    assert info.status == "interrupted" and info.step == 15
    assert f"stopped by {name} after step 15" in info.message and "--resume" in info.message
    assert f"stopped by {name}" in capsys.readouterr().err
    assert checkpoint.load_train_state(RunDir(out))["step"] == 15
    monkeypatch.delenv(faults.ENV)
    assert main(command(image_folder, out)) == 0
    assert_same_run(reference, out)
    assert RunDir(out).read_info().resumed_at_steps == [15]


def test_a_second_signal_stops_at_once_and_damages_nothing(image_folder, reference, tmp_path, monkeypatch):
    out = tmp_path / "run"
    # the first SIGTERM during step 15; the second inside the write of the step-15 checkpoint
    # (writes: 1 run.json, 2-6 checkpoint 10, 7 run.json, 8-10 checkpoint 15)
    monkeypatch.setenv(faults.ENV, "step:15:SIGTERM,write:9:SIGTERM")
    assert main(command(image_folder, out)) == 143
    info = RunDir(out).read_info()
    assert info.status == "interrupted" and "at once by a second SIGTERM during step 15" in info.message
    assert checkpoint.load_train_state(RunDir(out))["step"] == 10 and unreadable_checkpoints(out) == []
    monkeypatch.delenv(faults.ENV)
    assert main(command(image_folder, out)) == 0
    assert_same_run(reference, out)


def test_sigterm_from_outside_stops_a_subprocess_cleanly(image_folder, tmp_path):
    """A real SIGTERM sent by another process, to a long run once it has written a checkpoint."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "hqvae", *command(image_folder, out, steps=100_000)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not RunDir(out).checkpoint("last").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    info = RunDir(out).read_info()
    assert info.status == "interrupted" and info.step > EVERY
    assert checkpoint.load_train_state(RunDir(out))["step"] == info.step and unreadable_checkpoints(out) == []


# ---------------------------------------------------------------------------------------- full disk


def fail_write_of(name: str, monkeypatch) -> None:
    """The write of ``name`` at the step-20 checkpoint writes a part of the file, then fails as on a
    full disk (model.safetensors and train_state.pt of checkpoints/last; run.json after it)."""
    writes = []

    def counts(path) -> bool:
        path = Path(path)
        if path.name.startswith(f".{name}.") and (name == "run.json" or path.parent.name == ".last.partial"):
            writes.append(path)
            return len(writes) == (3 if name == "run.json" else 2)  # run.json: at the start, step 10, step 20
        return False

    if name == "model.safetensors":  # written by safetensors (Rust), whose error carries the errno in its text
        original = hqvae.models.pretrained.save_model

        def save_model(model, path, **kwargs):
            if counts(path):
                Path(path).write_bytes(b"\0" * 100)
                raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
            return original(model, path, **kwargs)

        monkeypatch.setattr(hqvae.models.pretrained, "save_model", save_model)
        return
    original_write = hqvae.io.write_bytes

    def write_bytes(path, data):
        if counts(path):
            original_write(path, bytes(data)[:len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original_write(path, data)

    monkeypatch.setattr(hqvae.io, "write_bytes", write_bytes)


@pytest.mark.parametrize("name", ["model.safetensors", "train_state.pt", "run.json"])
def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_names_the_file(image_folder, reference, tmp_path,
                                                                                 monkeypatch, capsys, name):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        fail_write_of(name, patch)
        assert main(command(image_folder, out)) == 1
    error = capsys.readouterr().err
    assert f"could not write {out}" in error and f"/{name}: No space left on device" in error
    assert "Free space on the disk of" in error and f"hqvae train --out {out} --resume" in error
    run = RunDir(out)
    kept = 20 if name == "run.json" else 10  # run.json fails after the step-20 checkpoint is in place
    assert checkpoint.load_train_state(run)["step"] == kept and unreadable_checkpoints(out) == []
    assert run.read_info().status == "failed"
    assert main(command(image_folder, out)) == 0
    assert_same_run(reference, out)


def test_a_failed_result_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    hqvae.io.atomic_write_json(path, {"a": 1})
    monkeypatch.setattr(hqvae.io, "write_bytes", lambda tmp, data: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, os.strerror(errno.EACCES))))
    with pytest.raises(hqvae.io.WriteFailed, match=f"could not write {path}: Permission denied.*Make {tmp_path} "
                                                   f"writable"):
        hqvae.io.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["results.json"]


# ---------------------------------------------------------------------------------------- damaged files


class Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def finished_run(image_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(image_folder, "vqvae", steps=4), out)
    return out


def damaged_copy(finished_run: Path, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("damage, message", [
    ("pickle", "holds Python objects other than tensors and plain containers (Trying to load unsupported GLOBAL"),
    ("raw pickle", "holds Python objects other than tensors and plain containers; loading it could run code"),
    ("truncated", "is damaged or not a PyTorch file"),
    ("foreign", "is not an hqvae train state (expected the keys"),
    ("inconsistent", "is inconsistent: its random states do not match its number of processes"),
])
def test_a_damaged_train_state_is_refused_with_the_file_and_the_fix(finished_run, tmp_path, capsys, damage, message):
    out = damaged_copy(finished_run, tmp_path)
    path = RunDir(out).train_state_file
    marker = tmp_path / "exploited"
    state = torch.load(path, weights_only=True)
    content = {"pickle": lambda: torch_bytes({**state, "step": Exploit(marker)}),
               "raw pickle": lambda: pickle.dumps(Exploit(marker), protocol=4),
               "truncated": lambda: path.read_bytes()[:500],
               "foreign": lambda: torch_bytes({"model": torch.zeros(2)}),
               "inconsistent": lambda: torch_bytes({**state, "world_size": 2})}[damage]()
    path.write_bytes(content)
    assert main(["train", "--out", str(out), "--resume", "train.steps=6"]) == 2
    error = capsys.readouterr().err
    assert f"{path} {message}" in error and f"hqvae train --out {out} --force" in error
    assert "Unsupported operand" not in error and "Check the documentation" not in error
    assert not marker.exists()  # nothing was executed


@pytest.mark.parametrize("file, content, message", [
    ("checkpoints/last/model.safetensors", b"\0" * 64, "is not a readable safetensors file"),
    ("checkpoints/last/config.json", b'{"model_type": "vqvae", "config": {"colour": 1}}',
     "does not describe a model this version of hqvae can build"),
    ("run.json", b'{"status": "fini', "is not valid JSON"),
    ("run.json", b'["a", "list"]', "is not an hqvae run.json"),
    ("run.json", b'{"config": {"optim": {"lr": "fast"}}}', "holds a config this hqvae cannot use"),
])
def test_damaged_run_files_are_refused_with_the_file_and_the_fix(finished_run, tmp_path, capsys, file, content,
                                                                 message):
    out = damaged_copy(finished_run, tmp_path)
    (out / file).write_bytes(content)
    assert main(["train", "--out", str(out), "--resume", "train.steps=6"]) == 2
    error = capsys.readouterr().err
    assert message in error and str(out / file) in error and "--force" in error


def test_a_missing_checkpoint_is_not_mistaken_for_a_hub_id(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        hqvae.from_pretrained(tmp_path / "run" / "checkpoints" / "last")
    assert "huggingface_hub" not in str(caught.value)


def test_a_foreign_results_file_is_refused_by_report(finished_run, tmp_path, capsys):
    out = damaged_copy(finished_run, tmp_path)
    (out / "eval").mkdir()
    (out / "eval" / "results.json").write_text('{"rmse": 0.1}')
    assert main(["report", "--run", str(out), "--out", str(tmp_path / "report")]) == 2
    error = capsys.readouterr().err
    assert f"{out / 'eval' / 'results.json'} is not an hqvae eval results file" in error and "hqvae eval" in error


# ---------------------------------------------------------------------------------------- torchrun elastic


def torchrun(image_folder: Path, out: Path, hook: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if hook:
        env[faults.ENV] = hook
    args = ["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out", str(out), "--resume",
            "auto", *tiny_overrides(image_folder, "sqvae2", steps=12)]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "--max-restarts=1", "--monitor-interval=0.2", "-m", "hqvae", *args],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_torchrun_restarts_after_a_process_is_killed_and_resumes_bitwise(image_folder, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    result = torchrun(image_folder, straight, None)
    assert result.returncode == 0, result.stderr[-3000:]
    result = torchrun(image_folder, killed, "step:7@1")  # rank 1 dies at step 7; checkpoints every 4 steps
    assert result.returncode == 0, result.stderr[-3000:]
    info = RunDir(killed).read_info()
    assert info.status == "finished" and info.world_size == 2 and info.resumed_at_steps == [4]
    assert_bitwise_equal(last_weights(straight), last_weights(killed))


# ---------------------------------------------------------------------------------------- the prior
# ``hqvae prior train`` runs in the same engine (hqvae.train.engine.fit): the same stop signals,
# checked resume and ``--resume auto``.

PRIOR_STEPS = 12  # checkpoints (and validation) at 3, 6, 9, 12; class-conditional: the label dropout draws
PRIOR_SETTINGS = ["model.d_model=16", "model.n_layer=1", "model.n_head=2", f"train.steps={PRIOR_STEPS}",
                  "train.batch_size=8", "train.log_every=3", "train.val_every=3", "train.checkpoint_every=3",
                  "data.val_items=8", "train.device=cpu", "logging.progress=false", "model.class_conditional=true",
                  "model.dropout=0.1"]
# steps before and after the first checkpoint; the n-th atomic write (1-2: the cached codes, 3: run.json,
# then the checkpoints' files); the n-th checkpoint swap
PRIOR_KILL_POINTS = ["step:1", "step:3", "step:4", "step:8", "step:12", "write:2", "write:4", "write:6", "write:9",
                     "write:13", "swap:1", "swap:2", "swap:4"]


@pytest.fixture(scope="module")
def tokenizer(image_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer") / "run"
    assert main(["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out", str(out),
                 *tiny_overrides(image_folder, "sqvae2", 4)]) == 0
    return out


def prior_command(tokenizer: Path, out: Path) -> list[str]:
    return ["prior", "train", "--run", str(tokenizer), "--out", str(out), "--resume", "auto", *PRIOR_SETTINGS]


@pytest.fixture(scope="module")
def prior_reference(tokenizer) -> Path:
    out = tokenizer.parent / "prior"
    on_one_thread(prior_command(tokenizer, out))
    return out


def assert_same_prior(reference: Path, out: Path) -> None:
    assert RunDir(out).read_info().status == "finished"
    for which in ("best", "last"):
        assert_bitwise_equal(load_file(reference / "checkpoints" / which / "prior.safetensors"),
                             load_file(out / "checkpoints" / which / "prior.safetensors"))
    assert not list((out / "checkpoints").glob(".*")) and not list(out.glob(".*.tmp"))


def test_sigterm_stops_the_prior_with_a_checkpoint_and_resume_finishes_bitwise(tokenizer, prior_reference, tmp_path):
    out = tmp_path / "prior"
    stopped = run_with_hook(prior_command(tokenizer, out), "step:5:SIGTERM")  # during step 5
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    info = RunDir(out).read_info()
    assert info.status == "interrupted" and info.step == 5
    assert "stopped by SIGTERM after step 5" in info.message and "hqvae prior train --out" in info.message
    assert checkpoint.load_train_state(RunDir(out), "prior.safetensors")["step"] == 5
    assert main(["prior", "train", "--out", str(out), "--resume"]) == 0
    assert_same_prior(prior_reference, out)
    assert RunDir(out).read_info().resumed_at_steps == [5]


def kill_prior_and_resume(tokenizer: Path, reference: Path, out: Path, points: list[str]) -> None:
    for point in points:
        killed = run_with_hook(prior_command(tokenizer, out), point)
        assert killed.returncode == -signal.SIGKILL, f"{point} was not reached: {killed.stderr[-2000:]}"
    assert main(prior_command(tokenizer, out)) == 0
    assert_same_prior(reference, out)


def test_kill_9_of_the_prior_then_resume_auto_finishes_bitwise(tokenizer, prior_reference, tmp_path):
    """One prior killed three times over (fast variant of the test below)."""
    kill_prior_and_resume(tokenizer, prior_reference, tmp_path / "prior", ["step:2", "write:6", "swap:1"])


@pytest.mark.slow
def test_kill_9_of_the_prior_at_13_points_resumes_bitwise(tokenizer, prior_reference, tmp_path):
    for n, point in enumerate(PRIOR_KILL_POINTS):
        kill_prior_and_resume(tokenizer, prior_reference, tmp_path / f"prior{n}", [point])
    assert len(PRIOR_KILL_POINTS) >= 10
