"""Imported first by every shim model.py: puts the launcher's Python path on ``sys.path``.

Triton's Python backend stub embeds an interpreter that ignores PYTHONPATH, so the launcher's
paths (this project and its virtual environment) are added here, ahead of the base
interpreter's own site-packages so that the venv's pinned packages win.
"""

import os
import site
import sys

_before = list(sys.path)
for _path in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    if _path and _path not in _before:
        site.addsitedir(_path)  # also runs the .pth files of a site-packages folder
sys.path[:] = [p for p in sys.path if p not in _before] + _before
