"""The opening of the course's 06 (normalize, datasets, a DataBunch, a CNN trained with callback
factories), typed along against exp.nb_06 on random data shaped like MNIST."""
from functools import partial

import torch
import torch.nn.functional as F

from exp.nb_06 import (AvgStatsCallback, BatchTransformXCallback, CudaCallback, DataBunch,
                       Dataset, accuracy, conv_layer, get_dls, get_learn_run, mnist_view,
                       normalize_to)


def test_course_06_opening_runs_against_exp():
    torch.manual_seed(0)
    x_train, x_valid = torch.rand(96, 784) * 255, torch.rand(32, 784) * 200
    y_train, y_valid = torch.randint(0, 10, (96,)), torch.randint(0, 10, (32,))
    x_train, x_valid = normalize_to(x_train, x_valid)
    assert abs(x_train.mean().item()) < 1e-4 and abs(x_train.std().item() - 1) < 1e-4
    # the validation set is scaled with the training set's statistics, so it is not centred
    assert x_valid.mean().item() < -0.1
    train_ds, valid_ds = Dataset(x_train, y_train), Dataset(x_valid, y_valid)
    c = y_train.max().item() + 1
    data = DataBunch(*get_dls(train_ds, valid_ds, 32), c)
    cbfs = [partial(AvgStatsCallback, accuracy), CudaCallback,
            partial(BatchTransformXCallback, mnist_view)]
    learn, run = get_learn_run([8, 16], data, 0.4, conv_layer, cbs=cbfs, leak=0.1, sub=0.4,
                               maxv=6., uniform=True)
    run.fit(1, learn)
    assert learn.loss_func is F.cross_entropy
    assert len(run.avg_stats.valid_stats.avg_stats) == 2


def test_course_06_last_cell_says_how_to_export(capsys):
    from exp.nb_06 import nb_auto_export
    nb_auto_export()
    assert 'notebook2script.py' in capsys.readouterr().out
