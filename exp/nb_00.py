# Generated from nbs/00_exports.ipynb by notebook2script.py: edit the notebook, not this file.


import operator, torch

def test(a, b, cmp, cname=None):
    "Assert `cmp(a, b)`; on failure show the comparison's name and both values."
    if cname is None: cname = cmp.__name__
    assert cmp(a, b), f"{cname}:\n{a}\n{b}"


def equals(a, b):
    "Exact equality that also works for tensors, where `==` is elementwise."
    if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
        try: a, b = torch.as_tensor(a), torch.as_tensor(b)   # a tensor against a list or number: by value
        except (TypeError, ValueError, RuntimeError): return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equals(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(equals(x, y) for x, y in zip(a, b))
    if hasattr(a, 'shape') and hasattr(b, 'shape') and tuple(a.shape) != tuple(b.shape): return False
    res = a == b
    return bool(res.all()) if hasattr(res, 'all') else bool(res)

def test_eq(a, b):
    "Assert `a` equals `b` (tensors: same shape, every element equal)."
    test(a, b, equals, '==')

def test_ne(a, b):
    "Assert `a` differs from `b`."
    test(a, b, lambda x, y: not equals(x, y), '!=')


def near(a, b, rtol=1e-3, atol=1e-5):
    "True when `a` and `b` have the same shape and all elements agree within tolerance."
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape: return False
    if a.dtype != b.dtype: a, b = a.double(), b.double()
    return torch.allclose(a, b, rtol=rtol, atol=atol)

def test_near(a, b):
    "Assert `a` and `b` have the same shape and agree within `near`'s tolerance."
    test(a, b, near)


def test_near_zero(a, tol=1e-3):
    "Assert every element of `a` is within `tol` of zero."
    a = torch.as_tensor(a)
    assert a.abs().max() < tol, f"Near zero: {a}"
