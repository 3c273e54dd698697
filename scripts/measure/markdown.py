# SPDX-License-Identifier: GPL-2.0-or-later
"""measure.markdown: results as Markdown, in a dated file under docs/results/.

make validate and make bench write what they measured themselves, so that
no table is typed by hand: OUT/results.md of every run and, for a full run
(not --quick), the same in docs/results/KIND-YYYY-MM-DD-HHMM-HOST.md, with
the machine it ran on (measure.machine).  docs/results/README.md, the index
the docs pages link to, is rewritten each time: newest first.
"""

import os
import re
import time

from measure import TOP

DOCS_RESULTS = os.path.join(TOP, 'docs', 'results')
KINDS = [('validate', 'make validate: bt-report against real migrations',
          '../accuracy.md'),
         ('bench', 'make bench: what a trace costs', '../cost.md')]


def escape(cell):
    return str(cell).replace('|', '\\|').replace('\n', ' ')


def md_table(header, rows):
    """A Markdown table: one header row, the rows (lists of cells)."""
    out = ['| ' + ' | '.join(escape(h) for h in header) + ' |',
           '|' + '---|' * len(header)]
    for row in rows:
        out.append('| ' + ' | '.join(escape(c) for c in row) + ' |')
    return '\n'.join(out)


def code(text, lang='text'):
    return f'```{lang}\n{text.rstrip()}\n```'


def document(title, machine_md, sections):
    """A results file: the title, the machine, then (heading, body) sections."""
    parts = [f'# {title}', '', machine_md]
    for heading, body in sections:
        parts += ['', f'## {heading}', '', body.rstrip()]
    return '\n'.join(parts) + '\n'


def safe(name):
    return re.sub(r'[^A-Za-z0-9.-]+', '-', name).strip('-') or 'host'


def results_path(kind, host, when=None, tag=None, docs_dir=DOCS_RESULTS):
    when = time.gmtime() if when is None else when
    base = f"{kind}-{time.strftime('%Y-%m-%d-%H%M', when)}-{safe(host)}"
    if tag:
        base += '-' + safe(tag)
    path = os.path.join(docs_dir, base + '.md')
    n = 2
    while os.path.exists(path):
        path = os.path.join(docs_dir, f'{base}-{n}.md')
        n += 1
    return path


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        f.write(text)
    os.replace(path + '.tmp', path)
    return path


def title_of(path):
    try:
        with open(path) as f:
            first = f.readline().strip()
    except OSError:
        return ''
    return first[2:] if first.startswith('# ') else first


def update_index(docs_dir=DOCS_RESULTS):
    """docs/results/README.md: every results file, newest first per tool."""
    names = sorted((n for n in os.listdir(docs_dir)
                    if n.endswith('.md') and n != 'README.md'),
                   key=lambda n: n[:-3], reverse=True)
    out = ['# Measured results', '',
           'Each file is one run of a measuring tool, written by the tool itself',
           '(`scripts/measure/`): the tables as it printed them and the machine it ran',
           'on.  Files are named `TOOL-DATE-TIME-HOST.md` (UTC); the newest comes first.',
           'This index is rewritten by every full run of `make validate` and',
           '`make bench`.']
    for kind, what, page in KINDS:
        out += ['', f'## {what}', '', f'What the figures mean: [{page[3:]}]({page}).', '']
        mine = [n for n in names if n.startswith(kind + '-')]
        out += [f'- [{n}]({n}): {title_of(os.path.join(docs_dir, n))}' for n in mine] or \
            ['- (none yet)']
    return write(os.path.join(docs_dir, 'README.md'), '\n'.join(out) + '\n')


def publish(kind, text, out_dir, host, quick, docs_dir=None, tag=None):
    """Write @text to OUT/results.md and, for a full run, to a new dated
    file under docs/results/ (and the index); returns the paths written."""
    paths = [write(os.path.join(out_dir, 'results.md'), text)]
    if not quick and docs_dir != '':
        docs_dir = docs_dir or DOCS_RESULTS
        paths.append(write(results_path(kind, host, tag=tag, docs_dir=docs_dir), text))
        update_index(docs_dir)
    return paths
