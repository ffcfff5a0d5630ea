"""Fault injection over every surface: hostile flags and files, full and read-only disks,
concurrent runs, signals. Each fault must end in one clear line and the right exit status,
with nothing already written lost and nothing silently wrong.

The table `CLI_FAULTS` holds the command-line faults: an id, a function that damages a
fresh copy of a small trained run (or the environment) and returns the command line, the
words the one error line must hold, and an optional check afterwards. A new surface or a
new fault is one more row. Faults that need a process of their own (signals, a second
process holding the run folder) and the checkpoint bookkeeping follow the table.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from cli_errors import fails
from tractable.cli import main
from tractable.data.prepared import IMAGES_FILE, META_FILE
from tractable.folder_lock import LOCK_NAME, FolderLock
from tractable.training import TrainConfig, train
from tractable.training.checkpoint import load_state
from tractable.training.last_good import GOOD_NAME, LastGood

REPO = Path(__file__).resolve().parents[1]
TINY = {"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 2, "dropout": 0.0}
TINY_FLAGS = ["--model", "pixelcnn++", "--nr-resnet", "1", "--nr-filters", "8",
              "--nr-logistic-mix", "2", "--dropout", "0", "--batch-size", "8",
              "--limit-train", "32", "--limit-test", "16", "--samples-per-eval", "0",
              "--no-progress", "--quiet"]
HUGE = str(10**12)
PAST_64_BITS = str(2**70)
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train("pixelcnn++", TrainConfig(out=str(out), max_steps=2, batch_size=8, limit_train=32,
                                    limit_test=16, samples_per_eval=0, progress=False,
                                    quiet=True), overrides=TINY)
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path (what "nothing lost" compares)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    id: str
    make: Callable[[Path, Path, pytest.MonkeyPatch], list[str]]  # (run copy, tmp, mp) -> argv
    says: str  # what the one error line must hold
    then: Callable[[Path, Path], None] | None = None  # (run copy, tmp): checks afterwards


def _train(out: object, *extra: str) -> list[str]:
    return ["train", "--out", str(out), *TINY_FLAGS, "--max-steps", "1", *extra]


def _nested(name: str) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    def make(run: Path, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
        (run / name).write_text(DEEP)
        return ["info", str(run)]
    return make


def _nan_weight(command: list[str]) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    def make(run: Path, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
        path = run / "model" / "model.safetensors"
        state = load_file(str(path))
        name = sorted(k for k, v in state.items() if v.is_floating_point())[0]
        state[name].view(-1)[0] = float("nan")
        save_file(state, str(path))
        return [command[0], str(run), *command[1:], *(["--out", str(tmp / "x.png")]
                                                      if command[0] == "sample" else [])]
    return make


def _no_png(run: Path, tmp: Path) -> None:
    assert not list(tmp.glob("*.png"))


def _out_of_memory(*args: object, **kwargs: object) -> None:
    raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                       "allocate memory: you tried to allocate 1099511627776 bytes")


def _user_files(*names: str) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    def make(run: Path, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
        out = tmp / "mine"
        for name in names:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(f"my own {name}")
        return _train(out, "--overwrite")
    return make


def _user_files_kept(*names: str) -> Callable[[Path, Path], None]:
    """Each file `_user_files(*names)` wrote is still there, holding what the user wrote."""
    def check(run: Path, tmp: Path) -> None:
        for name in names:
            path = tmp / "mine" / name
            assert path.is_file(), f"{name} was deleted"
            assert path.read_text() == f"my own {name}", name
    return check


def _write_fails(err: int, target: str) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    """A new run whose first write of `target` fails with `err` as the file is created
    (a read-only filesystem)."""
    def make(run: Path, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
        import tractable._io as io_module

        real = io_module.tempfile.mkstemp

        def failing(*args: object, **kwargs: object) -> tuple[int, str]:
            if str(kwargs.get("prefix", "")).startswith(f".{target}."):
                raise OSError(err, os.strerror(err), str(tmp / "new" / target))
            return real(*args, **kwargs)  # type: ignore[call-overload, no-any-return]

        mp.setattr(io_module.tempfile, "mkstemp", failing)
        return _train(tmp / "new")
    return make


def _disk_fills(target: str) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    """A new run whose disk fills while `target` is written: the temporary file exists
    and holds the data when its `fsync` fails with ENOSPC (where a full disk shows
    itself once the page cache has taken the bytes)."""
    def make(run: Path, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
        import tractable._io as io_module

        real_mkstemp, real_fsync = io_module.tempfile.mkstemp, io_module.os.fsync

        def recording(*args: object, **kwargs: object) -> tuple[int, str]:
            fd, name = real_mkstemp(*args, **kwargs)  # type: ignore[call-overload]
            if str(kwargs.get("prefix", "")).startswith(f".{target}."):
                _TEMPS_MADE.append(Path(name))
            return fd, name  # type: ignore[no-any-return]

        def failing(fd: int) -> None:
            st = os.fstat(fd)
            for made in _TEMPS_MADE:
                if made.exists() and os.path.samestat(st, made.stat()):
                    assert made.stat().st_size > 0  # the write itself went through
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as fsync does
            real_fsync(fd)

        _TEMPS_MADE.clear()
        mp.setattr(io_module.tempfile, "mkstemp", recording)
        mp.setattr(io_module.os, "fsync", failing)
        return _train(tmp / "new")
    return make


_TEMPS_MADE: list[Path] = []  # the temporary files `_disk_fills` saw created for its target


def _nothing_half_written(run: Path, tmp: Path) -> None:
    """No temporary file and no checkpoint of the failed write are left behind."""
    assert _TEMPS_MADE, "the fault never reached a temporary file"
    assert not any(p.exists() for p in _TEMPS_MADE)
    assert not list((tmp / "new").rglob("*.tmp"))
    assert not (tmp / "new" / "state.pt").exists()


def _glow(make_flags: list[str]) -> list[str]:
    return ["train", "--model", "glow", "--data", "mnist-mini", "--out", "unused", *make_flags]


CLI_FAULTS = [
    # -- data loss ---------------------------------------------------------------------
    Fault("empty --out", lambda r, t, mp: _train(""), "--out) is empty"),
    Fault("--overwrite over a user's metrics.csv", _user_files("metrics.csv", "notes.txt"),
          "did not write under names a run writes (metrics.csv)",
          _user_files_kept("metrics.csv", "notes.txt")),
    Fault("--overwrite over a user's model/config.json and summary.json",
          _user_files("model/config.json", "summary.json"),
          "(model/config.json, summary.json)",
          _user_files_kept("model/config.json", "summary.json")),
    # -- runaway sizes, before anything is built ---------------------------------------
    Fault("--nr-resnet 1e12", lambda r, t, mp: _train(t / "o", "--nr-resnet", HUGE),
          "nr_resnet must be <= 64"),
    Fault("--nr-filters past memory", lambda r, t, mp: _train(t / "o", "--nr-filters", "60000"),
          "more than this machine's"),
    Fault("glow --K 1e6", lambda r, t, mp: _glow(["--K", "1000000"]), "K must be <= 256"),
    Fault("glow --L 1e12", lambda r, t, mp: _glow(["--L", HUGE]), "L must be <= 12"),
    Fault("gated --n-layers 1e6", lambda r, t, mp: ["train", "--model", "gated-pixelcnn",
                                                    "--out", str(t / "o"), "--n-layers",
                                                    "1000000"], "n_layers must be <= 256"),
    Fault("sample -n 1e12", lambda r, t, mp: ["sample", str(r), "-n", HUGE], "-n must be at most"),
    Fault("sample --nrow 1e12", lambda r, t, mp: ["sample", str(r), "--nrow", HUGE],
          "--nrow must be at most"),
    Fault("complete -n 1e12", lambda r, t, mp: ["complete", str(r), "--image", "0", "--rows",
                                                "3", "-n", HUGE], "-n must be at most"),
    Fault("glow interpolate --steps 1e12", lambda r, t, mp: [
        "glow", "interpolate", str(r), "--a", "0", "--b", "1", "--steps", HUGE],
        "--steps must be at most"),
    Fault("ood --bootstrap 1e12", lambda r, t, mp: [
        "ood", "--model", str(r), "--in", "mnist-mini", "--bootstrap", HUGE],
        "--bootstrap must be at most"),
    Fault("data show --size 1e12", lambda r, t, mp: [
        "data", "show", "mnist-mini", "--size", HUGE], "--size must be at most"),
    Fault("a grid too large to allocate", lambda r, t, mp: [
        "data", "show", "mnist-mini", "-n", "10000", "--scale", "256", "--out",
        str(t / "g.png")], "the grid would be", _no_png),
    Fault("torch out of memory", lambda r, t, mp: mp.setattr(
        "tractable.evaluation.evaluate_bpd", _out_of_memory) or ["eval", str(r), "--limit", "2"],
        "out of memory"),
    Fault("--max-steps 1e12", lambda r, t, mp: _train(t / "o", "--max-steps", HUGE),
          "--max-steps must be at most"),
    Fault("--seed past 64 bits", lambda r, t, mp: _train(t / "o", "--seed", PAST_64_BITS),
          "--seed must be at most"),
    Fault("--limit past 64 bits", lambda r, t, mp: ["eval", str(r), "--limit", PAST_64_BITS],
          "--limit must be at most"),
    # -- values that would train into a model that cannot be loaded ---------------------
    Fault("--focal-gamma inf", lambda r, t, mp: _train(t / "o", "--focal-gamma", "inf"),
          "focal_gamma must be finite"),
    Fault("glow --weight-y nan", lambda r, t, mp: _glow(["--weight-y", "nan"]),
          "weight_y must be finite"),
    Fault("--temperature nan", lambda r, t, mp: ["sample", str(r), "--temperature", "nan"],
          "temperature must be a finite number"),
    Fault("--holdout nan", lambda r, t, mp: _train(t / "o", "--holdout", "nan"),
          "--holdout must be a finite number"),
    # -- files nested 100,000 deep -------------------------------------------------------
    Fault("config.json nested 100,000 deep", _nested("model/config.json"), "nested deeper"),
    Fault("run.json nested 100,000 deep", _nested("run.json"), "nested deeper"),
    Fault("summary.json nested 100,000 deep", _nested("summary.json"), "nested deeper"),
    # -- silent wrong results ----------------------------------------------------------
    Fault("eval of a NaN weight", _nan_weight(["eval", "--limit", "4"]), "non-finite weights"),
    Fault("sample of a NaN weight", _nan_weight(["sample", "-n", "2"]), "non-finite weights",
          _no_png),
    Fault("pretrained: with a path", lambda r, t, mp: [
        "info", "pretrained:../pretrained/glow-mnist"], "no shipped model"),
    Fault("mnist-mini --batches", lambda r, t, mp: [
        "data", "show", "mnist-mini", "--batches", "1", "--out", str(t / "g.png")],
        "mnist-mini does not take option(s) batches"),
    Fault("mnist-mini --holdout", lambda r, t, mp: _train(t / "o", "--holdout", "0.5"),
          "does not take option(s) holdout"),
    # -- the environment -------------------------------------------------------------
    Fault("--out under a file", lambda r, t, mp: (t / "f").write_text("x") and _train(
        t / "f" / "run"), "is a file, not a folder"),
    Fault("disk full writing the weights", _disk_fills("model.safetensors"),
          "the disk is full", _nothing_half_written),
    Fault("read-only filesystem", _write_fails(errno.EROFS, "run.json"),
          "read-only"),
]


@pytest.mark.parametrize("fault", CLI_FAULTS, ids=[f.id for f in CLI_FAULTS])
def test_a_fault_ends_in_one_line_and_exit_2(fault: Fault, copy: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = fault.make(copy, work, monkeypatch)
    before = snapshot(copy)
    capsys.readouterr()
    fails(argv, capsys, fault.says)
    if not argv or argv[0] != "train":
        assert snapshot(copy) == before  # reading never changes a run
    if fault.then is not None:
        monkeypatch.undo()
        fault.then(copy, work)


def test_a_failed_first_checkpoint_leaves_a_folder_the_same_command_reuses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _disk_fills("model.safetensors")(tmp_path, tmp_path, monkeypatch)
    assert main(argv) == 2
    monkeypatch.undo()
    assert main(argv) == 0, capsys.readouterr().err  # no --overwrite needed
    assert load_state(tmp_path / "new" / "state.pt")["step"] == 1


def test_info_names_missing_config_fields(copy: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = copy / "model" / "config.json"
    payload = json.loads(path.read_text())
    del payload["config"]["nr_logistic_mix"]
    path.write_text(json.dumps(payload))
    assert main(["info", str(copy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing_config_fields"] == ["nr_logistic_mix"]
    assert main(["info", str(copy)]) == 0
    assert "nr_logistic_mix: MISSING from config.json" in capsys.readouterr().out


# ---- prepared copies -------------------------------------------------------------------
def _prepare(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["data", "prepare", "mnist-mini", "--split", "test", *extra]) == 0
    out = capsys.readouterr()
    return out.out.strip().rsplit(" in ", 1)[1] + "\n" + out.err


def _copy_folder(capsys: pytest.CaptureFixture[str]) -> Path:
    return Path(_prepare(capsys).split("\n")[0])


PREPARED_FAULTS = {
    "meta.json nested 100,000 deep": lambda f: (f / META_FILE).write_text(DEEP),
    "images truncated": lambda f: os.truncate(f / IMAGES_FILE, 1000),
    "one bit flipped": lambda f: _flip_bit(f / IMAGES_FILE, 5000),
    "meta with a negative count": lambda f: _edit_meta(f, count=-1, shape=[-784, 1, 1]),
}


def _flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def _edit_meta(folder: Path, **fields: object) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    meta.update(fields)
    (folder / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", list(PREPARED_FAULTS), ids=list(PREPARED_FAULTS))
def test_a_damaged_prepared_copy_is_rebuilt_not_used(damage: str,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    from tractable.data import load_dataset

    folder = _copy_folder(capsys)
    good = (folder / IMAGES_FILE).read_bytes()
    PREPARED_FAULTS[damage](folder)
    ds = load_dataset("mnist-mini", "test", prepared=True)
    assert "rebuilding" in capsys.readouterr().err
    assert ds.images.numpy().tobytes() == good
    PREPARED_FAULTS[damage](folder)
    assert Path(_prepare(capsys, "--rebuild").split("\n")[0]) == folder  # --rebuild works too
    assert (folder / IMAGES_FILE).read_bytes() == good


def test_an_unwritable_prepared_root_is_one_line(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("TRACTABLE_PREPARED", str(tmp_path / "file" / "prepared"))
    assert main(["data", "prepare", "mnist-mini", "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "TRACTABLE_PREPARED" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_mapping_is_refused_when_the_file_is_shorter_than_its_shape(tmp_path: Path) -> None:
    from tractable.data.prepared import MappedPixels
    from tractable.errors import DataError

    (tmp_path / "x.u8").write_bytes(bytes(100))
    with pytest.raises(DataError, match="holds 100 bytes, expected 784"):
        MappedPixels(tmp_path / "x.u8", [1, 1, 28, 28])


# ---- the Hub ---------------------------------------------------------------------------
def _redirect_loop_server() -> tuple[str, Callable[[], None]]:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Loop(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", self.path + "x")
            self.end_headers()

        do_GET = do_HEAD  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server.shutdown


@pytest.mark.parametrize("endpoint, says", [
    ("http://127.0.0.1:9", "could not reach the Hub"),  # nothing listens: unreachable
    ("not a url", "is not an http(s):// URL"),
    ("loop", "redirects"),  # a server that redirects forever: named, not "unreachable"
])
def test_a_bad_hub_is_one_line(endpoint: str, says: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as hub_constants

    stop = None
    if endpoint == "loop":
        endpoint, stop = _redirect_loop_server()
    monkeypatch.setattr(hub_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    try:
        assert main(["info", "hf:someone/model"]) == 2
    finally:
        if stop is not None:
            stop()
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert "has no config.json" not in err


# ---- one run per folder ----------------------------------------------------------------
def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    out = tmp_path / "busy"
    with FolderLock(out):  # what a running `tractable train --out busy` holds
        assert main(_train(out)) == 2
        err = capsys.readouterr().err
        assert f"in use by PID {os.getpid()}" in err and err.count("\n") == 1
    assert main(_train(out)) == 0  # free again once the holder ends
    assert not (out / LOCK_NAME).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "stale"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (out / LOCK_NAME).write_text(f"{dead} somehost\n")  # left by a kill -9
    assert main(_train(out)) == 0
    assert load_state(out / "state.pt")["step"] == 1


def test_a_lock_held_by_another_process_names_it(tmp_path: Path) -> None:
    out = tmp_path / "other"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tractable.folder_lock import FolderLock;"
         f"lock = FolderLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match=f"in use by PID {holder.pid}"):
            FolderLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = FolderLock(out).acquire()  # the dead holder's lock is stale: taken over
    lock.release()


# ---- signals -----------------------------------------------------------------------------
def _signal_at_step(out: Path, *signals: signal.Signals) -> dict[str, object]:
    """Train in this process, sending `signals` to itself after step 2 (as `kill` would):
    the run stops after the step it is in then, step 3."""
    def send(trainer: object) -> None:
        if getattr(trainer, "step", 0) == 2:
            for sig in signals:
                os.kill(os.getpid(), sig)

    return train("pixelcnn++", TrainConfig(out=str(out), max_steps=50, batch_size=8,
                                           limit_train=32, limit_test=16, samples_per_eval=0,
                                           checkpoint_every=1000, progress=False, quiet=True),
                 overrides=TINY, callbacks=(send,))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_saves_a_checkpoint_then_stops(sig: signal.Signals, tmp_path: Path
                                                     ) -> None:
    from tractable.training import TrainingInterrupted

    before = signal.getsignal(sig)
    with pytest.raises(TrainingInterrupted, match=f"{sig.name}: interrupted at step 3/50") as e:
        _signal_at_step(tmp_path / "r", sig)
    assert e.value.exit_status == 128 + sig
    assert load_state(tmp_path / "r" / "state.pt")["step"] == 3  # the step it was in, finished
    assert not (tmp_path / "r" / LOCK_NAME).exists()
    assert signal.getsignal(sig) == before  # the handlers are put back


def test_a_second_signal_quits_at_once_in_one_line_with_130(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tractable.cli.failures import run_guarded

    with pytest.raises(KeyboardInterrupt):
        _signal_at_step(tmp_path / "r", signal.SIGTERM, signal.SIGINT)
    assert not (tmp_path / "r" / "state.pt").exists()  # no checkpoint after the second
    assert not list((tmp_path / "r").rglob("*.tmp"))
    capsys.readouterr()

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    assert run_guarded(interrupted, None) == 130  # type: ignore[arg-type]
    assert capsys.readouterr().err.strip() == "tractable: interrupted"


def test_sigterm_from_outside_checkpoints_a_cli_run(tmp_path: Path) -> None:
    """What a cluster scheduler does: SIGTERM to `tractable train`, which saves and exits."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "tractable.cli", "train", "--out", str(tmp_path / "r"),
            *TINY_FLAGS, "--max-steps", "100000", "--checkpoint-every", "100000",
            "--log-every", "1", "--no-compile"]  # a long run compiles by default: not the point
    argv.remove("--quiet")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("step 2/"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "SIGTERM: interrupted" in err and "--resume" in err
    assert load_state(tmp_path / "r" / "state.pt")["step"] >= 2


# ---- the last good checkpoint ------------------------------------------------------------
def test_the_last_good_checkpoint_is_one_the_next_step_confirmed(tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    good = LastGood(state)
    state.write_bytes(b"step 1")
    good.saved(1)
    good.observed(2, finite=True)  # the weights of step 1 trained on: good
    state.unlink()  # the next checkpoint replaces state.pt by rename, as `_io` does
    state.write_bytes(b"step 3")
    good.saved(3)
    good.observed(4, finite=False)  # the weights of step 3 gave NaN at once
    assert good.roll_back() == (True, 1)
    assert state.read_bytes() == b"step 1" and not (tmp_path / GOOD_NAME).exists()


def test_a_diverged_run_never_advises_resuming_weights_that_fail(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "div"
    argv = ["train", "--out", str(out), *TINY_FLAGS, "--lr", "10", "--max-steps", "40",
            "--checkpoint-every", "1", "--max-bad-steps", "3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "training stopped" in err
    if "continue from it with --resume" in err:  # then the resume must get past that point
        state = load_state(out / "state.pt")
        assert all(bool(torch.isfinite(v).all()) for v in state["model"].values())
        assert main(["train", "--out", str(out), "--resume", "--lr", "1e-5", "--max-steps",
                     str(state["step"] + 2), "--max-bad-steps", "2"]) == 0
    else:
        assert "resuming it cannot help" in err or "no checkpoint" in err
