"""BCP and UniMatch pieces: box masks, copy-paste alignment, confident pseudo-labels, BCP's stages."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from idealseg.benchmark.pricing import phase_jobs, run_parts
from idealseg.config import resolve_config
from idealseg.engine.trainer import Trainer
from idealseg.losses.consistency import confident_pseudo_labels
from idealseg.losses.dice_ce import DiceCELoss
from idealseg.methods import get_method
from idealseg.transforms.mixing import box_mask, paste


def test_bcp_box_covers_two_thirds_of_each_side():
    mask = box_mask(6, (30, 30))
    assert mask.shape == (6, 30, 30)
    assert torch.all(mask.sum((1, 2)) == 400)  # 20 x 20
    rows, cols = mask.amax(2), mask.amax(1)
    assert torch.all(rows.sum(1) == 20) and torch.all(cols.sum(1) == 20)  # one box, not scattered pixels


def test_cutmix_box_can_be_absent():
    torch.manual_seed(0)
    masks = box_mask(400, (32, 32), area=(0.02, 0.4), aspect=(0.3, 3.3), p=0.5)
    empty = (masks.sum((1, 2)) == 0).float().mean()
    assert 0.4 < empty < 0.6
    present = masks.sum((1, 2))[masks.sum((1, 2)) > 0] / 1024
    assert present.max() <= 0.45 and present.min() >= 0.01


def test_copy_paste_keeps_labels_and_images_aligned():
    torch.manual_seed(0)
    labels_a = torch.randint(0, 4, (3, 16, 16))
    labels_b = torch.randint(0, 4, (3, 16, 16))
    image_a, image_b = labels_a[:, None].float() / 10, labels_b[:, None].float() / 10 + 0.5  # image encodes label
    mask = box_mask(3, (16, 16))
    image, label = paste(image_a, image_b, mask), paste(labels_a, labels_b, mask)
    from_a = mask.bool()
    assert torch.equal((image[:, 0][from_a] * 10).round().long(), label[from_a])
    assert torch.equal(((image[:, 0][~from_a] - 0.5) * 10).round().long(), label[~from_a])


def test_confident_pseudo_labels_carry_no_gradient_and_drop_uncertain_pixels():
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 1, 0, 0] = 10.0  # pixel 0: class 1 at p ~ 1.0; pixel 1: 50/50
    logits.requires_grad_(True)
    labels, weight = confident_pseudo_labels(logits, 0.95)
    assert not labels.requires_grad and not weight.requires_grad
    assert labels.tolist() == [[[1, 0]]] and weight.tolist() == [[[1.0, 0.0]]]


def test_weighted_loss_ignores_zero_weight_pixels():
    loss = DiceCELoss(3)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    weight = torch.ones(2, 8, 8)
    weight[:, :, 4:] = 0
    other = target.clone()
    other[:, :, 4:] = (other[:, :, 4:] + 1) % 3  # change only ignored pixels
    assert torch.allclose(loss(logits, target, weight), loss(logits, other, weight))
    assert torch.allclose(loss(logits, target, torch.ones(2, 8, 8)), loss(logits, target))


def test_bcp_warms_up_on_labels_then_resets_its_teacher():
    cfg = resolve_config("finetune", "tiny", None, {"method": "bcp", "input_size": 32, "labeled_warmup": 0.5})
    method = get_method("bcp")(cfg)
    images, labels = torch.rand(4, 1, 32, 32), torch.randint(0, 4, (2, 32, 32))
    out = method(images, labels, 2, progress=0.1)
    assert set(out) == {"loss", "sup"} and not bool(method.self_training)
    with torch.no_grad():
        for p in method.student.parameters():
            p.add_(0.01)
    out = method(images, labels, 2, progress=0.6)
    assert "mix" in out and bool(method.self_training)
    teacher, student = dict(method.teacher.named_parameters()), dict(method.student.named_parameters())
    assert all(torch.equal(teacher[k], student[k]) for k in student)  # BatchNorm statistics moved on since
    assert "self_training" in method.state_dict()  # a resumed run stays in its stage


def test_bcp_priced_parts_are_the_steps_it_takes():
    """The parts the benchmark prices a BCP run by (pricing.run_parts) are its steps: a run made all of the
    warm-up part takes labelled-only steps (two slices through the student, no teacher), one made all
    of the self-training part takes mixed steps (four slices, both directions)."""
    assert run_parts("bcp", {}) == [(0.25, {"labeled_warmup": 1.0}), (0.75, {"labeled_warmup": 0.0})]
    assert run_parts("supervised", {}) == [(1.0, {})]
    images, labels = torch.rand(4, 1, 32, 32), torch.randint(0, 4, (2, 32, 32))
    seen = []
    for _, part in run_parts("bcp", {"labeled_warmup": 0.4}):
        cfg = resolve_config("finetune", "tiny", None, {"method": "bcp", "input_size": 32, **part})
        method = get_method("bcp")(cfg)
        method.student.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
        out = method(images, labels, 2, progress=0.5)
        assert set(out) == ({"loss", "sup"} if part["labeled_warmup"] else {"loss", "mix"})
    assert seen == [2, 4]


def test_largest_components_keeps_one_blob_per_class_and_slice():
    from idealseg.transforms.components import largest_components_2d as largest_components

    labels = torch.zeros(2, 10, 10, dtype=torch.long)
    labels[0, 1:4, 1:4] = 1  # 9 pixels: kept
    labels[0, 7:9, 7:9] = 1  # 4 pixels of the same class: dropped
    labels[0, 6, 1] = 2  # a class with one component: kept
    labels[1, 5, 5] = 1  # the other slice's only blob: kept, however small
    out = largest_components(labels, 3)
    assert out[0, 1:4, 1:4].eq(1).all() and out[0, 7:9, 7:9].eq(0).all() and out[0, 6, 1] == 2
    assert out[1, 5, 5] == 1 and int(out.ne(labels).sum()) == 4


def test_ema_averages_or_copies_batchnorm_statistics():
    from idealseg.methods.shared.ema import ema_update

    teacher, student = torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    student.running_mean.fill_(1.0)
    student.num_batches_tracked.fill_(7)
    ema_update(teacher, student, 0.9, "average")
    assert torch.allclose(teacher.running_mean, torch.full((2,), 0.1)) and int(teacher.num_batches_tracked) == 7
    ema_update(teacher, student, 0.9, "copy")
    assert torch.equal(teacher.running_mean, student.running_mean)
    before = teacher.running_var.clone()
    student.running_var.fill_(3.0)
    ema_update(teacher, student, 0.9, "none")
    assert torch.equal(teacher.running_var, before)


def test_thresholded_cross_pseudo_labels_carry_no_gradient():
    from idealseg.losses.consistency import _hard_ce, cross_pseudo_loss

    torch.manual_seed(0)
    student = torch.randn(2, 4, 8, 8, requires_grad=True)
    teacher = (torch.randn(2, 4, 8, 8) * 5).requires_grad_(True)
    _hard_ce(student, teacher, 0.9).backward()
    assert teacher.grad is None and student.grad is not None and student.grad.abs().sum() > 0
    flat = torch.zeros(1, 4, 8, 8)  # every pixel at p = 0.25: nothing reaches the threshold
    assert cross_pseudo_loss(flat, flat, threshold=0.5) == 0
    assert cross_pseudo_loss(flat, flat) > 0


@pytest.mark.parametrize("options", [{"mixing": "copy-paste"}, {"weak_to_strong": True, "confidence": 0.5}])
def test_ideal_with_the_fields_recipes_lowers_its_loss(options, phantom, tmp_path):
    torch.manual_seed(0)
    config = {"method": "ideal", "dataset": str(phantom), "labeled": "2", "log_every": 1, "val_every": 0,
              "threads": 2, "iterations": 30, "input_size": 32, "lr": 0.02, **options}
    Trainer(resolve_config("finetune", "tiny", None, config), tmp_path / "run").fit()
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    values = [float(r["loss"]) for r in rows]
    assert np.mean(values[-6:]) < 0.9 * np.mean(values[:6]), values
    assert ("mix" in rows[0]) == ("mixing" in options) and ("strong" in rows[-1]) == ("weak_to_strong" in options)


def test_weighted_dice_of_a_perfect_prediction_is_zero_at_any_weight():
    loss = DiceCELoss(3)
    target = torch.randint(0, 3, (2, 8, 8))
    probs = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    for w in (1.0, 0.5, 0.25):
        assert loss.dice(probs, target, torch.full((2, 8, 8), w)) < 1e-5, w


def test_bcp_plain_warmup_trains_on_unmixed_labelled_slices():
    """warmup_mixing none: the warm-up's targets are each labelled slice's own label (no box of the
    other pasted in), and only its warm-up part is priced apart (the self-training part keeps the
    default's measurement)."""
    labels = torch.stack([torch.full((32, 32), 1), torch.full((32, 32), 2)])
    images = torch.rand(4, 1, 32, 32)
    for mixing, mixed in (("none", False), ("copy-paste", True)):
        cfg = resolve_config("finetune", "tiny", None, {"method": "bcp", "input_size": 32, "warmup_mixing": mixing})
        method = get_method("bcp")(cfg)
        targets: list[torch.Tensor] = []
        method.loss.register_forward_hook(lambda module, args, out, seen=targets: seen.append(args[1]))
        out = method(images, labels, 2, progress=0.1)
        assert set(out) == {"loss", "sup"} and len(targets[0]) == 2
        classes = [set(t.unique().tolist()) - {0} for t in targets[0]]  # 0: outside a rotated slice
        assert (classes != [{1}, {2}]) == mixed
    assert run_parts("bcp", {"warmup_mixing": "none"}) == [
        (0.25, {"labeled_warmup": 1.0, "warmup_mixing": "none"}),
        (0.75, {"labeled_warmup": 0.0, "warmup_mixing": None})]
    jobs = phase_jobs("finetune", "bcp", {"warmup_mixing": "none", "lr": 0.001}, {"warmup_mixing": "none"})
    assert [job[2] for _, job in jobs] == [{"labeled_warmup": 1.0, "warmup_mixing": "none"}, {"labeled_warmup": 0.0}]



def _inline_bidirectional_paste(xl, yl, xu, w):
    """The mixed batch as BCP and IDEAL each built it inline before they shared BidirectionalPaste
    (images, a function mixing pseudo-labels with `yl`, weights): the reference the helper must match
    bit for bit, random draws included."""
    n = len(xl)
    other = torch.roll(torch.arange(n), 1)
    size = tuple(xl.shape[-2:])
    inward, outward = box_mask(n, size), box_mask(n, size)

    def mixed(pseudo):
        return torch.cat([paste(yl, pseudo, inward), paste(pseudo[other], yl[other], outward)])

    images = torch.cat([paste(xl, xu, inward), paste(xu[other], xl[other], outward)])
    ones = torch.ones_like(inward)
    weight = torch.cat([paste(ones, w * ones, inward), paste(w * ones, ones, outward)])
    return images, mixed, weight


def test_bidirectional_paste_equals_the_inline_mixing_it_replaced():
    from idealseg.methods.shared.paste import BidirectionalPaste

    xl, xu = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    yl, pseudo = torch.randint(0, 4, (3, 16, 16)), torch.randint(0, 4, (3, 16, 16))
    for w in (0.5, 0.5 * 0.37):
        torch.manual_seed(3)
        images, mixed, weight = _inline_bidirectional_paste(xl, yl, xu, w)
        torch.manual_seed(3)
        pairs = BidirectionalPaste.draw(3, (16, 16), "cpu")
        assert torch.equal(pairs.mix(xl, xu), images) and torch.equal(pairs.mix(yl, pseudo), mixed(pseudo))
        assert torch.equal(pairs.weights(w), weight)


def _inline_bcp_step(bcp, images, labels, n_labeled):
    """BCP's self-training step as it read before BidirectionalPaste: (network input, target, weight, loss)."""
    from idealseg.methods.shared.two_stream import pad_labels
    from idealseg.transforms.components import largest_components_2d

    x, y = bcp.augment(images, pad_labels(labels, len(images)))
    xl, yl, xu = x[:n_labeled], y[:n_labeled], x[n_labeled:]
    with torch.no_grad():
        bcp.teacher.train()
        pseudo = largest_components_2d(bcp.teacher(xu).argmax(1), bcp.cfg.num_classes)
    n = min(len(xl), len(xu))
    mixed_images, mixed, weight = _inline_bidirectional_paste(xl[:n], yl[:n], xu[:n], bcp.cfg.unlabeled_weight)
    target = mixed(pseudo[:n])
    return mixed_images, [target], weight, bcp.loss(bcp.student(mixed_images), target, weight)


def _inline_ideal_step(ideal, images, labels, n_labeled, progress):
    """IDEAL's copy-paste step as it read before BidirectionalPaste: (network input, targets, weight, loss)."""
    from idealseg.losses.consistency import sigmoid_rampup
    from idealseg.methods.shared.two_stream import pad_labels

    x, y = ideal.augment(images, pad_labels(labels, len(images)))
    xl, yl, xu = x[:n_labeled], y[:n_labeled], x[n_labeled:]
    n = min(len(xl), len(xu))
    xl, yl, xu = xl[:n], yl[:n], xu[:n]
    with torch.no_grad():
        u1, u2 = (logits.argmax(1) for logits in ideal.streams(xu))
    w = ideal.cfg.unlabeled_weight * sigmoid_rampup(progress, ideal.cfg.rampup)
    mixed_images, mixed, weight = _inline_bidirectional_paste(xl, yl, xu, w)
    m1, m2 = ideal.streams(mixed_images)
    targets = [mixed(u2), mixed(u1)]
    loss = 0.5 * (ideal.loss(m1, targets[0], weight) + ideal.loss(m2, targets[1], weight))
    return mixed_images, targets, weight, loss


@pytest.mark.parametrize("name", ["bcp", "ideal"])
def test_each_method_mixes_its_step_as_before_the_shared_paste(name):
    """On a fixed seed, each method's mixed step (the network's input, the loss's targets and weights,
    the loss) is the one its inline mixing computed before BidirectionalPaste."""
    import copy

    options = {"method": name, "input_size": 32, **({"mixing": "copy-paste"} if name == "ideal" else {})}
    model = get_method(name)(resolve_config("finetune", "tiny", None, options))
    if name == "bcp":
        model.self_training.fill_(True)  # past the warm-up, the teacher already reset
    reference = copy.deepcopy(model)
    images, labels, progress = torch.rand(4, 1, 32, 32), torch.randint(0, 4, (2, 32, 32)), 0.6
    net_inputs, loss_args = [], []
    model.get_submodule("student" if name == "bcp" else "encoder").register_forward_hook(
        lambda module, args, out: net_inputs.append(args[0]))
    model.loss.register_forward_hook(lambda module, args, out: loss_args.append(args))
    torch.manual_seed(11)
    loss = model(images, labels, 2, progress)["loss"]
    torch.manual_seed(11)
    if name == "bcp":
        mixed_images, targets, weight, expected = _inline_bcp_step(reference, images, labels, 2)
    else:
        mixed_images, targets, weight, expected = _inline_ideal_step(reference, images, labels, 2, progress)
    assert torch.equal(net_inputs[-1], mixed_images) and len(loss_args) == len(targets)
    for (_, target, w), want in zip(loss_args, targets, strict=True):
        assert torch.equal(target, want) and torch.equal(w, weight)
    assert torch.equal(loss, expected)
