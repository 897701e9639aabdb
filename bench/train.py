"""The longer recipe of notebook 11: xresnet18 for 28x28 images (no max pool), AdamW (decoupled
weight decay) with the one-cycle schedule, label smoothing and batch augmentation, then scored once
on the 10,000 test images, plainly and with flip test-time augmentation. The default is the
Fashion-MNIST run with the goal of at least 94.5% test accuracy: 20 epochs, width 16,
full-resolution stem (strides 1, 1, 1), flips and shifts of up to 2 pixels, trained on all 60,000
labelled images as notebook 11's final runs are. The last line gives the test accuracies and the
training time (the harness's wall clock around `fit_xresnet`, setting up the model included).

Notebook 11's settings come from trial runs scored on the validation split; this script repeats
any of them (--novalid_in_train trains on the training split only and reports the validation
split), for example:
  .venv/bin/python bench/train.py --epochs 5 --tfms flips --novalid_in_train
  .venv/bin/python bench/train.py --dataset mnist --epochs 5 --width 24 --stem 121 --tfms shifts \
      --novalid_in_train
Options: --dataset fashion|mnist, --epochs, --width, --stem (three digits: the stem's strides),
--tfms flips|shifts|flips+shifts, --bs, --lr, --wd, --valid_in_train/--novalid_in_train,
--n_train N (the first N training images: a quick check that it runs), --seed."""
import torch

from exp.nb_11 import (eval_accuracy, fashion_splits, fit_xresnet, flip_batch, mnist_splits, shifts,
                       with_valid_in_train)
from nbio import UsageError, run_cli
from timing import check_counts, clock

TFMS = {'flips': [flip_batch], 'shifts': [shifts], 'flips+shifts': [flip_batch, shifts]}
DATASETS = {'fashion': fashion_splits, 'mnist': mnist_splits}


def _choice(name, v, options):
    if v not in options:
        raise UsageError(f'{name} must be one of {", ".join(options)}, got {v!r}')

def _stem(stem):
    s = str(stem)
    if len(s) != 3 or any(c not in '12' for c in s):
        raise UsageError(f'stem must be three strides of 1 or 2, like 111 or 121, got {stem!r}')
    return tuple(int(c) for c in s)


def main(dataset='fashion', epochs=20, width=16, stem='111', tfms='flips+shifts', bs=256, lr=1e-2,
         wd=0.05, valid_in_train=True, n_train=None, seed=0):
    check_counts(epochs=epochs, width=width, bs=bs)
    if n_train is not None: check_counts(n_train=n_train)
    _choice('dataset', dataset, DATASETS); _choice('tfms', tfms, TFMS)
    stem_strides = _stem(stem)
    splits = DATASETS[dataset]()
    if valid_in_train: splits = with_valid_in_train(splits)
    splits = (splits[0][:n_train], splits[1][:n_train]) + tuple(splits[2:])
    print(f"{dataset}: {len(splits[0])} training images "
          f"({'with' if valid_in_train else 'without'} the validation split), "
          f"{len(splits[4])} test images; xresnet18 width {width}, stem strides {stem_strides}, "
          f"{tfms}, batch {bs}, lr {lr}, wd {wd}, {epochs} epochs, "
          f"torch threads {torch.get_num_threads()}")
    with clock() as t:
        learn, norm, _ = fit_xresnet(splits, TFMS[tfms], width=width, stem_strides=stem_strides,
                                     bs=bs, lr=lr, wd=wd, epochs=epochs, seed=seed)
    if not valid_in_train:
        print(f"validation accuracy {eval_accuracy(learn, splits[2], splits[3], norm):.4f}")
    acc = eval_accuracy(learn, splits[4], splits[5], norm)
    tta = eval_accuracy(learn, splits[4], splits[5], norm, tta=True)
    print(f"test accuracy {acc:.4f}, with flip TTA {tta:.4f}, after {epochs} epochs in "
          f"{t.wall / 60:.1f} min of training")


if __name__ == '__main__': run_cli(main)
