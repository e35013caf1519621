"""The KL coefficient beta of the shaped reward r = score - beta * KL(pi || pi_ref)."""

from __future__ import annotations


class FixedKLController:
    """beta stays at its initial value."""

    def __init__(self, init_kl_coef: float):
        self.value = float(init_kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Steers the measured KL towards a target (Ziegler et al. 2019, section 2.2):

        error = clip(KL / target - 1, -0.2, 0.2)
        beta <- beta * (1 + error * n_steps / horizon)

    `n_steps` is the number of samples (episodes) in the update; `horizon` sets how fast beta
    moves: with the error at its clip, beta changes by a factor e^0.2 every `horizon` samples.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        super().__init__(init_kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
