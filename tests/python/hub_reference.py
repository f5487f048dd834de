"""Python's side of tests/pretrained.rs: timm writes Hub repos, huggingface_hub and timm read and
fill the same cache graft does.

    repo TAG OUT        timm.create_model(TAG) with every parameter and buffer re-randomised,
                        written by timm's own save_for_hf (config.json + model.safetensors), and
                        OUT/io.safetensors: an input x and timm's eval logits on it
    pull REPO FILE      huggingface_hub.hf_hub_download(REPO, FILE) (HF_ENDPOINT, HF_HUB_CACHE
                        from the environment); prints the path
    offline TAG X OUT   HF_HUB_OFFLINE=1: hf_hub_download(..., local_files_only=True) finds the
                        tag's model.safetensors, and timm.create_model(TAG, pretrained=True) runs x;
                        OUT gets its logits
    tv ARCH WEIGHTS OUT torchvision's ARCH with re-randomised weights saved where torchvision keeps
                        WEIGHTS' file ($TORCH_HOME/hub/checkpoints/<name from its URL>), as if
                        torchvision had downloaded it; OUT/io.safetensors: x and its logits
    tv_cached URL       torch.hub.load_state_dict_from_url(URL) (TORCH_HOME from the environment)
                        finds the file in the cache without a request; prints its tensor count
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402


def repo(tag, out):
    import timm
    from timm.models._hub import save_for_hf
    from zoo_fixtures import randomise

    torch.manual_seed(0)
    model = timm.create_model(tag, pretrained=False).eval()
    randomise(model, 11)
    save_for_hf(model, out, safe_serialization=True)
    c, h, w = model.pretrained_cfg["input_size"]
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y = model(x)
    save_file({"x": x.contiguous(), "logits": y.contiguous()}, os.path.join(out, "io.safetensors"))


def pull(repo_id, filename):
    from huggingface_hub import hf_hub_download

    print(hf_hub_download(repo_id, filename))


def offline(tag, x_path, out):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    import timm
    from huggingface_hub import hf_hub_download
    from timm.models import get_pretrained_cfg

    path = hf_hub_download(get_pretrained_cfg(tag).hf_hub_id, "model.safetensors", local_files_only=True)
    assert os.path.isfile(path), path
    model = timm.create_model(tag, pretrained=True).eval()
    x = load_file(x_path)["x"]
    with torch.no_grad():
        y = model(x)
    save_file({"logits": y.contiguous()}, out)


def tv(arch, weights, out):
    import torchvision
    from zoo_fixtures import randomise

    w = torchvision.models.get_model_weights(arch)[weights]
    model = torchvision.models.get_model(arch).eval()
    randomise(model, 13)
    ckpt = os.path.join(torch.hub.get_dir(), "checkpoints")
    os.makedirs(ckpt, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(ckpt, os.path.basename(w.url)))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y = model(x)
    os.makedirs(out, exist_ok=True)
    save_file({"x": x.contiguous(), "logits": y.contiguous()}, os.path.join(out, "io.safetensors"))


def tv_cached(url):
    sd = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True)
    print(len(sd))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"repo": repo, "pull": pull, "offline": offline, "tv": tv, "tv_cached": tv_cached}[cmd](*args)
