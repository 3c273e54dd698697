# SPDX-License-Identifier: GPL-2.0-or-later
"""What to say when numpy (everything) or matplotlib (--plot-dir) is missing.

Both are Debian packages, python3-numpy and python3-matplotlib (make deps
installs them), which only Debian's own Python, /usr/bin/python3, sees: a
python3 found first on PATH (pyenv, a venv without --system-site-packages)
does not.  This module imports neither."""

import sys


def missing(module, package, who, error):
    """The message for ImportError error of module, which Debian ships as package."""
    where = sys.executable or 'this Python'
    hint = f"install Debian's {package} (make deps does)"
    if where != '/usr/bin/python3':
        hint += ' and run with /usr/bin/python3, which sees it'
    return f'{who}: needs {module}, which {where} does not have ({error}): {hint}'
