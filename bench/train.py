"""The longer Fashion-MNIST recipe of notebook 11: xresnet18 for 28x28 images (stem strides (1, 2, 1), no max pool),
AdamW (decoupled weight decay) with the one-cycle schedule, label smoothing, random flips and shifts of up to 2 pixels,
trained on the 50,000 training images (the validation split's 10,000 reported after each epoch), then scored once on
the 10,000 test images, plainly and with flip test-time augmentation. Goal: at least 94.5% test accuracy.
The last line gives the test accuracies and the training time.
Run: .venv/bin/python bench/train.py [--epochs 20] [--width 32] [--bs 256] [--lr 1e-2] [--wd 0.05] [--n_train N]
(--n_train keeps the first N training images: for a quick check that it runs)"""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fire
import torch
from exp.nb_11 import eval_accuracy, fashion_splits, fit_xresnet, flip_batch, shifts


def main(epochs=20, width=32, bs=256, lr=1e-2, wd=0.05, n_train=None, seed=0):
    for name, v in dict(epochs=epochs, width=width, bs=bs).items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1: raise ValueError(f'train.py: {name} must be an integer >= 1, got {v!r}')
    if n_train is not None and (isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1):
        raise ValueError(f'train.py: n_train must be an integer >= 1, got {n_train!r}')
    splits = list(fashion_splits())
    splits[0], splits[1] = splits[0][:n_train], splits[1][:n_train]
    print(f"Fashion-MNIST: {len(splits[0])} training, {len(splits[2])} validation, {len(splits[4])} test images; "
          f"xresnet18 width {width}, batch {bs}, lr {lr}, wd {wd}, {epochs} epochs, torch threads {torch.get_num_threads()}")
    learn, norm, secs = fit_xresnet(splits, [flip_batch, shifts], width=width, bs=bs, lr=lr, wd=wd, epochs=epochs, seed=seed)
    acc = eval_accuracy(learn, splits[4], splits[5], norm)
    tta = eval_accuracy(learn, splits[4], splits[5], norm, tta=True)
    print(f"test accuracy {acc:.4f}, with flip TTA {tta:.4f}, after {epochs} epochs in {secs / 60:.1f} min of training")


if __name__ == '__main__': fire.Fire(main)
