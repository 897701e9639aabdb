# Generated from nbs/02_fully_connected.ipynb by notebook2script.py: edit the notebook, not this file.


from exp.nb_01 import *


def normalize(x, m, s):
    "Shift and scale `x` by mean `m` and std `s`; pass the *training* set's stats for every split."
    return (x-m)/s


def _check_lin(inp, w, b, name='Lin'):
    "Raise a ValueError naming the shapes unless `inp @ w + b` lines up: inp (n, n_in), w (n_in, n_out), b (n_out,)."
    if inp.dim() != 2 or inp.shape[1] != w.shape[0]:
        raise ValueError(f"{name}: input of shape {tuple(inp.shape)} does not match weight of shape {tuple(w.shape)}")
    if b.shape != w.shape[1:]:
        raise ValueError(f"{name}: bias of shape {tuple(b.shape)} does not match weight of shape {tuple(w.shape)}")


def mse(output, targ):
    "Mean squared error; an `output` of shape (n, 1) is compared with a `targ` of shape (n,)."
    out = output.squeeze(-1) if output.dim() == targ.dim()+1 and output.shape[-1] == 1 else output
    if out.shape != targ.shape:
        raise ValueError(f"mse: output of shape {tuple(output.shape)} does not match target of shape {tuple(targ.shape)}")
    return (out-targ).pow(2).mean()


class Relu():
    "ReLU that keeps its input and output so `backward` can route the gradient."
    def __call__(self, inp):
        self.inp = inp
        self.out = inp.clamp_min(0.)
        return self.out

    def backward(self): self.inp.g = self.out.g * (self.inp > 0)


class Lin():
    "Linear layer `inp @ w + b` (w is (n_in, n_out)) with a hand-written backward pass."
    def __init__(self, w, b): self.w,self.b = w,b

    def __call__(self, inp):
        _check_lin(inp, self.w, self.b)
        self.inp = inp
        self.out = inp @ self.w + self.b
        return self.out

    def backward(self):
        self.inp.g = self.out.g @ self.w.t()
        self.w.g = self.inp.t() @ self.out.g
        self.b.g = self.out.g.sum(0)


class Mse():
    "Mean squared error loss that remembers its arguments for `backward`."
    def __call__(self, inp, targ):
        self.inp,self.targ = inp,targ
        self.out = mse(inp, targ)
        return self.out

    def backward(self): self.inp.g = 2. * (self.inp - self.targ.reshape(self.inp.shape)) / self.targ.numel()


class Model():
    "Lin -> Relu -> Lin with an Mse loss; `backward` fills `.g` on the input, weights and biases."
    def __init__(self, w1, b1, w2, b2):
        self.layers = [Lin(w1, b1), Relu(), Lin(w2, b2)]
        self.loss = Mse()

    def __call__(self, x, targ):
        for l in self.layers: x = l(x)
        return self.loss(x, targ)

    def backward(self):
        self.loss.backward()
        for l in reversed(self.layers): l.backward()
