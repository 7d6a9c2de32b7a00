"""The U-Net's speed-motivated pieces compute what the plain layers compute."""

from __future__ import annotations

import torch
from torch import nn

from idealseg.models.unet import ByteMaskDropout, UNet, UpBlock, fold_batchnorm


def test_bilinear_up_runs_conv_first_with_the_same_result_and_keys():
    torch.manual_seed(0)
    block = UpBlock(32, 16, 16, upsampling="bilinear")
    x = torch.randn(2, 32, 8, 8)
    upsample_first = nn.Sequential(*block.up)  # the same modules, in declaration order
    assert torch.allclose(block.up(x), upsample_first(x), atol=1e-5)
    assert block.up(x).shape == (2, 16, 16, 16)
    assert "decoder.ups.0.up.1.weight" in UNet(4).state_dict()  # checkpoints keep their key names


def test_byte_mask_dropout_drops_the_rounded_fraction_and_rescales():
    torch.manual_seed(0)
    drop = ByteMaskDropout(0.05).train()
    x = torch.rand(4, 16, 128, 128).add_(0.5).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = drop(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - 13 / 256) < 2e-3
    scale = 256 / 243
    assert torch.allclose(y[~dropped], x[~dropped] * scale)
    y.sum().backward()
    expected_grad = (~dropped).float() * scale
    assert torch.allclose(x.grad, expected_grad)


def test_byte_mask_dropout_is_identity_in_eval_and_repeatable_under_a_seed():
    x = torch.rand(2, 8, 16, 16) + 0.5
    assert torch.equal(ByteMaskDropout(0.5).eval()(x), x)
    drop = ByteMaskDropout(0.5).train()
    torch.manual_seed(3)
    first = drop(x)
    torch.manual_seed(3)
    assert torch.equal(drop(x), first)
    assert 0.4 < (first == 0).float().mean().item() < 0.6
    assert torch.equal(ByteMaskDropout(1.0).train()(x), torch.zeros_like(x))


def test_folding_batchnorm_keeps_the_eval_output():
    torch.manual_seed(0)
    model = UNet(4)
    for module in model.modules():  # statistics as after training, not the identity ones of a new model
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
    x = torch.rand(3, 1, 32, 32)
    expected = model.eval()(x)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(folded(x), expected, atol=1e-4)
