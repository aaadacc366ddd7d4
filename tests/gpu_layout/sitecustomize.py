"""Python imports this at the start of every process whose path holds this folder: under
TRAINSCAPE_TEST_LAYOUT=gpu the suite puts it on the PYTHONPATH of the trainscape processes its
tests start, so that they plan as the test process does (tests/layout.py)."""

import os
import sys

if os.environ.get("TRAINSCAPE_TEST_LAYOUT") == "gpu":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import layout

    layout.plan_as_on_a_gpu()
