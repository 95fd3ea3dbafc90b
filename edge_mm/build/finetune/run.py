"""The fine-tuning run: checks -> epochs (best checkpoint, resumable state) -> reports -> rename into place."""

from __future__ import annotations

import math
import random
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import torch

from edge_mm.build.finetune import plots, report
from edge_mm.build.finetune import train as t
from edge_mm.build.finetune.options import FinetuneOptions
from edge_mm.build.finetune.register import check_name, register
from edge_mm.errors import ConfigError


def _signature(o: FinetuneOptions, labels: list[str]) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one."""
    keep = ("task", "base", "train", "dev", "format", "batch_size", "grad_accum", "max_length", "seed", "dev_fraction")
    return {k: str(getattr(o, k)) for k in keep} | {"labels": labels}


def _progress(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    # quiet without a terminal (CI, logs): the per-epoch lines say the same
    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty())


def _save_best(model: Any, tok: Any, staging: Path) -> None:
    tmp = staging / "best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(staging / "best", ignore_errors=True)
    tmp.rename(staging / "best")


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


class Run:
    def __init__(
        self, o: FinetuneOptions, *, packages_dir: Path, base_dir: Path, settings_path: Path | None, out: IO[str]
    ) -> None:
        self.o, self.out = o, out
        self.settings_path = settings_path
        t.check_options(o)
        if o.register:
            check_name(settings_path or Path("settings.toml"), o.register)
        self.data = t.load_data(o)
        self.labels = self.data.labels
        self.device = t.Device(o.device, o.threads)
        torch.manual_seed(o.seed)
        random.seed(o.seed)
        self.tok, model, self.source = t.load_base(o, self.labels, packages_dir=packages_dir, base_dir=base_dir)
        self.model = model.to(self.device.device)
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        enc = lambda xs: t.encode(self.tok, xs, self.labels, o.max_length)  # noqa: E731
        self.train_items, self.dev_items = enc(self.data.train), enc(self.data.dev)
        self.test_items = enc(self.data.test) if self.data.test else None
        self.steps_per_epoch = math.ceil(math.ceil(len(self.train_items) / o.batch_size) / o.grad_accum)
        self.opt, self.sched = t.optimizer(self.model, o, self.steps_per_epoch * o.epochs)
        self.staging = t.staging_dir(o.out)
        self.history: list[dict[str, Any]] = []
        self.best_score, self.best_loss, self.best_epoch, self.start_epoch = -1.0, math.inf, 0, 1
        self.train_seconds, self.trained = 0.0, 0

    # --- state -----------------------------------------------------------------------------------
    def _save_state(self, epoch: int) -> None:
        state = {
            "signature": _signature(self.o, self.labels),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.device.scaler.state_dict(),
            "history": self.history,
            "best": (self.best_score, self.best_loss, self.best_epoch),
            "clock": (self.train_seconds, self.trained),
            "rng": _rng_state(),
        }
        torch.save(state, self.staging / "state.tmp")
        (self.staging / "state.tmp").replace(self.staging / t.STATE)

    def _load_state(self) -> None:
        state = torch.load(self.staging / t.STATE, map_location=self.device.device, weights_only=False)
        if state["signature"] != _signature(self.o, self.labels):
            diff = {k for k in state["signature"] if state["signature"][k] != _signature(self.o, self.labels)[k]}
            raise ConfigError(f"--resume: the interrupted run used other settings ({', '.join(sorted(diff))})")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.device.scaler.load_state_dict(state["scaler"])
        self.history = state["history"]
        self.best_score, self.best_loss, self.best_epoch = state["best"]
        self.train_seconds, self.trained = state["clock"]
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        self.start_epoch = state["epoch"] + 1
        print(f"edge-mm: resuming after epoch {state['epoch']} (best so far: epoch {self.best_epoch})", file=self.out)

    # --- training ----------------------------------------------------------------------------------
    def _epoch(self, epoch: int) -> float:
        o, dev = self.o, self.device
        self.model.train()
        order = list(range(len(self.train_items)))
        random.shuffle(order)
        n_batches = math.ceil(len(order) / o.batch_size)
        bar = _progress(n_batches, f"epoch {epoch}/{o.epochs}")
        loss_sum, seen, t0 = 0.0, 0, time.perf_counter()
        try:
            for i, batch in enumerate(t.batches(self.train_items, order, o.batch_size, self.pad_id)):
                with dev.autocast():
                    loss = self.model(**dev.to(batch)).loss
                dev.scaler.scale(loss / o.grad_accum).backward()
                if (i + 1) % o.grad_accum == 0 or i + 1 == n_batches:
                    dev.scaler.unscale_(self.opt)
                    if o.max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.max_grad_norm)
                    dev.scaler.step(self.opt)
                    dev.scaler.update()
                    self.sched.step()
                    self.opt.zero_grad(set_to_none=True)
                size = batch["input_ids"].shape[0]
                loss_sum += float(loss.detach()) * size
                seen += size
                elapsed = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", ex_s=f"{seen / max(elapsed, 1e-9):.1f}")
        finally:
            bar.close()
            self.train_seconds += time.perf_counter() - t0
            self.trained += seen
        return loss_sum / max(seen, 1)

    def train(self) -> str:
        """Epochs until done, early stop or Ctrl-C; returns how it stopped."""
        o = self.o
        if o.resume:
            self._load_state()
        else:
            shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        stopped = "completed"
        metric = t.metric_name(o.task)
        try:
            for epoch in range(self.start_epoch, o.epochs + 1):
                train_loss = self._epoch(epoch)
                preds, dev_loss = t.predict(
                    self.model, self.dev_items, self.data.dev, self.labels, self.device, self.pad_id, o.batch_size
                )
                score = t.dev_score(o.task, t.evaluate(o.task, self.data.dev, preds, self.labels))
                self.history.append(
                    {"epoch": epoch, "train_loss": train_loss, "dev_loss": dev_loss, "dev_score": score}
                )
                # a higher dev score wins; at an equal score, a lower dev loss (surer predictions)
                better = (score, -dev_loss) > (self.best_score, -self.best_loss)
                if better:
                    self.best_score, self.best_loss, self.best_epoch = score, dev_loss, epoch
                    _save_best(self.model, self.tok, self.staging)
                self._save_state(epoch)
                print(
                    f"epoch {epoch}/{o.epochs}: train loss {train_loss:.4f}, dev loss {dev_loss:.4f}, "
                    f"dev {metric} {score:.4f}{' (best)' if better else ''}, "
                    f"{self.trained / max(self.train_seconds, 1e-9):.1f} examples/s",
                    file=self.out,
                    flush=True,
                )
                if o.patience and epoch - self.best_epoch >= o.patience:
                    stopped = f"early stop: no better dev {metric} for {o.patience} epoch(s)"
                    break
        except KeyboardInterrupt:
            if not (self.staging / "best").is_dir():
                shutil.rmtree(self.staging, ignore_errors=True)
                raise
            stopped = "interrupted (Ctrl-C): the best checkpoint so far was kept; --resume continues"
        return stopped

    # --- finishing ------------------------------------------------------------------------------------
    def finish(self, stopped: str) -> Path:
        """Evaluate the best checkpoint on dev and test, write reports and plots, rename into place."""
        import transformers

        o = self.o
        best_dir = self.staging / "best"
        cls = type(self.model)
        model = cls.from_pretrained(best_dir, attn_implementation="eager").to(self.device.device)
        splits: dict[str, dict[str, Any]] = {}
        parts = [("dev", self.dev_items, self.data.dev), ("test", self.test_items, self.data.test)]
        for name, items, examples in parts:
            if items is None or examples is None:
                continue
            preds, _ = t.predict(model, items, examples, self.labels, self.device, self.pad_id, o.batch_size)
            splits[name] = t.evaluate(o.task, examples, preds, self.labels)
        interrupted = stopped.startswith("interrupted")
        final = self.staging / ("final.tmp" if interrupted else "best")
        if interrupted:  # keep best/ and state.pt for --resume
            shutil.rmtree(final, ignore_errors=True)
            shutil.copytree(best_dir, final)
        summary = {
            "task": o.task,
            "base": o.base,
            "labels": self.labels,
            "epochs": o.epochs,
            "epochs_run": len(self.history),
            "best_epoch": self.best_epoch,
            "best_dev_score": self.best_score,
            "dev_metric": t.metric_name(o.task),
            "stopped": stopped,
            "train_examples": len(self.data.train),
            "dev_examples": len(self.data.dev),
            "bio_repaired": self.data.repaired,
            "examples_per_s": self.trained / max(self.train_seconds, 1e-9),
            "seconds": self.train_seconds,
            "device": self.device.name,
            "history": self.history,
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(o).items()},
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }
        md = report.write_reports(final, summary, splits)
        plots.training_plot(self.history, t.metric_name(o.task), final / "training.png")
        if o.task == "text-classification":
            shown = splits.get("test") or splits["dev"]
            name = "test" if "test" in splits else "dev"
            plots.confusion_plot(shown["confusion"], f"confusion ({name})", final / "confusion.png")
        target = o.out.resolve()
        if target.exists():
            trash = target.with_name(f".{target.name}.old")
            shutil.rmtree(trash, ignore_errors=True)
            target.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        final.rename(target)
        if not interrupted:
            shutil.rmtree(self.staging, ignore_errors=True)
        print(md, file=self.out)
        return target


def finetune(
    o: FinetuneOptions,
    *,
    packages_dir: Path,
    base_dir: Path,
    settings_path: Path | None = None,
    out: IO[str] = sys.stdout,
) -> Path:
    """Run `edge-mm finetune`; returns the checkpoint folder. ConfigError (incl. DataError) for bad input."""
    t0 = time.perf_counter()
    run = Run(o, packages_dir=packages_dir, base_dir=base_dir, settings_path=settings_path, out=out)
    print(
        f"edge-mm: fine-tuning {o.base} for {o.task}: {len(run.data.train)} train / {len(run.data.dev)} dev"
        f"{f' / {len(run.data.test)} test' if run.data.test else ''} examples, {len(run.labels)} labels, "
        f"on {run.device.name}" + (f"; {run.data.repaired} BIO tag(s) repaired" if run.data.repaired else ""),
        file=out,
        flush=True,
    )
    stopped = run.train()
    target = run.finish(stopped)
    print(f"edge-mm: wrote {target} ({stopped}; {time.perf_counter() - t0:.0f} s)", file=out)
    if o.register:
        settings = settings_path or Path("settings.toml")
        register(settings, o.register, o.task, target, o.max_length)
        route = o.task
        print(
            f"edge-mm: registered {o.register!r} in {settings}; next: edge-mm build --only {o.register}, "
            f"then edge-mm serve (POST /v1/{route})",
            file=out,
        )
    if stopped.startswith("interrupted"):
        raise KeyboardInterrupt
    return target
