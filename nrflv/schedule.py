"""The source's rule that lengthens the negative phase when the model's samples stop
keeping up (an option, off by default: ``neg_it_schedule``).

Each update appends the positive and negative energies to histories of the last
``history`` updates. At every new epoch, once both histories are full, after epoch 5 and
when no cool-down is running: if ``mean(E-) > mean(E+) + margin`` the negative phase gets
``int(1.25 x)`` steps, the histories are cleared and a cool-down of ``cooldown`` epochs starts.
"""
from __future__ import annotations

from collections import deque


class NegItSchedule:
    """State of the rule (all plain numbers, so it lives in the checkpoint)."""

    def __init__(self, num_it_neg: int, history: int = 200, margin: float = 0.0, cooldown: int = 5,
                 first_epoch: int = 6, factor: float = 1.25):
        self.num_it_neg, self.margin, self.cooldown_len = num_it_neg, margin, cooldown
        self.first_epoch, self.factor = first_epoch, factor
        self.pos: deque = deque(maxlen=history)
        self.neg: deque = deque(maxlen=history)
        self.cooldown, self.epoch = 0, 0

    def record(self, e_pos: float, e_neg: float) -> None:
        self.pos.append(float(e_pos))
        self.neg.append(float(e_neg))

    def new_epoch(self, epoch: int) -> int:
        """Apply the rule for every epoch boundary passed up to ``epoch``; the phase length."""
        while self.epoch < epoch:
            self.epoch += 1
            full = len(self.pos) == self.pos.maxlen and len(self.neg) == self.neg.maxlen
            if not full:
                continue
            if self.cooldown > 0:
                self.cooldown -= 1
            elif self.epoch >= self.first_epoch and \
                    sum(self.neg) / len(self.neg) > sum(self.pos) / len(self.pos) + self.margin:
                self.num_it_neg = int(self.num_it_neg * self.factor)
                self.cooldown = self.cooldown_len
                self.pos.clear()
                self.neg.clear()
        return self.num_it_neg

    def state_dict(self) -> dict:
        return {"num_it_neg": self.num_it_neg, "pos": list(self.pos), "neg": list(self.neg),
                "cooldown": self.cooldown, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.num_it_neg, self.cooldown, self.epoch = state["num_it_neg"], state["cooldown"], state["epoch"]
        self.pos.clear()
        self.pos.extend(state["pos"])
        self.neg.clear()
        self.neg.extend(state["neg"])
