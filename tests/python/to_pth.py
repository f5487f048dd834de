"""torch.save a safetensors file's tensors as a state dict (zip format): to_pth.py IN OUT"""
import sys

import torch
from safetensors.torch import load_file

torch.save(load_file(sys.argv[1]), sys.argv[2])
