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
--n_train N (the first N training images: a quick check that it runs), --seed,
--checkpoint PATH (save all the run needs to go on exactly, after every epoch and, with --every N,
every N batches: 09b's CheckpointCallback), --resume (go on from that file after a crash, with the
same options: the weights end as if the run had never stopped, bit for bit on a CPU, and on a GPU
as far as its kernels are deterministic; the time reported is then the resumed part's).
  .venv/bin/python bench/train.py --checkpoint ~/train.pt --every 100
  .venv/bin/python bench/train.py --checkpoint ~/train.pt --every 100 --resume"""
import json
from pathlib import Path

import torch

from exp.nb_11 import (CheckpointCallback, eval_accuracy, fashion_splits, fit_xresnet, flip_batch,
                       load_checkpoint, mnist_splits, shifts, with_valid_in_train)
from nbio import ToolError, UsageError, atomic_write, run_cli
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


def options_file(checkpoint):
    "Where the options of the run saving to `checkpoint` are kept: beside it, in JSON."
    return Path(f'{checkpoint}.options.json')

def _same_options(checkpoint, options):
    "Refuse a resume whose options are not those the checkpointed run was started with."
    path = options_file(checkpoint)
    try: saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ToolError(f"--resume: cannot read the options of the run saved in {checkpoint} "
                        f"({path}: {e})") from e
    diff = [f"{k} is {options[k]!r}, the saved run's {saved.get(k)!r}" for k in options
            if saved.get(k) != options[k]]
    if diff:
        raise UsageError(f"{'; '.join(diff)} ({path}): resume with the same options")

def _checkpointing(checkpoint, every, resume, options):
    """The callbacks that save the run to `checkpoint`, and the file to resume from (checked now,
    before the data is read: its run must have had these `options`, epochs first)."""
    if every is not None: check_counts(every=every)
    if checkpoint is None:
        if resume or every is not None:
            raise UsageError(f"{'resume' if resume else 'every'} needs --checkpoint PATH")
        return [], None
    if not resume:
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(options_file(checkpoint), json.dumps(options, indent=1) + '\n')
        return [CheckpointCallback(checkpoint, every)], None
    try: saved = load_checkpoint(checkpoint, who='--resume')
    except (OSError, ValueError) as e: raise ToolError(str(e)) from None
    epochs = options['epochs']
    if saved['epochs'] != epochs:
        raise UsageError(f"epochs is {epochs}, but {checkpoint} was saved by a run of "
                         f"{saved['epochs']} epochs: resume with the same options")
    _same_options(checkpoint, options)
    print(f"resuming from {checkpoint}: epoch {saved['epoch']}, batch {saved['iter']}")
    return [CheckpointCallback(checkpoint, every)], checkpoint


def main(dataset='fashion', epochs=20, width=16, stem='111', tfms='flips+shifts', bs=256, lr=1e-2,
         wd=0.05, valid_in_train=True, n_train=None, seed=0, checkpoint=None, every=None,
         resume=False):
    check_counts(epochs=epochs, width=width, bs=bs)
    if n_train is not None: check_counts(n_train=n_train)
    _choice('dataset', dataset, DATASETS); _choice('tfms', tfms, TFMS)
    stem_strides = _stem(stem)
    options = dict(dataset=dataset, epochs=epochs, width=width, stem=list(stem_strides),
                   tfms=tfms, bs=bs, lr=lr, wd=wd, valid_in_train=valid_in_train,
                   n_train=n_train, seed=seed)   # a resume must repeat them all
    cbs, resume_from = _checkpointing(checkpoint, every, resume, options)
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
                                     bs=bs, lr=lr, wd=wd, epochs=epochs, seed=seed, cbs=cbs,
                                     resume=resume_from)
    if not valid_in_train:
        print(f"validation accuracy {eval_accuracy(learn, splits[2], splits[3], norm):.4f}")
    acc = eval_accuracy(learn, splits[4], splits[5], norm)
    tta = eval_accuracy(learn, splits[4], splits[5], norm, tta=True)
    print(f"test accuracy {acc:.4f}, with flip TTA {tta:.4f}, after {epochs} epochs in "
          f"{t.wall / 60:.1f} min of training")


if __name__ == '__main__': run_cli(main)
