"""The training loop every weight-training stage shares: Adam, a cosine schedule, resumable.

    loop = TrainingLoop(ctx, model, steps=1000, lr=1e-3, lr_min=1e-6, checkpoint_every=200)
    for step in loop:                 # learning rate set, gradients zeroed
        loop.backward(loss_of(step), step)
        done = loop.update(step)      # optimiser step
        loop.log(done, {"loss": ...})
        if loop.due(done, val_every):
            validate()
                                      # checkpoint when due, once the step's body has run
    if loop.resumed_after_end:        # no step ran: validate what the checkpoint holds
        validate()

The module's and optimiser's state, the companions and the step are the stage checkpoint, written after the
whole body of a step (so a validation recorded at a checkpoint's step is in it): a resumed stage continues at the
step after the last checkpoint with exactly the state it had.

In a data-parallel stage under torchrun (``ctx.shard``), every process starts from rank 0's state,
gradients are averaged over the processes before each optimiser step and BatchNorm statistics
after it, so the module stays the same on every process.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn

from nasden.common import distributed
from nasden.pipeline.schedule import cosine_lr, set_lr

if TYPE_CHECKING:
    from nasden.pipeline.run import StageContext


class TrainingLoop:
    """Adam over ``parameters`` (default: all of ``module``'s) with a cosine schedule, resumable.

    ``companions`` are further objects with ``state_dict``/``load_state_dict`` (a second optimiser,
    a record of figures) saved in and restored from the same checkpoint.
    """

    def __init__(self, ctx: StageContext, module: nn.Module, steps: int, lr: float, lr_min: float,
                 checkpoint_every: int, parameters: Iterable[nn.Parameter] | None = None, log_every: int = 10,
                 companions: Mapping[str, Any] | None = None):
        self.ctx, self.module, self.steps = ctx, module, steps
        self.companions = dict(companions or {})
        self.lr, self.lr_min, self.checkpoint_every, self.log_every = lr, lr_min, checkpoint_every, log_every
        self.parameters = list(module.parameters() if parameters is None else parameters)
        self.optimizer = torch.optim.Adam(self.parameters, lr=lr)
        self.processes = ctx.shard[1] if ctx.shard else 1
        self.start = 0
        state = ctx.load_checkpoint()
        if state is not None:
            module.load_state_dict(state["module"])
            self.optimizer.load_state_dict(state["optimizer"])
            for name, companion in self.companions.items():
                if name in state["companions"]:
                    companion.load_state_dict(state["companions"][name])
                else:  # a checkpoint written before this companion existed
                    warnings.warn(f"{ctx.tag}: the checkpoint has no {name!r}; it starts afresh", stacklevel=2)
            self.start = state["step"]
            started = state.get("processes", 1)
            if started != self.processes:
                warnings.warn(f"{ctx.tag}: resumed on {self.processes} process(es), started on {started}: "
                              f"the effective batch changes with the number of processes", stacklevel=2)
        if ctx.shard:
            distributed.broadcast_module(module)
        self.last_saved = self.start

    def __iter__(self) -> Iterator[int]:
        with self.ctx.progress(self.steps, self.start) as self.bar:
            for step in range(self.start, self.steps):
                set_lr(self.optimizer, cosine_lr(step, self.steps, self.lr, self.lr_min))
                self.optimizer.zero_grad(set_to_none=True)
                yield step
                self._checkpoint(step + 1)

    def backward(self, loss: Tensor, step: int) -> None:
        """Stop the stage on a NaN or infinite loss (keeping the last checkpoint), else backpropagate."""
        self.ctx.check_loss(loss, step, self.last_saved)
        loss.backward()

    def update(self, step: int) -> int:
        """Take the optimiser step; returns the number of steps done."""
        if self.ctx.shard:
            distributed.average_gradients(self.parameters)
        self.optimizer.step()
        if self.ctx.shard:
            distributed.average_buffers(self.module)
        self.bar.update()
        return step + 1

    def _checkpoint(self, done: int) -> None:
        """Write the checkpoint after ``done`` steps when due (every ``checkpoint_every`` and after the last)."""
        if done % self.checkpoint_every == 0 or done == self.steps:
            self.ctx.save_checkpoint({"step": done, "module": self.module.state_dict(),
                                      "optimizer": self.optimizer.state_dict(), "processes": self.processes,
                                      "companions": {name: c.state_dict() for name, c in self.companions.items()}})
            self.last_saved = done

    def due(self, done: int, every: int) -> bool:
        """Whether something done every ``every`` steps (validation, logging) is due after ``done`` steps:
        at each multiple of ``every`` and after the last step."""
        return done % every == 0 or done == self.steps

    @property
    def resumed_after_end(self) -> bool:
        """The stage was resumed after its last step, so the loop runs no step and nothing it does
        (validation) has happened in this process."""
        return self.start >= self.steps

    def log(self, done: int, scalars: dict[str, float]) -> None:
        """Write ``scalars`` to TensorBoard every ``log_every`` steps and at the end."""
        if not self.due(done, self.log_every):
            return
        for name, value in scalars.items():
            self.ctx.scalar(name, value, done)
        name, value = next(iter(scalars.items()))
        self.bar.set_postfix({name: f"{value:.3g}"})
