"""Images per second loading Fashion-MNIST's PNG files through 08's pipeline (ImageList ->
LabeledData -> batches of 64): our DataLoader with 0, 1 and 2 worker processes, and PyTorch's
DataLoader with 2 workers on the same LabeledData. Each pass (workers' start-up included) is timed
by the harness's wall clock; the loaders take turns for `rounds` rounds, speeds are medians over the
rounds, ratios the medians of the per-round ratios.
The last line is the ratio of ours with 2 workers to ours with 0 (and to torch's with 2).
Run: .venv/bin/python bench/datablock.py [--n_batches 100] [--rounds 5]"""
import statistics

import torch
import torch.utils.data

from exp.nb_08 import (CategoryProcessor, DataLoader, ImageList, SplitData, collate,
                       fashion_image_folder, grandparent_splitter, label_by_func, parent_labeler,
                       to_byte_tensor, to_float_tensor)
from nbio import run_cli
from timing import alternate, check_counts, clock, median_ratio


def labeled_train():
    "The training half of Fashion-MNIST's image folder, labelled, as the notebook builds it."
    il = ImageList.from_files(fashion_image_folder(), tfms=[to_byte_tensor, to_float_tensor])
    sd = SplitData.split_by_func(il, grandparent_splitter)
    return label_by_func(sd, parent_labeler, proc_y=CategoryProcessor()).train


def loaders(ds, bs):
    "name -> a function building a fresh loader over `ds`."
    def ours(workers):
        return lambda: DataLoader(ds, bs, shuffle=True, collate_fn=collate, num_workers=workers)
    return {'ours, 0 workers': ours(0), 'ours, 1 worker': ours(1), 'ours, 2 workers': ours(2),
            'torch, 2 workers': lambda: torch.utils.data.DataLoader(
                ds, bs, shuffle=True, collate_fn=collate, num_workers=2)}


def images_per_second(make_dl, n_batches):
    "A function timing a fresh pass (workers included) of `n_batches` batches: images per second."
    def run():
        n = 0
        with clock() as t:
            for (xb, _), _ in zip(make_dl(), range(n_batches)): n += len(xb)
        return n / t.wall
    return run


def main(n_batches=100, rounds=5, bs=64):
    check_counts(n_batches=n_batches, rounds=rounds, bs=bs)
    makers = loaders(labeled_train(), bs)
    runs = alternate({k: images_per_second(f, n_batches) for k, f in makers.items()}, rounds)
    for name, v in runs.items(): print(f'{name:>17}: {statistics.median(v):8.0f} images/s')
    two = runs['ours, 2 workers']
    print(f'ours 2 workers / ours 0 workers: {median_ratio(two, runs["ours, 0 workers"]):.2f}x; '
          f'ours 2 workers / torch 2 workers: {median_ratio(two, runs["torch, 2 workers"]):.2f}x')


if __name__ == '__main__': run_cli(main)
