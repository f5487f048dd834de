"""torch.save files for tests/torch_file.rs: torch_files.py OUT

good.pth          a state dict with every storage kind graft reads, a transposed (strided) view,
                  two tensors sharing one storage at different offsets, nn.Parameters, a nested
                  dict and a non-tensor value; good.safetensors: the same tensors, contiguous, as
                  float32 / bfloat16 / int64 (what graft gives)
evil.pth          a zip whose data.pkl would call os.system to create OUT/pwned
overrun.pth       good.pth with one storage cut short (a view past its bytes)
legacy.pth        good.pth's state dict in the pre-1.6 (non-zip) format
junk.pth          neither format
"""
import os
import pickle
import sys
import zipfile

import torch
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(3)
base = torch.randn(6, 5, generator=g)
shared = torch.arange(20, dtype=torch.float32)
sd = {
    "f32": torch.randn(2, 3, generator=g),
    "f64": torch.randn(4, generator=g, dtype=torch.float64),
    "f16": torch.randn(3, 2, generator=g).half(),
    "bf16": torch.randn(5, generator=g).bfloat16(),
    "i64": torch.tensor([1, -2, 3 << 40]),
    "i32": torch.tensor([7, -8], dtype=torch.int32),
    "i16": torch.tensor([-300, 300], dtype=torch.int16),
    "i8": torch.tensor([-5, 5], dtype=torch.int8),
    "u8": torch.tensor([0, 255], dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
    "transposed": base.t(),
    "shared_a": shared[2:8],
    "shared_b": shared[10:14].view(2, 2),
    "scalar": torch.tensor(2.5),
    "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
    "nested": {"w": torch.ones(3)},
    "epoch": 7,
}
torch.save(sd, os.path.join(out, "good.pth"))

ref = {}
for k, v in sd.items():
    if isinstance(v, dict):
        for k2, v2 in v.items():
            ref[f"{k}.{k2}"] = v2.detach().contiguous().float()
    elif torch.is_tensor(v):
        v = v.detach().contiguous()
        if v.dtype == torch.bfloat16:
            ref[k] = v
        elif v.is_floating_point():
            ref[k] = v.float()
        else:
            ref[k] = v.long()
save_file(ref, os.path.join(out, "good.safetensors"))


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.path.join(out, 'pwned')}",))


with zipfile.ZipFile(os.path.join(out, "good.pth")) as src, \
        zipfile.ZipFile(os.path.join(out, "evil.pth"), "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        data = src.read(info.filename)
        if info.filename.endswith("data.pkl"):
            data = pickle.dumps({"w": Evil()}, protocol=2)
        dst.writestr(info.filename, data)

with zipfile.ZipFile(os.path.join(out, "good.pth")) as src, \
        zipfile.ZipFile(os.path.join(out, "overrun.pth"), "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        data = src.read(info.filename)
        if info.filename.endswith("data/0"):
            data = data[: len(data) // 2]
        dst.writestr(info.filename, data)

torch.save(sd, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)
with open(os.path.join(out, "junk.pth"), "wb") as f:
    f.write(b"\x80\x02}q\x00." + b"x" * 100)
