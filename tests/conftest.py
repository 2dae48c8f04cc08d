"""Settings for the whole suite.

Compiled test modules are cached even where the environment sets PYTHONDONTWRITEBYTECODE (these machines do):
without the cache pytest re-parses and rewrites the asserts of every test module in every xdist worker on every
run, ≈ 6 of the fast suite's ≈ 60 seconds. The files go to __pycache__ folders, which git ignores.
"""

import sys

sys.dont_write_bytecode = False
