"""Images per second for the same random affine augmentation (10's `rand_affine_batch`: rotation, zoom, shift through
our affine grid and bilinear sampling) applied one image at a time (a loop over batches of one, as a per-item
transform in a data loader would) and to the whole batch at once; PyTorch's F.affine_grid + F.grid_sample on the
whole batch for reference. Rounds interleave the three so machine load hits them alike; the median round counts.
The last line is the ratio of whole-batch to per-image speed (the goal is at least 10).
Run: .venv/bin/python bench/augment.py [--bs 512] [--size 28] [--rounds 5]"""
import statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fire
import torch
import torch.nn.functional as F
from exp.nb_10 import def_device, rand_affine, rand_affine_batch


def per_image(x): return torch.cat([rand_affine_batch(x[i:i+1]) for i in range(len(x))])

def torch_batch(x):
    theta = rand_affine(len(x), like=x)
    return F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)

def images_per_second(f, x, reps):
    "Apply `f` to the batch `x` `reps` times (after one warm-up call); images per second."
    f(x)
    if x.is_cuda: torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps): f(x)
    if x.is_cuda: torch.cuda.synchronize()
    return reps * len(x) / (time.perf_counter() - start)


def main(bs=512, size=28, rounds=5, reps=5):
    torch.manual_seed(0)
    x = torch.rand(bs, 1, size, size, device=def_device)
    ways = {'per image (ours)': per_image, 'whole batch (ours)': rand_affine_batch, 'whole batch (torch)': torch_batch}
    runs = {k: [] for k in ways}
    for _ in range(rounds):
        for name, f in ways.items(): runs[name].append(images_per_second(f, x, 1 if f is per_image else reps))
    speed = {k: statistics.median(v) for k, v in runs.items()}
    print(f"random affine on {bs} images of 1x{size}x{size} on {def_device}, {torch.get_num_threads()} threads, "
          f"median of {rounds} rounds:")
    for name, s in speed.items(): print(f"  {name:<20} {s:>12,.0f} images/s")
    print(f"whole batch / per image: {speed['whole batch (ours)'] / speed['per image (ours)']:.1f}x "
          f"(torch's batch / ours: {speed['whole batch (torch)'] / speed['whole batch (ours)']:.1f}x)")


if __name__ == '__main__': fire.Fire(main)
