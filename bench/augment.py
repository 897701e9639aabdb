"""Images per second for the same random affine augmentation (10's `rand_affine_batch`: rotation,
zoom, shift through our affine grid and bilinear sampling) applied one image at a time (a loop over
batches of one, as a per-item transform in a data loader would) and to the whole batch at once;
PyTorch's F.affine_grid + F.grid_sample on the whole batch for reference. The three take turns for
`rounds` rounds, each timed by `time_op` (torch.utils.benchmark); speeds are medians over the
rounds, ratios the medians of the per-round ratios.
The last line is the ratio of whole-batch to per-image speed (the goal is at least 10).
Run: .venv/bin/python bench/augment.py [--bs 512] [--size 28] [--rounds 5]"""
import statistics

import torch
import torch.nn.functional as F

from exp.nb_10 import def_device, rand_affine, rand_affine_batch
from nbio import run_cli
from timing import alternate, check_counts, median_ratio, time_op


def per_image(x): return torch.cat([rand_affine_batch(x[i:i+1]) for i in range(len(x))])

def torch_batch(x):
    theta = rand_affine(len(x), like=x)
    return F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)

WAYS = {'per image (ours)': per_image, 'whole batch (ours)': rand_affine_batch,
        'whole batch (torch)': torch_batch}


def main(bs=512, size=28, rounds=5):
    check_counts(bs=bs, size=size, rounds=rounds)
    torch.manual_seed(0)
    x = torch.rand(bs, 1, size, size, device=def_device)
    def speed(f): return lambda: bs / time_op(f, x, min_run_time=0.1).median
    runs = alternate({name: speed(f) for name, f in WAYS.items()}, rounds)
    print(f"random affine on {bs} images of 1x{size}x{size} on {def_device}, "
          f"{torch.get_num_threads()} threads, median of {rounds} rounds:")
    for name, s in runs.items(): print(f"  {name:<20} {statistics.median(s):>12,.0f} images/s")
    gain = median_ratio(runs['whole batch (ours)'], runs['per image (ours)'])
    vs_torch = median_ratio(runs['whole batch (torch)'], runs['whole batch (ours)'])
    print(f"whole batch / per image: {gain:.1f}x (torch's batch / ours: {vs_torch:.1f}x)")


if __name__ == '__main__': run_cli(main)
