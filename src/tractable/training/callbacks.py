"""What a run does between its steps, as callbacks on the trainer's one hook.

After every step the trainer calls each of `trainer.callbacks` with itself: first its own
`TrainLog` (progress bar, ETA, "train" rows), `Evaluation` (test bits/dim, "eval" rows,
sample grids and curves) and `Checkpointing`, in that order, then the user's. Any
callable `(trainer) -> None` is a callback; a `Periodic` one says at which steps it acts
(`due`: the trainer reads the step statistics first), acts once more at the end unless it
just did (the final evaluation and checkpoint), and has hooks around `fit` (`start`,
`close`, also after an error).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from tractable.errors import NumericalError
from tractable.models.bpd import evaluate_bpd
from tractable.run_folder import CURVES_NAME, GIF_NAME, SAMPLES_DIR
from tractable.training.optim import lr_at
from tractable.training.pictures import cycling_labels, draw_samples
from tractable.training.startup import EtaClock
from tractable.viz import plot_curves, save_gif_of_pngs, save_grid

if TYPE_CHECKING:
    from tractable.training.trainer import Trainer

Callback = Callable[["Trainer"], None]


class Periodic:
    """A callback that acts at its steps (`due`) and once more at the end of `fit`, unless
    it acted at that step, with hooks around `fit`."""

    def __init__(self, last_step: int = -1) -> None:
        self.last_step = last_step  # the step it last acted at

    def due(self, trainer: Trainer) -> bool:
        """Whether this step is one of its steps (the step statistics are read first)."""
        return False

    def act(self, trainer: Trainer) -> None:
        """What it does at its steps."""

    def __call__(self, trainer: Trainer) -> None:
        """After every step."""
        if self.due(trainer):
            self.last_step = trainer.step
            self.act(trainer)

    def finish(self, trainer: Trainer) -> None:
        """After the last step (also when `fit` had no step left to run)."""
        if self.last_step != trainer.step:
            self.last_step = trainer.step
            self.act(trainer)

    def start(self, trainer: Trainer) -> None:
        """Before the first step of `fit`."""

    def close(self) -> None:
        """When `fit` ends, by an error too."""


class TrainLog(Periodic):
    """The progress bar, the ETA line, and every `log_every` steps (and at the last) a
    "train" row: mean loss and bits/dim of the good steps since the last row, learning
    rate, last gradient norm, and images/s of the steps alone (`trainer.train_s`)."""

    def __init__(self) -> None:
        super().__init__()
        self.bar: tqdm | None = None
        self.eta: EtaClock | None = None
        self._train_s_at_row = 0.0

    def due(self, trainer: Trainer) -> bool:
        return trainer.step % trainer.cfg.log_every == 0 or trainer.step == trainer.total_steps

    def start(self, trainer: Trainer) -> None:
        cfg, env = trainer.cfg, trainer.env
        self.bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc="train",
                        dynamic_ncols=True,
                        disable=not (cfg.progress and env.is_main and sys.stderr.isatty()))
        self.eta = EtaClock(trainer.step, trainer.total_steps)
        self._train_s_at_row = trainer.train_s

    def __call__(self, trainer: Trainer) -> None:
        assert self.bar is not None and self.eta is not None
        line = self.eta.line(trainer.step, trainer.train_s)
        if line and trainer.env.is_main and not trainer.cfg.quiet:
            tqdm.write(line)
        self.bar.update(1)
        super().__call__(trainer)

    def finish(self, trainer: Trainer) -> None:
        """Nothing: the last step is one of its steps."""

    def act(self, trainer: Trainer) -> None:
        """The "train" row of the steps since the last one."""
        assert self.bar is not None
        window = trainer.stats.take_window()
        seconds = trainer.train_s - self._train_s_at_row
        self._train_s_at_row = trainer.train_s
        if not window:
            return
        loss = sum(w[0] for w in window) / len(window)
        bpd = sum(w[1] for w in window) / len(window)
        img_s = len(window) * trainer.opt_cfg.batch_size / max(seconds, 1e-9)
        epoch = trainer.step / trainer.stream.steps_per_epoch
        trainer.log.add("train", trainer.step, epoch=epoch, loss=loss, bpd=bpd,
                        lr=lr_at(trainer.step - 1, trainer.opt_cfg),
                        grad_norm=trainer.stats.last_grad_norm, img_per_s=img_s,
                        elapsed_s=trainer.elapsed())
        trainer.log.write()
        self.bar.set_postfix(loss=f"{loss:.4f}", bpd=f"{bpd:.4f}", img_s=f"{img_s:.1f}")
        if trainer.env.is_main and not trainer.cfg.quiet and self.bar.disable:
            print(f"step {trainer.step}/{trainer.total_steps} epoch {epoch:.2f} loss {loss:.4f} "
                  f"bpd {bpd:.4f} {img_s:.1f} img/s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Evaluation(Periodic):
    """Test bits/dim with the EMA weights every `eval_every` steps (default: every epoch)
    and at the end, each rank scoring a shard; rank 0 adds an "eval" row and draws the
    pictures: a sample grid (fixed noise) with the GIF of all grids, and the curves."""

    def due(self, trainer: Trainer) -> bool:
        # The last step is one of its steps, so the final checkpoint (after it in
        # `trainer.callbacks`) writes a summary.json holding this evaluation.
        every = trainer.cfg.eval_every or trainer.stream.steps_per_epoch
        return trainer.step % every == 0 or trainer.step == trainer.total_steps

    def act(self, trainer: Trainer) -> None:
        """Evaluate now."""
        trainer.read_stats()  # skip rows of earlier steps come before this step's eval row
        cfg, env, bpd = trainer.cfg, trainer.env, None
        if trainer.test_set is not None:
            bpd = evaluate_bpd(trainer.ema.model, trainer.test_set,
                               batch_size=cfg.eval_batch_size or trainer.opt_cfg.batch_size,
                               precision=cfg.eval_precision, device=env.device,
                               rank=env.rank, world_size=env.world_size).bits_per_dim
            trainer.best_bpd = bpd if trainer.best_bpd is None else min(trainer.best_bpd, bpd)
        if not env.is_main:
            return
        grid = draw_grid(trainer)
        epoch = trainer.step / trainer.stream.steps_per_epoch
        trainer.log.add("eval", trainer.step, epoch=epoch, test_bpd=bpd, grid=grid)
        if not cfg.quiet:
            msg = (f"step {trainer.step} epoch {epoch:.2f}: test "
                   f"{trainer.model.bits_per_dim_label} (EMA) ")
            tqdm.write(msg + (f"{bpd:.4f}" if bpd is not None else "n/a"))
        if trainer.run_dir is not None:
            trainer.log.write()
            draw_curves(trainer)


class Checkpointing(Periodic):
    """A checkpoint every `checkpoint_every` steps and at the end (`Trainer.save_checkpoint`);
    none at its steps while the NaN/inf guard counts bad steps (their weights just gave a
    non-finite loss: `last_good`)."""

    def due(self, trainer: Trainer) -> bool:
        return trainer.step % trainer.cfg.checkpoint_every == 0

    def __call__(self, trainer: Trainer) -> None:
        if trainer.consecutive_bad and self.due(trainer):
            return
        super().__call__(trainer)

    def act(self, trainer: Trainer) -> None:
        trainer.save_checkpoint()


# ---- the pictures of an evaluation -----------------------------------------------------------
def draw_grid(trainer: Trainer) -> str | None:
    """`samples/step_XXXXXXXX.png` from the EMA weights (one column per class of a
    conditional model) and `samples.gif` of every grid so far; its name, or None."""
    n, run_dir, cfg = trainer.cfg.samples_per_eval, trainer.run_dir, trainer.cfg
    if run_dir is None or n == 0:
        return None
    model = trainer.ema.model
    try:
        x = draw_samples(model, n, y=cycling_labels(model, n), seed=cfg.seed, sampler=cfg.sampler)
    except NumericalError as e:  # e.g. an early Glow whose inverse overflows
        if not cfg.quiet:
            tqdm.write(f"step {trainer.step}: no sample grid: {e}", file=sys.stderr)
        return None
    name = f"{SAMPLES_DIR}/step_{trainer.step:08d}.png"
    k = model.config.num_classes
    names = list(model.config.class_names)
    save_grid(x, run_dir / name, nrow=k if k else None,
              col_labels=(names if len(names) == k else [str(j) for j in range(k)])
              if k else None, title=f"step {trainer.step:,}")
    frames = [run_dir / r["grid"] for r in trainer.log.of_kind("eval") if r.get("grid")]
    save_gif_of_pngs(frames + [run_dir / name], run_dir / GIF_NAME)
    return name


def draw_curves(trainer: Trainer) -> None:
    """`bpd.png`: train (batch mean) and test (EMA) bits/dim against optimizer steps."""
    assert trainer.run_dir is not None
    train = trainer.log.of_kind("train")
    evals = [r for r in trainer.log.of_kind("eval") if r.get("test_bpd") is not None]
    plot_curves({"train (batch mean)": ([r["step"] for r in train], [r["bpd"] for r in train]),
                 "test (EMA weights)": ([r["step"] for r in evals],
                                        [r["test_bpd"] for r in evals])},
                trainer.run_dir / CURVES_NAME,
                title=f"{trainer.model.family} on {trainer.cfg.data}",
                xlabel="optimizer step", ylabel=trainer.model.bits_per_dim_label)
