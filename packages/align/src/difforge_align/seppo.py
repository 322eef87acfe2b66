"""SePPO (semi-policy preference optimisation, Zhang et al. 2024): preference optimisation from
winning images alone.

There are no losing images and no reward model. For each winning training image x^w, a
*reference model* samples x^l for the same caption. The reference model is a previous checkpoint
of the policy. The Diffusion-DPO loss then compares the policy's denoising errors with the
reference's errors on both images (same noise and timestep):

    Δ(x) = ‖ε − ε_θ(x_t)‖² − ‖ε − ε_ref(x_t)‖²
    L    = −log σ(−β/2 · [Δ(x^w) − μ · Δ(x^l)])

**Reference-model selection.** The trained parameters are snapshotted every ``ref_interval``
steps. ``random`` (the paper's strategy) draws the reference uniformly from all snapshots so far,
which widens exploration of the policy space. ``latest`` uses the newest snapshot; ``initial``
uses the starting model, which makes the loss Diffusion-DPO with on-policy losers.

**Anchor-based adaptive flipper.** A reference sample is not always worse than the winning
image, so it is not always learned as a loser. The winning image is the anchor. μ = +1 (learn
x^l as a loser) when the policy's denoising error on x^l is higher than on x^w, i.e. the policy
finds the reference sample less likely than the winner. Otherwise μ = −1, and x^l is learned as
a second winner. ``flipper: false`` fixes μ = +1.

The snapshots are kept in memory and written into every training checkpoint, so a resumed run
draws its references from the same history as an uninterrupted one.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from difforge.plugin_api import Objective, batch_samples


class SePPOOptions(BaseModel):
    """Options of the ``seppo`` objective."""

    model_config = ConfigDict(extra="forbid")

    beta: float = Field(2000.0, gt=0)
    ref_strategy: Literal["random", "latest", "initial"] = Field(
        "random", description="which previous checkpoint is the reference at each step")
    ref_interval: int = Field(10, ge=1, description="steps between snapshots of the trained parameters")
    max_snapshots: int = Field(8, ge=1, description="snapshots kept: the initial one and the newest ones")
    flipper: bool = Field(True, description="anchor-based adaptive flipper; "
                                            "false learns every reference sample as a loser")
    num_steps: int = Field(10, ge=1, description="sampling steps of the reference samples")
    sampler: str = Field("ddim", description="a registered sampler")
    guidance_scale: float = Field(4.0, ge=1)


class PolicySnapshots:
    """Earlier states of a list of trained parameters, kept in memory (SePPO's checkpoints)."""

    def __init__(self, params: list[Tensor], max_kept: int) -> None:
        self.params = params
        self.max_kept = max_kept
        self.steps: list[int] = []
        self.states: list[list[Tensor]] = []

    def __len__(self) -> int:
        return len(self.states)

    def take(self, step: int) -> None:
        """Store the parameters' current values as the snapshot of ``step``; past ``max_kept``,
        the oldest snapshot after the initial one is dropped."""
        self.steps.append(step)
        self.states.append([p.detach().clone() for p in self.params])
        if len(self.states) > self.max_kept:
            del self.steps[1], self.states[1]

    def choose(self, strategy: str, generator: torch.Generator) -> int:
        """Index of the reference snapshot under ``strategy``."""
        if not self.states:
            raise RuntimeError("no snapshot taken yet")
        if strategy == "initial":
            return 0
        if strategy == "latest":
            return len(self.states) - 1
        return int(torch.randint(len(self.states), (1,), generator=generator))

    @contextmanager
    def loaded(self, index: int):
        """Inside: the parameters hold snapshot ``index``; afterwards their own values again
        (the storages are swapped, so nothing is copied or allocated)."""
        state = self.states[index]

        def swap() -> None:
            for i, p in enumerate(self.params):
                p.data, state[i] = state[i], p.data

        swap()
        try:
            yield
        finally:
            swap()


def flipper_sign(policy_error_winner: Tensor, policy_error_reference: Tensor) -> Tensor:
    """SePPO's anchor-based adaptive flipper: +1 where the policy fits the reference sample worse
    than the winning anchor (learn it as a loser), −1 elsewhere (learn it as a winner)."""
    return torch.where(policy_error_reference > policy_error_winner, 1.0, -1.0).detach()


class SePPOObjective(Objective):
    """Winning training images against reference samples of previous checkpoints, with the
    anchor-based adaptive flipper."""

    name = "seppo"
    requires = frozenset({"images", "captions", "reference_model", "on_policy_samples"})
    options_model = SePPOOptions

    def setup(self, context) -> None:
        """Hold the trained parameters; the first step snapshots them, later snapshots follow
        every ``ref_interval`` steps (a resumed run continues the checkpoint's history)."""
        self.context = context
        self.snapshots = PolicySnapshots(context.trainable, self.options.max_snapshots)
        self.samples_used = 0

    def state_dict(self) -> dict[str, Any]:
        """The snapshot history (steps and parameter values) and the sample count."""
        state: dict[str, Any] = {"samples_used": self.samples_used, "snapshot_steps": list(self.snapshots.steps)}
        for i, params in enumerate(self.snapshots.states):
            state.update({f"snapshot.{i}.{j}": p for j, p in enumerate(params)})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the history of :meth:`state_dict` onto the trained parameters' devices and dtypes."""
        params = self.snapshots.params
        self.samples_used = int(state["samples_used"])
        self.snapshots.steps = [int(step) for step in state["snapshot_steps"]]
        self.snapshots.states = [[state[f"snapshot.{i}.{j}"].to(p) for j, p in enumerate(params)]
                                 for i in range(len(self.snapshots.steps))]

    def _maybe_snapshot(self) -> None:
        step = self.context.step
        if not self.snapshots.steps or (step > self.snapshots.steps[-1] and step % self.options.ref_interval == 0):
            self.snapshots.take(step)

    @torch.no_grad()
    def _reference_samples(self, captions: list[str], generator: torch.Generator) -> Tensor:
        o, denoiser = self.options, self.backbone.denoiser
        was_training = denoiser.training
        denoiser.eval()
        try:
            return self.backbone.sample(captions, num_steps=o.num_steps, sampler=o.sampler,
                                        guidance_scale=o.guidance_scale, generator=generator, decode=False)
        finally:
            denoiser.train(was_training)

    def loss(self, batch: dict[str, Any], denoiser: nn.Module, generator: torch.Generator):
        if not hasattr(self, "snapshots"):
            raise RuntimeError("seppo: setup() was not called (the Trainer calls it)")
        bb, param = self.backbone, self.backbone.parameterization
        self._maybe_snapshot()
        captions = list(batch["caption"])
        n = len(captions)
        x_w = bb.encode_images(batch_samples(batch).to(bb.device), generator=generator)
        cond = bb.encode_prompts(captions)
        noise = torch.randn(x_w.shape, generator=generator, dtype=x_w.dtype).to(bb.device)
        t = param.sample_timesteps(n, generator, bb.device)
        ref_index = self.snapshots.choose(self.options.ref_strategy, generator)

        def errors(model: nn.Module, x0: Tensor) -> Tensor:
            noise2, t2 = torch.cat([noise, noise]), torch.cat([t, t])
            x_t = param.add_noise(x0, noise2, t2)
            out = bb.predict(x_t, t2, torch.cat([cond, cond]), denoiser=model)
            return F.mse_loss(out.float(), param.target(x0, noise2, t2).float(), reduction="none").flatten(1).mean(1)

        # the reference runs first: restoring the parameters after the policy's forward pass
        # would modify tensors its backward pass needs
        with self.snapshots.loaded(ref_index):
            x_l = self._reference_samples(captions, generator).to(x_w)
            x0 = torch.cat([x_w, x_l])
            with torch.no_grad():
                ref_err = errors(bb.denoiser, x0)
        self.samples_used += n
        model_err = errors(denoiser, x0)
        mu = flipper_sign(model_err[:n], model_err[n:]) if self.options.flipper else torch.ones_like(model_err[:n])
        delta_w = model_err[:n] - ref_err[:n]
        delta_l = model_err[n:] - ref_err[n:]
        inside = -0.5 * self.options.beta * (delta_w - mu * delta_l)
        loss = -F.logsigmoid(inside).mean()
        return loss, {"loss": loss.detach(), "implicit_accuracy": (inside > 0).float().mean().detach(),
                      "learned_as_winner": (mu < 0).float().mean().detach(),
                      "reference_step": torch.tensor(float(self.snapshots.steps[ref_index])),
                      "winner_error": model_err[:n].mean().detach(), "reference_error": model_err[n:].mean().detach()}
