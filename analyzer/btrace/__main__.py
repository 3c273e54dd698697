# SPDX-License-Identifier: GPL-2.0-or-later
"""bt-report: python3 -m btrace, and the bt-report command pip installs.

main() checks for numpy before anything imports it, so that a Python
without it (another python3 first on PATH) says what to do instead of
ending in a traceback."""

import sys

from .needs import missing


def main(argv=None):
    try:
        import numpy  # noqa: F401
    except ImportError as e:
        print(missing('numpy', 'python3-numpy', 'bt-report', e), file=sys.stderr)
        return 1
    from . import cli
    try:
        return cli.main(argv)
    except BrokenPipeError:
        return 0


if __name__ == '__main__':
    sys.exit(main())
