"""Images per second loading Fashion-MNIST's PNG files through 08's pipeline (ImageList -> LabeledData ->
batches of 64): our DataLoader with 0, 1 and 2 worker processes, and PyTorch's DataLoader with 2 workers on
the same LabeledData. Rounds interleave the loaders so machine load hits them alike; the median round counts.
The last line is the ratio of ours with 2 workers to ours with 0 (and to torch's with 2).
Run: .venv/bin/python bench/datablock.py [--n_batches 100] [--rounds 5]"""
import statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fire
import torch
import torch.utils.data
from exp.nb_08 import (CategoryProcessor, DataLoader, ImageList, SplitData, collate, fashion_image_folder,
                       grandparent_splitter, label_by_func, parent_labeler, to_byte_tensor, to_float_tensor)


def labeled_train():
    "The training half of Fashion-MNIST's image folder, labelled, as the notebook builds it."
    il = ImageList.from_files(fashion_image_folder(), tfms=[to_byte_tensor, to_float_tensor])
    sd = SplitData.split_by_func(il, grandparent_splitter)
    return label_by_func(sd, parent_labeler, proc_y=CategoryProcessor()).train


def images_per_second(make_dl, n_batches):
    "Start a pass (workers included) and load `n_batches` batches; images per second over all of it."
    start, n = time.perf_counter(), 0
    for (xb, _), _ in zip(make_dl(), range(n_batches)): n += len(xb)
    return n / (time.perf_counter() - start)


def main(n_batches=100, rounds=5, bs=64):
    ds = labeled_train()
    loaders = {'ours, 0 workers': lambda: DataLoader(ds, bs, shuffle=True, collate_fn=collate),
               'ours, 1 worker': lambda: DataLoader(ds, bs, shuffle=True, collate_fn=collate, num_workers=1),
               'ours, 2 workers': lambda: DataLoader(ds, bs, shuffle=True, collate_fn=collate, num_workers=2),
               'torch, 2 workers': lambda: torch.utils.data.DataLoader(ds, bs, shuffle=True, collate_fn=collate,
                                                                       num_workers=2)}
    runs = {k: [] for k in loaders}
    for _ in range(rounds):
        for name, make in loaders.items(): runs[name].append(images_per_second(make, n_batches))
    speed = {k: statistics.median(v) for k, v in runs.items()}
    for name, v in speed.items(): print(f'{name:>17}: {v:8.0f} images/s')
    print(f'ours 2 workers / ours 0 workers: {speed["ours, 2 workers"] / speed["ours, 0 workers"]:.2f}x; '
          f'ours 2 workers / torch 2 workers: {speed["ours, 2 workers"] / speed["torch, 2 workers"]:.2f}x')


if __name__ == '__main__': fire.Fire(main)
