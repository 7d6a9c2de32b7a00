"""torch.compile of the networks: same names, same numbers, only where asked."""

from __future__ import annotations

import copy

import torch

from idealseg.config import resolve_config
from idealseg.engine.compiled import compile_mode, compile_networks
from idealseg.methods import get_method


def test_compile_mode_follows_the_option_and_is_off_by_default():
    assert compile_mode(resolve_config("finetune", "gpu", None, {}).compile) is None  # measured slower
    assert compile_mode("on") == "default"
    assert compile_mode("cudagraphs") == "reduce-overhead"


def test_compiled_networks_keep_names_outputs_and_gradients():
    """The networks inside IDEAL (encoder, two decoders) are compiled in place; the state dict, the
    outputs and the gradients equal an eager copy's (aot_eager: the same graphs, no code generation).
    In eval mode: compiled, the CPU's byte-mask dropout is nn.Dropout, whose masks differ."""
    cfg = resolve_config("finetune", "tiny", None, {"method": "ideal", "perturb1": "none", "perturb2": "none"})
    torch.manual_seed(0)
    eager = get_method("ideal", "finetune")(cfg)
    eager.eval()
    compiled = copy.deepcopy(eager)
    assert compile_networks(compiled, backend="aot_eager") == ["encoder", "decoder1", "decoder2"]
    assert list(compiled.state_dict()) == list(eager.state_dict())
    x = torch.randn(3, 1, 32, 32)
    outs = []
    for method in (eager, compiled):
        l1, l2 = method.streams(x)
        (l1.square().mean() + l2.abs().mean()).backward()
        outs.append((l1.detach(), l2.detach(), {n: p.grad.clone() for n, p in method.named_parameters()}))
    (a1, a2, ga), (b1, b2, gb) = outs
    torch.testing.assert_close(a1, b1)
    torch.testing.assert_close(a2, b2)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-6, msg=name)
