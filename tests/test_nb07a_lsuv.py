"LSUV from nbs/07a_lsuv.ipynb: find_modules, is_lin_layer, ConvLayer's knobs and lsuv_module."

import pytest
import torch
from torch import nn

from exp.nb_07a import ConvLayer, GeneralRelu, find_modules, is_lin_layer, lsuv_module


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(ConvLayer(1, 4, 5, leak=0.1, sub=0.4, maxv=6.),
                         nn.Sequential(ConvLayer(4, 8), ConvLayer(8, 8)),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def output_stats(model, m, xb):
    out = {}
    def record(mod, i, o): out.update(mean=o.mean().item(), std=o.std().item())
    h = m.register_forward_hook(record)
    with torch.no_grad(): model(xb)
    h.remove()
    return out['mean'], out['std']


def test_find_modules_in_order_and_not_inside_matches():
    model = small_cnn()
    convs = find_modules(model, lambda o: isinstance(o, ConvLayer))
    assert convs == [model[0], model[1][0], model[1][1]]
    assert find_modules(model, lambda o: isinstance(o, nn.Conv2d)) == [c.conv for c in convs]
    assert find_modules(model, lambda o: isinstance(o, nn.LSTM)) == []
    assert is_lin_layer(nn.Linear(2, 2)) and is_lin_layer(nn.Conv2d(1, 1, 3))
    assert is_lin_layer(nn.ReLU())
    assert not is_lin_layer(nn.AdaptiveAvgPool2d(1)) and not is_lin_layer(GeneralRelu())


def test_convlayer_bias_shifts_the_output():
    torch.manual_seed(1)
    layer, x = ConvLayer(2, 3, sub=0.4), torch.randn(2, 2, 6, 6)
    assert layer.bias == pytest.approx(-0.4) and layer.weight is layer.conv.weight
    before = layer(x)
    layer.bias = layer.bias + 1.5
    assert layer.relu.sub == pytest.approx(-1.1)
    assert torch.allclose(layer(x), before + 1.5)


def test_lsuv_every_layer_in_turn():
    model, xb = small_cnn(), torch.randn(64, 1, 28, 28)
    convs = find_modules(model, lambda o: isinstance(o, ConvLayer))
    for m in convs:
        mean, std = lsuv_module(model, m, xb)
        assert abs(mean) < 1e-3 and abs(std - 1) < 1e-3
        assert not m._forward_hooks   # the hook is gone
    for m in convs:   # the later layers were fixed with the earlier ones in place: all still hold
        mean, std = output_stats(model, m, xb)
        assert abs(mean) < 1e-3 and abs(std - 1) < 1e-3


def test_lsuv_on_linear_layer_with_parameter_bias():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    xb = torch.randn(128, 20) * 3 + 1
    mean, std = lsuv_module(model, model[2], xb)
    assert (mean, std) == output_stats(model, model[2], xb)
    assert abs(mean) < 1e-3 and abs(std - 1) < 1e-3
    # still a trainable leaf parameter
    assert model[2].bias.requires_grad and model[2].bias.grad_fn is None


def test_lsuv_leaves_earlier_layers_alone():
    model, xb = small_cnn(), torch.randn(32, 1, 28, 28)
    first = {k: v.clone() for k, v in model[0].state_dict().items()}
    sub0 = model[0].relu.sub
    lsuv_module(model, model[1][0], xb)
    for k, v in model[0].state_dict().items(): assert torch.equal(v, first[k])
    assert model[0].relu.sub == sub0


def test_lsuv_warns_when_it_cannot_converge():
    model, xb = small_cnn(), torch.randn(16, 1, 28, 28)
    unfinished = r'lsuv_module: ConvLayer still has mean .* after 1 rounds'
    with pytest.warns(UserWarning, match=unfinished):
        lsuv_module(model, model[1][1], xb, tol=0., max_iters=1)


def test_lsuv_module_not_in_model():
    model, other = small_cnn(), ConvLayer(1, 4)
    with pytest.raises(ValueError, match='ConvLayer was not called by model'):
        lsuv_module(model, other, torch.randn(4, 1, 28, 28))
    assert not other._forward_hooks


def test_lsuv_constant_output_is_an_error():
    torch.manual_seed(3)
    model = small_cnn()
    # the first layer outputs -sub everywhere
    with torch.no_grad(): model[0].conv.weight.zero_(); model[0].conv.bias.zero_()
    with pytest.raises(ValueError, match="ConvLayer's output on xb is constant"):
        lsuv_module(model, model[0], torch.randn(8, 1, 28, 28))
    assert not model[0]._forward_hooks


def test_get_batch_is_the_first_batch_after_begin_batch():
    "get_batch returns the loader's first batch with the runner's begin_batch transforms applied."
    from exp.nb_07a import (BatchTransformXCallback, DataBunch, DataLoader, Dataset, get_batch,
                            get_runner)
    x, y = torch.arange(24.).view(6, 4), torch.arange(6)
    data = DataBunch(DataLoader(Dataset(x, y), 4), DataLoader(Dataset(x, y), 4), c=6)
    _, run = get_runner(nn.Linear(4, 6), data, cbs=[BatchTransformXCallback(lambda t: -t)])
    xb, yb = get_batch(data.train_dl, run)
    assert torch.equal(xb, -x[:4]) and torch.equal(yb, y[:4])
    assert run.xb is xb and run.yb is yb
