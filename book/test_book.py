"""The built book (book/_build/html) read in a real browser: Debian's headless Chromium, driven by
Selenium through Debian's chromedriver, the pages served by a local http server this file starts.

    make book-test   # installs Chromium and the book's tools when missing, builds, runs this

It lives in book/, not tests/, so `make test` never collects it (pytest.ini: testpaths = tests).
Checks: every page loads with no console error and no failed or outside request; every internal link
answers 200 and its #fragment exists; the sidebar and previous/next links follow the path; 02's
backward pass has its math typeset by MathJax; 06's figures are images with a size; the name index
links `conv2d` to the cell of 06 that builds it; searching "BatchNorm" finds 07. Two screenshots are
saved under book/_build/screenshots.
"""
import functools
import http.server
import re
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BUILD = Path(__file__).resolve().parent / '_build'
HTML = BUILD / 'html'
SHOTS = BUILD / 'screenshots'
CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
WAIT = 30  # seconds a page may take to settle (MathJax typesetting a long page included)


class Recorder(http.server.SimpleHTTPRequestHandler):
    """Serves the built book, quietly, and keeps (path, status) of every request answered."""

    def log_request(self, code='-', size='-'):
        self.server.requests.append((self.path, int(code)))

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope='module')
def server():
    if not (HTML / 'index.html').is_file():
        pytest.fail(f'no book in {HTML}: run make book (make book-test builds it first)')
    srv = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(Recorder, directory=str(HTML)))
    srv.requests = []
    srv.base = f'http://127.0.0.1:{srv.server_address[1]}/'
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope='module')
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            pytest.fail(f'{path} missing: apt-get install chromium chromium-driver '
                        '(make book-test does)')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                '--window-size=1280,1000', '--no-first-run', '--disable-extensions'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def pages():
    """Every HTML page of the book (the theme's and MathJax's assets left out)."""
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob('*.html')
                  if '_static' not in p.relative_to(HTML).parts)


def settle(driver):
    """Wait until the page has loaded and MathJax, when the page loads it, has typeset."""
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script('return document.readyState') == 'complete')
    driver.set_script_timeout(WAIT)
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const mj = window.MathJax;
        if (!mj || !mj.startup) { done(); return; }
        mj.startup.promise.then(() => done(), () => done());""")


def open_page(driver, url):
    driver.get(url)
    settle(driver)


# Text in the page's prose (not code, outputs or typeset math) that still holds a TeX delimiter:
# math the markdown parser did not recognise, which a reader sees as raw $ and backslashes.
RAW_MATH = r"""
    const main = document.querySelector('main') || document.body;
    const walk = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
    const skip = 'pre, code, .cell_output, .math, mjx-container, script, style, .highlight';
    const found = [];
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
        if (n.parentElement.closest(skip)) continue;
        const t = n.textContent;
        if (/\$|\\\(|\\\[|\\frac|\\mathbb/.test(t)) found.push(t.trim().slice(0, 80));
    }
    return found;"""


def test_every_page_loads_clean(server, browser):
    """No console error (SEVERE), no request answered 4xx/5xx, nothing fetched from elsewhere,
    every image shown, no math left as TeX source in the prose."""
    browser.get_log('browser')  # start from an empty log
    problems, names = [], pages()
    assert len(names) > 30, f'only {len(names)} pages built'
    for name in names:
        server.requests.clear()
        open_page(browser, server.base + name)
        for entry in browser.get_log('browser'):
            if entry['level'] == 'SEVERE':
                problems.append(f'{name}: console: {entry["message"]}')
        problems += [f'{name}: {path} answered {code}' for path, code in server.requests
                     if code >= 400]
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        problems += [f'{name}: loaded from outside the book: {url}' for url in loaded
                     if not url.startswith(server.base)]
        broken = browser.execute_script("""
            return Array.from(document.images)
                .filter(i => i.complete && i.naturalWidth === 0 && i.loading !== 'lazy')
                .map(i => i.src)""")
        problems += [f'{name}: image not shown: {src}' for src in broken]
        problems += [f'{name}: math left as source: {text!r}'
                     for text in browser.execute_script(RAW_MATH)]
    print(f'{len(names)} pages loaded')
    assert not problems, '\n'.join(problems)


class Anchors(HTMLParser):
    """The hrefs of a page's <a> elements, every id (and a name=) it holds, and the addresses of
    what it loads (scripts, stylesheets, icons, images, frames)."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.ids, self.loads, self.prev_next = [], set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ('script', 'img', 'iframe', 'source', 'embed') and attrs.get('src'):
            self.loads.append(attrs['src'])
        if tag == 'link' and attrs.get('href'):
            self.loads.append(attrs['href'])
        if tag == 'a' and attrs.get('class') in ('left-prev', 'right-next'):
            self.prev_next.append(attrs.get('href'))
        if attrs.get('id'):
            self.ids.add(attrs['id'])
        if tag == 'a' and attrs.get('name'):
            self.ids.add(attrs['name'])
        if tag == 'a' and attrs.get('href'):
            self.hrefs.append(attrs['href'])


def fetch(url):
    """(status, body text) of a GET through the local server."""
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status, response.read().decode('utf-8', 'replace')
    except urllib.error.HTTPError as e:
        return e.code, ''


@functools.lru_cache(maxsize=None)
def parsed(url):
    status, body = fetch(url)
    page = Anchors()
    if url.endswith('.html') or url.endswith('/'):
        page.feed(body)
    return status, page


def test_every_internal_link_resolves(server):
    """Each link on each page to the book itself answers 200, and its #fragment is an id there."""
    problems, followed = [], set()
    for name in pages():
        _, page = parsed(server.base + name)
        for href in page.hrefs:
            url = urljoin(server.base + name, href)
            if not url.startswith(server.base):
                continue  # a link out (arXiv, PyTorch's docs): not the book's
            target, _, fragment = url.partition('#')
            status, linked = parsed(target)
            followed.add(target)
            if status != 200:
                problems.append(f'{name}: {href} answered {status}')
            elif fragment and target.endswith('.html') and fragment not in linked.ids:
                problems.append(f'{name}: {href}: no id {fragment!r} on that page')
    print(f'{len(followed)} internal targets followed')
    assert len(followed) > 30
    assert not problems, '\n'.join(problems[:50]) + f'\n({len(problems)} in all)'


def test_no_page_names_a_resource_elsewhere(server):
    """No script, stylesheet, font preload, icon or image comes from a CDN or any other host."""
    outside = [f'{name}: {url}' for name in pages() for url in parsed(server.base + name)[1].loads
               if url.startswith(('http:', 'https:', '//'))]
    assert not outside, '\n'.join(outside)


def road():
    """The notebooks' pages in the order of the README's path table (those built only)."""
    readme = (Path(__file__).resolve().parent.parent / 'README.md').read_text(encoding='utf-8')
    stems = re.findall(r'^\|\s*`(\w+)`\s*\|', readme.split('## The path', 1)[1], re.M)
    return [f'{s}.html' for s in stems if (HTML / f'{s}.html').is_file()]


def test_sidebar_and_prev_next_follow_the_road(server, browser):
    """The sidebar lists the notebooks in the path table's order, and each notebook's page links
    back to the one before it and on to the one after."""
    order = road()
    assert len(order) >= 29, order
    open_page(browser, server.base + 'index.html')
    links = [urlsplit(a.get_attribute('href')).path.lstrip('/') for a in
             browser.find_elements(By.CSS_SELECTOR, 'nav.bd-docs-nav a.reference.internal')]
    listed = [page for page in links if page in order]
    assert listed == order, f'sidebar order {listed}'
    for before, page, after in zip(order, order[1:], order[2:]):
        _, parsed_page = parsed(server.base + page)
        assert parsed_page.prev_next == [before, after], (page, parsed_page.prev_next)


def test_backward_pass_math_is_typeset(server, browser):
    """02's backward-pass section: every math element holds MathJax's rendering, with a size."""
    open_page(browser, server.base + '02_fully_connected.html')
    section = browser.find_element(By.ID, 'the-backward-pass-derived')
    maths = section.find_elements(By.CSS_SELECTOR, '.math')
    assert len(maths) >= 5, f'only {len(maths)} math elements in the backward pass'
    raw = [m.get_attribute('textContent')[:60] for m in maths
           if not m.find_elements(By.CSS_SELECTOR, 'mjx-container')]
    assert not raw, f'math left as source: {raw}'
    widths = [m.find_element(By.CSS_SELECTOR, 'mjx-container').size['width'] for m in maths]
    assert min(widths) > 0, f'typeset math with no width: {widths}'
    assert '\\frac' not in section.text and '$$' not in section.text


def test_06_figures_are_images_with_a_size(server, browser):
    open_page(browser, server.base + '06_cnn_hooks_init.html')
    images = browser.find_elements(By.CSS_SELECTOR, '.cell_output img')
    assert len(images) >= 3, f'only {len(images)} figures in 06'
    for image in images:
        browser.execute_script('arguments[0].scrollIntoView()', image)
    WebDriverWait(browser, WAIT).until(lambda d: all(
        d.execute_script('return arguments[0].complete', i) for i in images))
    natural = 'return [arguments[0].naturalWidth, arguments[0].naturalHeight]'
    sizes = [browser.execute_script(natural, i) for i in images]
    assert all(w > 0 and h > 0 for w, h in sizes), sizes


def test_name_index_links_conv2d_to_06(server, browser):
    """conv2d's row links to 06's page, to the export cell that holds `def conv2d`."""
    open_page(browser, server.base + 'names.html')
    rows = [r for r in browser.find_elements(By.CSS_SELECTOR, 'table tr')
            if r.find_elements(By.CSS_SELECTOR, 'td')
            and r.find_elements(By.CSS_SELECTOR, 'td')[0].text.strip() == 'conv2d']
    assert len(rows) == 1, f'{len(rows)} rows for conv2d'
    links = rows[0].find_elements(By.CSS_SELECTOR, 'td:nth-child(2) a')
    assert links, 'conv2d has no link to where it is built'
    href = links[0].get_attribute('href')
    page, _, fragment = href.partition('#')
    assert urlsplit(page).path.endswith('/06_cnn_hooks_init.html'), href
    open_page(browser, href)
    target = browser.find_element(By.ID, fragment)
    cell = browser.execute_script("""
        const t = arguments[0];
        if (t.classList.contains('cell')) return t;
        const all = Array.from(document.querySelectorAll('div.cell'));
        return all.find(c => t.compareDocumentPosition(c) & Node.DOCUMENT_POSITION_FOLLOWING
                        && !c.contains(t)) || null;""", target)
    assert cell is not None, f'no cell after #{fragment}'
    assert 'def conv2d(' in cell.text, cell.text[:300]


def test_search_finds_batchnorm_in_07(server, browser):
    open_page(browser, server.base + 'search.html?q=BatchNorm')
    WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '#search-results ul.search li'))
    hrefs = [a.get_attribute('href') for a in
             browser.find_elements(By.CSS_SELECTOR, '#search-results ul.search li a')]
    assert any('/07_batchnorm.html' in h for h in hrefs), hrefs


def test_screenshots(server, browser, capsys):
    """Two pages for a person to look at: the landing page and 02's backward pass."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    saved = []
    open_page(browser, server.base + 'index.html')
    saved.append(SHOTS / 'landing.png')
    assert browser.save_screenshot(str(saved[-1]))
    open_page(browser, server.base + '02_fully_connected.html#the-backward-pass-derived')
    saved.append(SHOTS / '02_backward_pass.png')
    assert browser.save_screenshot(str(saved[-1]))
    for path in saved:
        assert path.stat().st_size > 10_000, f'{path}: a blank screenshot?'
    with capsys.disabled():
        print('\nscreenshots: ' + ', '.join(str(p) for p in saved))
