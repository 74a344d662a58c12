"""The published training recipe (issue 25, section 2): ResNet-18 start, global batches that do
not depend on the number of processes, neighbour pairing of CutMix/MixUp, mixed images in the
inversion, a fresh AdamW per slope level, and the whole test set evaluated at each phase end."""
import torch

from core.runtime import generator
from core.suite import RunContext, StepContext
from cordsnet import data as D


def make_suite(*argv, stages=("train",), world_size=1, rank=0):
    """A CordsNet suite as main.py would build it from ``argv`` (on the CPU)."""
    import main
    from core.runtime import DistEnv

    _, suite_cls, cfg = main.parse_args(["--model", "cordsnet", *argv])
    env = DistEnv(rank=rank, world_size=world_size)
    return suite_cls(RunContext(cfg=cfg, device=torch.device("cpu"), env=env, stages=stages))


DIGITS = ["--dataset", "digits", "--depth", "2", "--input_size", "16", "--batch_size", "8"]


def _step(phase, phase_step=0, seed=5, rank=0, world_size=1):
    return StepContext(step=phase_step, phase=phase, phase_step=phase_step, rank=rank, world_size=world_size,
                       device=torch.device("cpu"), generator=generator(seed))


def test_the_inversion_phase_mixes_images_where_published():
    mixed_suite = make_suite(*DIGITS, "--mix", "on", "--inversion_steps", "4")
    plain_suite = make_suite(*DIGITS, "--mix", "off", "--inversion_steps", "4")
    images, labels = mixed_suite.training_batch(_step("inversion", 2))
    raw, raw_labels = plain_suite.training_batch(_step("inversion", 2))
    expect, soft, info = D.mix_batch(raw, raw_labels, 10, generator(5))
    assert torch.equal(images, expect) and not torch.equal(images, raw)
    assert torch.equal(labels, soft)  # unused by the inversion's loss, which fits the mixed images
    assert D.uses_mixing("fashion_mnist", "auto") and D.uses_mixing("cifar10", "auto")
    assert not D.uses_mixing("mnist", "auto") and not D.uses_mixing("imagenet", "auto")
