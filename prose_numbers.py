"""Check that every decimal number quoted in a notebook's prose comes from that notebook's run.

    python prose_numbers.py                  # every notebook in nbs/
    python prose_numbers.py nbs/05_anneal.ipynb [more ...]

Why: a result sentence typed into markdown goes stale the next time the outputs are refreshed.
Measured figures belong in f-strings printed by code cells; this check catches the rest.

The rule. Each decimal number in a markdown cell (0.9580, 3.3, 95.8%, 2.5e-4; prose, inline code and
LaTeX math alike) must match a number in the same notebook's code-cell sources or outputs (stream
text, and the text/plain, text/markdown, text/html and text/latex of results and displays):
- equal in value (0.50 matches 0.5), or a longer number rounded or truncated to the quoted number of
  decimals (a printed 0.95823 matches 0.9582 and 0.958, and 0.95856 matches 0.9585 and 0.9586);
- a number followed by % or by 'point(s)' may also be 100 times a printed one (95.8% matches 0.958,
  '3.3 points' matches 0.033); the sign is ignored ('-0.03' printed backs 'fell by 0.03').
Numbers in LaTeX math are not exempt: the constants of an equation (the 0.9 of a momentum, the 0.5
of a split) are in the code that implements it, and when they are not, the two disagree.
Skipped: arXiv ids (1502.01852, arXiv:1502.01852v1), version strings with two or more dots (2.13.0),
link targets and bare URLs, and references right after Python, version, section, sec., §, eq.,
equation, figure, fig., table, chapter or appendix ('Python 3.11', 'section 3.3').

Output: one line per miss, naming the notebook, the markdown cell (as every tool names it:
'cell 7 (markdown)', counted from 1 among all cells) and the number; exit status 1 if there is any.
"""
import re
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

from nbio import NotebookError, ToolError, cell_name, notebooks, read_notebook, run_cli, show_path

# a number: digits with optional thousands commas, an optional fraction and exponent
# (not inside a name like v1.2 or nb_05; a unit may follow: 12.3s, 3.5ms, 1.5x)
NUMBER = re.compile(r'(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)((?:\.\d+)*)([eE][-+]?\d+)?(?![\d_])')
ARXIV = re.compile(r'(?i)(?:arxiv:\s*)?\b\d{4}\.\d{4,5}(?:v\d+)?\b')
URL = re.compile(r'\]\([^)]*\)|<?https?://\S+')
REFERENCE = re.compile(r'(?i)(?:\bpython|\bversion|\bsection|\bsec\.|§|\beq\.|\bequation|\bfigure|'
                       r'\bfig\.|\btable|\bchapter|\bappendix)\s*$')  # 'Python 3.11', 'section 3.3'
PERCENT_AFTER = re.compile(r'\s*(?:%|percent|(?:percentage\s+)?points?\b|pp\b)', re.IGNORECASE)
OUTPUT_TYPES = ('text/plain', 'text/markdown', 'text/html', 'text/latex')
ROUNDINGS = (ROUND_HALF_UP, ROUND_HALF_EVEN, ROUND_DOWN)


def text_of(value):
    return ''.join(value) if isinstance(value, list) else str(value or '')


def decimals_in(text, quoted=False):
    """(Decimal value, token, start, end) for each number in `text`. With `quoted`, only numbers
    written with a decimal point or an exponent, and never a version string like 2.13.0."""
    for m in NUMBER.finditer(text):
        whole, fraction, exponent = m.groups()
        if fraction.count('.') > 1:  # a version string: 2.13.0
            continue
        if quoted and not (fraction or exponent):
            continue
        token = whole.replace(',', '') + fraction + (exponent or '')
        try:
            yield Decimal(token), m.group(), m.start(), m.end()
        except InvalidOperation:  # pragma: no cover - the pattern only admits valid numbers
            continue


def evidence(nb):
    """Every number (as a Decimal, sign dropped) in the notebook's code sources and text outputs."""
    texts = []
    for cell in nb.cells:
        if cell.cell_type != 'code':
            continue
        texts.append(text_of(cell.source))
        for out in cell.get('outputs', []):
            if out.get('output_type') == 'stream':
                texts.append(text_of(out.get('text')))
            else:
                data = out.get('data', {})
                texts.extend(text_of(data.get(kind)) for kind in OUTPUT_TYPES)
    return {value for text in texts for value, *_ in decimals_in(text)}


def places(token):
    """Decimal places written in a quoted token, with its exponent: '0.9580' -> 4, '2.5e-4' -> 5."""
    value = Decimal(token.replace(',', ''))
    return max(-value.as_tuple().exponent, 0)


def matches(quoted, places_, value):
    """True when `value` (from the run) backs the quoted number written with `places_` decimals."""
    if value == quoted:
        return True
    step = Decimal(1).scaleb(-places_)
    try:
        return any(value.quantize(step, rounding=r) == quoted for r in ROUNDINGS)
    except InvalidOperation:  # too many digits to quantize (a huge value): not this one
        return False


def backed(quoted, token, percent, found):
    """Is the quoted number (with `percent` when followed by % or 'points') among the `found`?"""
    n = places(token)
    targets = [(quoted, n)] + ([(quoted / 100, n + 2)] if percent else [])
    return any(matches(q, k, v) for q, k in targets for v in found)


def prose(source):
    """A markdown cell's text with what is not prose numbers blanked out: link targets, URLs and
    arXiv ids (blanked with spaces, so offsets stay put)."""
    for pattern in (URL, ARXIV):
        source = pattern.sub(lambda m: ' ' * len(m.group()), source)
    return source


def quoted_numbers(source):
    """(value, token, percent?) for each decimal number in a markdown cell's text."""
    text = prose(source)
    for value, token, start, end in decimals_in(text, quoted=True):
        if not REFERENCE.search(text, max(start - 20, 0), start):
            yield value, token, bool(PERCENT_AFTER.match(text, end))


def misses(path):
    """One line for each quoted number in notebook `path` that its code and outputs do not back."""
    nb = read_notebook(path)
    found = {abs(v) for v in evidence(nb)}
    lines = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != 'markdown':
            continue
        for value, token, percent in quoted_numbers(text_of(cell.source)):
            if not backed(abs(value), token, percent, found):
                lines.append(f'{show_path(path)}: {cell_name(nb, index)}: {token} matches no '
                             "number in the notebook's code or outputs (print it from the run, "
                             'or cut it)')

    return lines


def problems(paths):
    """One line for each miss in the notebooks `paths`, and for each file that is not a notebook."""
    lines = []
    for path in paths:
        try:
            lines += misses(path)
        except NotebookError as e:
            lines.append(str(e))
    return lines


def main(*paths):
    """Check the notebooks `paths` (default: all of nbs/); ToolError (exit status 1) on any miss."""
    paths = [Path(str(p)) for p in paths] or notebooks()
    lines = problems(paths)
    for line in lines:
        print(line)
    if lines:
        raise ToolError(f'{len(lines)} number(s) quoted in markdown that the run does not show')
    print(f'prose_numbers: every decimal number quoted in {len(paths)} notebook(s) comes from its '
          'run')


if __name__ == '__main__':
    run_cli(main)
