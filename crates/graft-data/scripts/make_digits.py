"""Regenerates data/digits.bin from scikit-learn's copy of the UCI handwritten digits:
1797 records of 65 bytes — 64 pixel values (0..16, row-major 8x8) then the label (0..9).
usage: .venv/bin/python crates/graft-data/scripts/make_digits.py crates/graft-data/data/digits.bin"""
import sys

import numpy as np
from sklearn.datasets import load_digits

d = load_digits()
x = d.data.astype(np.uint8)
assert x.shape == (1797, 64) and x.max() == 16
rec = np.concatenate([x, d.target.astype(np.uint8)[:, None]], axis=1)
open(sys.argv[1], "wb").write(rec.tobytes())
