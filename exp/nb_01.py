# Generated from nbs/01_matmul.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_00a import *
import math, timeit, torch   # noqa: F401 (math: for the chapters that import this one)
import matplotlib as mpl, matplotlib.pyplot as plt
from torch import tensor


def _check_matmul(a, b):
    "Raise a clear error unless `a @ b` is defined: 2-d shapes that fit, one dtype, one device."
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f'matmul: cannot multiply shapes {tuple(a.shape)} and {tuple(b.shape)}; '
                         'need (n, k) and (k, m)')
    if a.dtype != b.dtype:
        raise TypeError(f'matmul: dtypes differ ({a.dtype} and {b.dtype}); convert one first, '
                        'e.g. a.float() @ b, as torch.matmul requires too')
    if a.device != b.device:
        raise ValueError(f'matmul: tensors on different devices ({a.device} and {b.device})')

def matmul_loops(a, b):
    "Matrix product with three Python loops: one scalar multiply-add at a time."
    _check_matmul(a, b)
    (ar, ac), bc = a.shape, b.shape[1]
    c = a.new_zeros(ar, bc)
    for i in range(ar):
        for j in range(bc):
            for k in range(ac): c[i, j] += a[i, k] * b[k, j]
    return c


def time_it(f, *args, repeat=3):
    "Best seconds per call of `f(*args)`, calls batched until one batch takes ~0.2 s."
    timer = timeit.Timer(lambda: f(*args))
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number


def matmul_rowcol(a, b):
    "Two Python loops; the dot product of a row and a column runs in C."
    _check_matmul(a, b)
    c = a.new_zeros(a.shape[0], b.shape[1])
    for i in range(a.shape[0]):
        for j in range(b.shape[1]): c[i, j] = (a[i, :] * b[:, j]).sum()
    return c


def matmul_bcast(a, b):
    "One Python loop over rows; broadcasting computes a whole output row at once."
    _check_matmul(a, b)
    c = a.new_zeros(a.shape[0], b.shape[1])
    for i in range(a.shape[0]): c[i] = (a[i, :, None] * b).sum(dim=0)
    return c


def matmul_einsum(a, b):
    "C[i,j] = sum_k A[i,k] B[k,j], written as an Einstein summation."
    _check_matmul(a, b)
    return torch.einsum('ik,kj->ij', a, b)


MAX_FREQ = '/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq'

def read_cpuinfo(path='/proc/cpuinfo'):
    "The first processor's fields in Linux's /proc/cpuinfo, as a dict of strings."
    path = Path(path)
    if not path.exists(): raise FileNotFoundError(f'read_cpuinfo: no {path} (it is Linux only)')
    fields = {}
    for line in path.read_text().splitlines():
        if not line.strip(): break                 # a blank line ends the first processor
        key, _, value = line.partition(':')
        fields[key.strip()] = value.strip()
    return fields

def core_clock_ghz(info, max_freq=MAX_FREQ):
    "The core's clock in GHz and where it was read: cpufreq's maximum if present, else cpuinfo."
    if Path(max_freq).exists(): return int(Path(max_freq).read_text()) / 1e6, max_freq
    if 'cpu MHz' in info: return float(info['cpu MHz']) / 1e3, "/proc/cpuinfo's cpu MHz"
    raise ValueError(f'core_clock_ghz: no {max_freq}, and no "cpu MHz" in /proc/cpuinfo')


VECTOR_LANES = {'avx512f': 16, 'avx2': 8, 'sse': 4}   # float32 lanes; the widest set first
# FMA instructions of the widest width one core starts per cycle. The CPU does not report it: it
# comes from AMD's and Intel's optimisation manuals. Listed: the cores that differ from the default.
FMA_UNITS = [  # (vendor, family, models, units, why)
    ('AuthenticAMD', 0x17, range(0x00, 0x30), 1, 'Zen, Zen+: a 256-bit FMA runs as two halves'),
    ('AuthenticAMD', 0x19, range(0x10, 0x20), 1, 'Zen 4: a 512-bit FMA runs as two halves'),
    ('AuthenticAMD', 0x19, range(0x60, 0x80), 1, 'Zen 4: a 512-bit FMA runs as two halves'),
    ('AuthenticAMD', 0x19, range(0xa0, 0xb0), 1, 'Zen 4c: a 512-bit FMA runs as two halves'),
    ('GenuineIntel', 6, (0x7d, 0x7e, 0x8c, 0x8d, 0xa7), 1, 'Ice, Tiger, Rocket Lake: one 512-bit')]
FMA_UNITS_DEFAULT = 2   # Intel since Haswell, AMD Zen 2, Zen 3, Zen 5 EPYC. Wrong (1) for Xeon
# Silver, Bronze and Gold 5xxx of Skylake/Cascade Lake: their model number is that of the others.

def fma_units(vendor, family, model):
    "FMA units of one core, and why: a row of FMA_UNITS, else the default."
    for v, f, models, units, why in FMA_UNITS:
        if (v, f) == (vendor, family) and model in models: return units, why
    return FMA_UNITS_DEFAULT, 'the default: this core is not in FMA_UNITS'

def core_peak(cpuinfo='/proc/cpuinfo', max_freq=MAX_FREQ):
    "One core's float32 GFLOPS peak (FMA units × lanes × 2 × GHz), with what was read and assumed."
    info = read_cpuinfo(cpuinfo)
    flags = info.get('flags', '').split()
    isa = next((name for name in VECTOR_LANES if name in flags), None)
    if isa is None:
        raise ValueError(f'core_peak: no SSE, AVX2 or AVX-512 in the flags of {cpuinfo}')
    vendor, family, model = info.get('vendor_id', '?'), int(info['cpu family']), int(info['model'])
    units, why = fma_units(vendor, family, model)
    ghz, clock_from = core_clock_ghz(info, max_freq)
    return dict(cpu=info.get('model name', '?'), vendor=vendor, family=family, model=model,
                isa=isa, lanes=VECTOR_LANES[isa], ghz=ghz, clock_from=clock_from,
                fma_units=units, fma_why=why, gflops=units * VECTOR_LANES[isa] * 2 * ghz)


# What `from exp.nb_01 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_00a import __all__ as _all_nb_00a
__all__ = _all_nb_00a + [
    'math', 'torch', 'mpl', 'plt', 'tensor', 'matmul_loops', 'time_it', 'matmul_rowcol',
    'matmul_bcast', 'matmul_einsum', 'MAX_FREQ', 'read_cpuinfo', 'core_clock_ghz',
    'VECTOR_LANES', 'FMA_UNITS', 'FMA_UNITS_DEFAULT', 'fma_units', 'core_peak'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
