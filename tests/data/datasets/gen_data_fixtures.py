#!/usr/bin/python3
"""Fixtures for tests/test_data.c, written by independent implementations (numpy's np.save, the
`gzip` program, and Python's struct for IDX). Run from the repository root:
    /usr/bin/python3 tests/data/datasets/gen_data_fixtures.py
numpy's version is recorded in VERSIONS.txt beside the files."""
import os
import subprocess

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def out(name):
    return os.path.join(here, name)


# --- npy (numpy's own writer) ---
x = (np.arange(3 * 4 * 2, dtype=np.float64).reshape(3, 4, 2) - 5.5) / 4.0
np.save(out("x_f8.npy"), x)
np.save(out("x_f4.npy"), x.astype(np.float32))
np.save(out("x_i8.npy"), np.arange(3 * 4 * 2, dtype=np.int64).reshape(3, 4, 2) - 7)
np.save(out("y_i8.npy"), np.array([2, 0, 1], dtype=np.int64))
np.save(out("tags_i8.npy"), np.array([[0, 1, 1, 2], [2, 2, 0, 0], [1, 0, 1, 0]], dtype=np.int64))
np.save(out("series_f8.npy"), np.sin(np.arange(50, dtype=np.float64) / 5.0).reshape(25, 2))

with open(out("VERSIONS.txt"), "w") as f:
    f.write("numpy %s\n" % np.__version__)
    f.write(subprocess.run(["gzip", "--version"], capture_output=True, text=True).stdout.splitlines()[0] + "\n")
