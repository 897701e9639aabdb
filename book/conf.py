# Sphinx configuration of the book (`make book`): sphinx-build -c book book/_build/src ...
# The source folder is written by book/make_pages.py; this folder holds the configuration.
project = 'dl-foundations'
author = 'dl-foundations'
html_title = 'dl-foundations'

extensions = ['myst_nb']
# The committed outputs are the book's: nothing is executed, so a page shows what `make test` ran.
nb_execution_mode = 'off'
nb_merge_streams = True  # one block per cell for stdout, not one per print flush
myst_enable_extensions = ['dollarmath', 'amsmath']
myst_dmath_double_inline = True  # `$$...$$` inside a paragraph is display math, as in Jupyter
myst_heading_anchors = 3

html_theme = 'sphinx_book_theme'
html_theme_options = {
    'show_toc_level': 2,
    'use_download_button': False,  # the notebooks are in the repo; the copies here carry anchors
    'use_fullscreen_button': False,
    'home_page_in_toc': True,
}
html_copy_source = False
html_show_sourcelink = False
# Local files only, so the book reads offline: the theme's assets are bundled with it, and MathJax
# is npm's package copied by make_pages.py into _build/static/mathjax (served as _static/mathjax).
html_static_path = ['static', '_build/static']
html_css_files = ['book.css']
mathjax_path = 'mathjax/tex-chtml.js'
html_last_updated_fmt = None
# The theme's light/dark switch starts from the reader's system setting; an empty mode (the
# default) makes the theme log a console error on a first visit.
html_context = {'default_mode': 'auto'}
html_favicon = 'static/favicon.svg'  # a page without an icon sends the browser to /favicon.ico
