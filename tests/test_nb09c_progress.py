"""09c: ProgressCallback draws bars where someone watches (terminal, notebook) and stays quiet
elsewhere."""
import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

import exp.nb_09c as nb09c
from exp.nb_09c import AvgStatsCallback, Callback, ProgressCallback, accuracy, live_output
from exp.nb_09c import _NotebookText

ROOT = Path(__file__).resolve().parents[1]
BAR = '%|'   # in every tqdm text bar: the percentage, then the bar's left edge


@pytest.fixture
def learner(make_tiny_learner):
    "A factory: the tiny learner (3 training batches) with `progress` and the table of accuracy."
    return lambda progress: make_tiny_learner(cbs=[progress, AvgStatsCallback(accuracy)])

class FakeTerminal(io.StringIO):
    def isatty(self): return True

def test_live_output_only_for_terminals_and_notebooks():
    assert not live_output(io.StringIO()) and live_output(FakeTerminal())
    closed = io.StringIO(); closed.close()
    assert not live_output(closed) and not live_output(object())

def test_forced_on_draws_both_bars_the_loss_and_the_table(learner):
    out = io.StringIO()
    learn = learner(ProgressCallback(enabled=True, file=out, mininterval=0, loss_every=1))
    learn.fit(2)
    text = out.getvalue()
    assert 'epochs: 100%' in text and 'train:' in text and 'valid:' in text and 'loss=' in text
    lines = text.replace('\x1b[A', '').replace('\r', '\n').split('\n')
    table = [l.split() for l in lines if l.split()[:1] in (['epoch'], ['0'], ['1'])]
    assert [r[0] for r in table] == ['epoch', '0', '1'] and table[0][-1] == 'time'
    assert learn.logger is print and not learn.progress.on

def test_terminal_is_detected_from_the_file(learner):
    out = FakeTerminal()
    learner(ProgressCallback(file=out, mininterval=0)).fit(1)
    assert BAR in out.getvalue()

def test_off_where_nobody_watches(learner, capsys):
    out = io.StringIO()
    learner(ProgressCallback(file=out)).fit(2)
    assert out.getvalue() == ''
    lines = capsys.readouterr().out.splitlines()   # the table, as plain lines through print
    assert [l.split()[0] for l in lines] == ['epoch', '0', '1'] and BAR not in ''.join(lines)

def test_logger_given_back_after_an_error(learner):
    class Boom(Callback):
        def after_batch(self): raise RuntimeError('boom')
    learn = learner(ProgressCallback(enabled=True, file=io.StringIO()))
    with pytest.raises(RuntimeError): learn.fit(1, cbs=Boom())
    assert learn.logger is print

class FakeHandle:
    def __init__(self): self.shown = []
    def update(self, data, raw): self.shown.append(data['text/plain'])

def fake_display():
    t = object.__new__(_NotebookText)
    t.text,t.handle = '',FakeHandle()
    return t

def test_notebook_text_keeps_the_latest_line():
    t = fake_display()
    t.write('\rtrain:  10%|#'); t.write('\n'); t.write('\x1b[A'); t.write('\rtrain:  20%|##  ')
    assert t.text == 'train:  20%|##' and t.handle.shown == ['train:  10%|#', 'train:  20%|##']
    t.write('\r      \r'); assert t.text == ''
    t.append('a'); t.append('b'); assert t.text == 'a\nb'

def test_in_a_notebook_without_widgets_bars_and_table_go_to_displays(learner, monkeypatch):
    made = []
    def make():
        made.append(fake_display()); return made[-1]
    monkeypatch.setattr(nb09c, 'in_notebook', lambda: True)
    monkeypatch.setattr(nb09c, '_widget_bars', lambda: False)
    monkeypatch.setattr(nb09c, '_NotebookText', make)
    learner(ProgressCallback(mininterval=0)).fit(2)
    table,epochs,batches = made
    assert [l.split()[0] for l in table.text.splitlines()] == ['epoch', '0', '1']
    # the pass bar is cleared at its end
    assert epochs.text.startswith('epochs: 100%') and batches.text == ''

SCRIPT = """
import sys, torch, torch.nn.functional as F
from torch import nn
from exp.nb_09c import *
x = torch.randn(64, 8); y = (x.sum(1) > 0).long()
data = DataBunch(*get_dls(Dataset(x[:48], y[:48]), Dataset(x[48:], y[48:]), 16))
learn = Learner(nn.Sequential(nn.Linear(8, 2)), data, F.cross_entropy,
                cbs=[ProgressCallback(mininterval=0)])
learn.fit(2)
print('done')
"""

def run_script(stderr):
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    return subprocess.Popen([sys.executable, '-c', SCRIPT], stdout=subprocess.PIPE, stderr=stderr,
                            env=env, cwd=ROOT)

def read_all(fd, proc):
    out = b''
    while True:
        r,_,_ = select.select([fd], [], [], 0.2)
        if r:
            try: chunk = os.read(fd, 4096)
            except OSError: break   # the terminal closed
            if not chunk: break
            out += chunk
        elif proc.poll() is not None: break
    return out.decode(errors='replace')

def test_real_terminal_and_real_pipe_in_a_separate_process():
    primary,secondary = pty.openpty()
    # a new pty is 0 columns wide
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 80, 0, 0))
    proc = run_script(secondary); os.close(secondary)
    tty_err = read_all(primary, proc); os.close(primary)
    assert proc.wait(120) == 0 and proc.stdout.read().decode().strip().endswith('done')
    assert BAR in tty_err and 'epochs' in tty_err
    proc = run_script(subprocess.PIPE)
    out,err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and BAR not in err.decode() and 'epochs' not in err.decode()

def test_bad_loss_every_is_refused():
    with pytest.raises(ValueError, match='ProgressCallback: loss_every'):
        ProgressCallback(loss_every=0)
