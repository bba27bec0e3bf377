#!/usr/bin/env python3
"""Writes PyTorch reference fixtures of the whole models to fixtures/models/*.safetensors.

Run with Debian's python3-torch (1.13):  /usr/bin/python3 tools/make-model-fixtures.py
It runs the reference implementation's own model and decoder classes (bbussolino/Q-CapsNets,
full_precision_{layers,models,decoders}.py), extracted from the read-only mirror (or from the
folder given as QCAPS_REF) into a temporary directory. Those modules import only torch.

The weights are not stored (ShallowCapsNet alone has 6.8M of them): every state_dict entry is
filled, in PyTorch's layout, with offset + scale * (2 u_i - 1), u_i = hash_uniform(seed, i), a
counter-based uniform that src/nn/init.ts restates (hashUniform), and each file's metadata
`fill` gives [seed, scale, offset] per key (scale: the largest magnitude of PyTorch's own init
of that tensor, times 4 for the networks' weights, or a fixed spread for constant-initialised
ones). The images are filled the same way, one [seed, scale, offset] per image (`x_fill`, NCHW). The reference computes in float64 (so the fixtures hold the exact
answer to float32 precision); the tests run the float32 TypeScript models.

Fixtures:
  <model>_forward  : class capsules of a batch of 2 in eval mode ('caps_eval') and in training
                     mode ('caps_train', with BN's updated running statistics for DeepCaps).
  <model>_train    : one training step with the decoder (margin + 0.0005 * reconstruction,
                     batch 2, labels 3 and 7), Adam lr 0.001: losses in the metadata, and for every
                     parameter the gradient ('grad/<key>') and the updated value ('new/<key>')
                     at min(n, 256) evenly spaced flat indices (k * n) // S of its PyTorch layout.
"""
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from itertools import chain

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'fixtures', 'models')
MIRROR = '/work/.mirror/bbussolino+Q-CapsNets/repo'
SAMPLES = 256
GAIN = 4.0
M32 = 0xFFFFFFFF
U32 = np.uint64(M32)


@functools.lru_cache(maxsize=None)
def _core_fixtures():
    """tools/make-fixtures.py as a module (its file name has a hyphen)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'make_fixtures', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'make-fixtures.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save(name, tensors, meta=None):
    """The safetensors writer of tools/make-fixtures.py, into OUT."""
    _core_fixtures().save(name, tensors, meta, out=OUT)


def hash32(x):
    """lowbias32 on uint64 arrays holding uint32 values (src/nn/init.ts hash32)."""
    x = np.asarray(x, dtype=np.uint64) & U32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & U32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & U32
    x ^= x >> np.uint64(16)
    return x


def fnv1a(s):
    h = 0x811C9DC5
    for ch in s.encode('ascii'):
        h = ((h ^ ch) * 0x01000193) & M32
    return h


def hash_uniform(seed, n):
    """src/nn/init.ts hashUniform(seed, i) for i < n, as float64 on a 2^-24 grid."""
    i = np.arange(n, dtype=np.uint64)
    s = np.uint64(seed)
    h = hash32((i * np.uint64(0x9E3779B1) + s) & U32)
    h = hash32(h ^ s)
    return (h >> np.uint64(8)).astype(np.float64) * 2.0 ** -24


def filled(seed, shape, scale, offset):
    n = int(np.prod(shape)) if len(shape) else 1
    v = (offset + scale * (2.0 * hash_uniform(seed, n) - 1.0)).astype(np.float32)
    return torch.from_numpy(v.reshape(shape))


def fill_state(module, base, gain=1.0):
    """Overwrites every state_dict entry; returns {key: [seed, scale, offset]}. Weights get
    `gain` times the spread of PyTorch's init, so that the images make a difference (with the
    init's own spread, routing biases dominate and both images give nearly the same capsules)."""
    sd = module.state_dict()
    spec, new = {}, {}
    for key, t in sd.items():
        seed = int(hash32(base ^ fnv1a(key)))
        if key.endswith('num_batches_tracked'):
            new[key] = torch.tensor(7, dtype=torch.int64)
            spec[key] = [0, 0.0, 7.0]
            continue
        if key.endswith('running_var'):
            scale, offset = 0.5, 1.0
        elif key.endswith('running_mean'):
            scale, offset = 0.2, 0.0
        elif t.numel() == 1 or float(t.std()) == 0.0:  # constant init (biases 0 or 0.1, BN)
            scale, offset = 0.05, float(t.flatten()[0])
        else:
            scale, offset = float(t.abs().max()) * (gain if key.endswith('weight') else 1.0), 0.0
        new[key] = filled(seed, list(t.shape), scale, offset)
        spec[key] = [seed, scale, offset]
    module.load_state_dict(new)
    return spec


def reference_modules():
    ref = os.environ.get('QCAPS_REF')
    tmp = None
    if not ref:
        tmp = tempfile.mkdtemp(prefix='qcaps-ref-')
        archive = subprocess.run(['git', '-C', MIRROR, 'archive', 'HEAD'], check=True, capture_output=True).stdout
        subprocess.run(['tar', '-x', '-C', tmp], input=archive, check=True)
        ref = tmp
    sys.path.insert(0, ref)
    import full_precision_layers as L
    import full_precision_models as M
    import full_precision_decoders as D
    return L, M, D, tmp


def margin_recon_loss(caps, labels, scale, recon, image):
    """The reference's capsnet_training_loss (utils.py imports torchvision, so it is restated)."""
    one_hot = torch.zeros(caps.shape[0], caps.shape[1], dtype=caps.dtype)
    one_hot[torch.arange(caps.shape[0]), labels] = 1.0
    pred = torch.norm(caps, dim=2)
    m1 = torch.relu(0.9 - pred) ** 2
    m0 = torch.relu(pred - 0.1) ** 2
    mloss = (one_hot * m1 + 0.5 * (1.0 - one_hot) * m0).sum(dim=1)
    rloss = ((image - recon.view(recon.size(0), -1)) ** 2).sum(dim=1)
    return (mloss + scale * rloss).mean(), mloss.mean(), rloss.mean()


def images(shape):
    """Image b of the batch from x_fill[b] = [seed, scale, offset]: values in [0,1) and [0,0.5)."""
    fills = [[0x5EED + b, 0.5 / (b + 1), 0.5 / (b + 1)] for b in range(shape[0])]
    x = torch.stack([filled(f[0], shape[1:], f[1], f[2]) for f in fills])
    return x, fills


def samples(t):
    flat = t.detach().reshape(-1)
    n = flat.numel()
    s = min(n, SAMPLES)
    idx = torch.tensor([(k * n) // s for k in range(s)], dtype=torch.long)
    return flat[idx].clone()


def forward_fixture(name, model, x_shape, base):
    spec = fill_state(model, base, GAIN)
    x, xfill = images(x_shape)
    model = model.double()
    xd = x.double()
    out = {}
    with torch.no_grad():
        model.eval()
        out['caps_eval'] = model(xd)
        model.train()
        out['caps_train'] = model(xd)
    for k, t in model.state_dict().items():
        if 'running' in k:
            out['after_train/' + k] = t
    save(name, out, dict(fill=spec, x_fill=xfill, x_shape=x_shape, keys=list(model.state_dict().keys()),
                         shapes={k: list(t.shape) for k, t in model.state_dict().items()}))


def train_fixture(name, model, decoder, x_shape, base, target_of):
    spec = fill_state(model, base, GAIN)
    dspec = fill_state(decoder, base + 1)
    x, xfill = images(x_shape)
    model, decoder = model.double(), decoder.double()
    model.train()
    decoder.train()
    xd = x.double()
    labels = torch.tensor([3, 7])
    params = list(chain(model.named_parameters(), decoder.named_parameters()))
    opt = torch.optim.Adam([p for _, p in params], lr=0.001)
    opt.zero_grad()
    caps = model(xd)
    recon = decoder(caps, labels)
    loss, mloss, rloss = margin_recon_loss(caps, labels, 0.0005, recon, target_of(xd))
    loss.backward()
    out = {'caps': caps}
    for prefix, mod in (('model/', model), ('decoder/', decoder)):
        for k, p in mod.named_parameters():
            out['grad/' + prefix + k] = samples(p.grad)
    opt.step()
    for prefix, mod in (('model/', model), ('decoder/', decoder)):
        for k, p in mod.named_parameters():
            out['new/' + prefix + k] = samples(p)
        for k, t in mod.state_dict().items():
            if 'running' in k:
                out['after_train/' + prefix + k] = t
    shapes = lambda m: {k: list(t.shape) for k, t in m.state_dict().items()}
    save(name, out, dict(fill=spec, decoder_fill=dspec, x_fill=xfill, x_shape=x_shape, labels=[3, 7],
                         keys=list(model.state_dict().keys()), shapes=shapes(model),
                         decoder_keys=list(decoder.state_dict().keys()), decoder_shapes=shapes(decoder),
                         loss=float(loss), margin_loss=float(mloss), recon_loss=float(rloss),
                         regularization_scale=0.0005, lr=0.001, samples=SAMPLES))


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)  # PyTorch's own init sets the fill scales
    L, M, D, tmp = reference_modules()
    try:
        forward_fixture('shallow28_forward', M.ShallowCapsNet(28, 1, 10, 16), [2, 1, 28, 28], 101)
        # The reference hard-codes 1152 primary capsules; 64x64 inputs give 32*24*24 = 18432.
        shallow64 = M.ShallowCapsNet(64, 3, 10, 16)
        shallow64.digit = L.Capsules(ci=18432, ni=8, co=10, no=16, iterations=3)
        forward_fixture('shallow64_forward', shallow64, [2, 3, 64, 64], 102)
        forward_fixture('deepcaps28_forward', M.DeepCaps(28, 1, 10, 32), [2, 1, 28, 28], 103)
        forward_fixture('deepcaps64_forward', M.DeepCaps(64, 3, 10, 32), [2, 3, 64, 64], 104)
        flat = lambda x: x.view(x.size(0), -1)  # the reference's data.view(batch_size, -1)
        train_fixture('shallow28_train', M.ShallowCapsNet(28, 1, 10, 16), D.FCDecoder(16, 784),
                      [2, 1, 28, 28], 201, flat)
        train_fixture('deepcaps28_train', M.DeepCaps(28, 1, 10, 32), D.ConvDecoder28(32, 1),
                      [2, 1, 28, 28], 202, flat)
        train_fixture('deepcaps64_train', M.DeepCaps(64, 3, 10, 32), D.ConvDecoder64(32, 3),
                      [2, 3, 64, 64], 203, flat)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print('fixtures written to', os.path.normpath(OUT))


if __name__ == '__main__':
    main()
