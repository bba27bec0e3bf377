#!/usr/bin/env python3
"""PyTorch side of `npm run bench:train`: the reference implementation's training step and
test pass, with its own model and decoder classes (full_precision_models.py,
full_precision_decoders.py, imported from REF_DIR: a temporary extraction of the reference made
by bench/train.ts, never part of this repository). The reference's utils.py imports torchvision,
so its loss and accuracy (capsnet_training_loss, capsnet_testing_loss, accuracy) and main.py's
optimizer and LambdaLR schedule are restated here.

usage: torch_train.py MODEL MODE THREADS RUNS DATA_DIR REF_DIR   -> prints one JSON line
  MODEL  shallow (ShallowCapsNet 28 1 10 16 + FCDecoder 16 784)
         | deepcaps (DeepCaps 28 1 10 32 + ConvDecoder28 32 1)
  MODE   train: median over RUNS training steps at batch 100 after one warm-up step
         test:  one full test pass over the 10,000 test images at batch 100 (eval mode,
                torch.no_grad(), after a warm-up batch), RUNS times, median
Thread count and malloc settings come from the caller (MALLOC_* environment variables).
"""
import gzip
import json
import os
import resource
import sys
import time
from itertools import chain

import numpy as np
import torch
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(data_dir, base):
    for name in (base, base + '.gz'):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(os.path.join(data_dir, base))


def load(data_dir, split):
    prefix = 'train' if split == 'train' else 't10k'
    x = read_idx(find(data_dir, prefix + '-images-idx3-ubyte'))
    y = read_idx(find(data_dir, prefix + '-labels-idx1-ubyte'))
    return torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


# --- restated from the reference's utils.py (it imports torchvision) ---
def one_hot_encode(target, length):
    return F.one_hot(target, length).float()


def capsnet_training_loss(out_digit, target_one_hot, scale, reconstruction, image, hard=False):
    pred = torch.norm(out_digit, dim=2)
    if hard:
        m1, m0, coeff = F.relu(0.95 - pred) ** 2, F.relu(pred - 0.05) ** 2, 0.8
    else:
        m1, m0, coeff = F.relu(0.9 - pred) ** 2, F.relu(pred - 0.1) ** 2, 0.5
    lk = target_one_hot * m1 + coeff * (1. - target_one_hot) * m0
    mloss = lk.sum(dim=1)
    reconstruction = reconstruction.view(reconstruction.size(0), -1)
    rloss = ((image - reconstruction) ** 2).sum(dim=1)
    return (mloss + scale * rloss).mean(), mloss.mean(), rloss.mean()


def capsnet_testing_loss(out_digit, target_one_hot):
    pred = torch.norm(out_digit, dim=2)
    lk = target_one_hot * F.relu(0.9 - pred) ** 2 + 0.5 * (1. - target_one_hot) * F.relu(pred - 0.1) ** 2
    return lk.sum(dim=1).mean()


def accuracy(output, target):
    v_length = torch.sqrt((output ** 2).sum(dim=2))
    _, max_index = v_length.max(dim=1)
    return torch.eq(target, max_index).float().mean()


def main():
    model_name, mode, threads, runs, data_dir, ref_dir = sys.argv[1:7]
    threads, runs = int(threads), int(runs)
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    sys.path.insert(0, ref_dir)
    import full_precision_models as models  # noqa: E402  (the reference's classes)
    import full_precision_decoders as decoders  # noqa: E402

    if model_name == 'shallow':
        model, decoder = models.ShallowCapsNet(28, 1, 10, 16), decoders.FCDecoder(16, 784)
    else:
        model, decoder = models.DeepCaps(28, 1, 10, 32), decoders.ConvDecoder28(32, 1)
    batch = 100
    times = []
    if mode == 'train':
        x_all, y_all = load(data_dir, 'train')
        optimizer = torch.optim.Adam(chain(model.parameters(), decoder.parameters()), lr=0.001)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.96 ** (step / 2000))
        model.train()
        decoder.train()
        for r in range(runs + 1):
            data = x_all[r * batch:(r + 1) * batch]
            target = y_all[r * batch:(r + 1) * batch]
            t0 = time.perf_counter()
            optimizer.zero_grad()
            output = model(data)
            reconstruction = decoder(output, target)
            loss, _, _ = capsnet_training_loss(output, one_hot_encode(target, 10), 0.0005, reconstruction,
                                               data.view(data.size(0), -1))
            loss.backward()
            optimizer.step()
            scheduler.step()
            accuracy(output, target)
            if r > 0:  # r == 0 is the warm-up
                times.append(time.perf_counter() - t0)
        median_ms = float(np.median(times)) * 1000
        out = {'median_ms': median_ms, 'images_per_s': batch / (median_ms / 1000)}
    else:
        x_all, y_all = load(data_dir, 'test')
        model.eval()
        with torch.no_grad():
            model(x_all[:batch])  # warm-up batch
            for _ in range(runs):
                t0 = time.perf_counter()
                correct, loss = 0, 0.0
                for b in range(0, x_all.size(0), batch):
                    data, target = x_all[b:b + batch], y_all[b:b + batch]
                    output = model(data)
                    loss += float(capsnet_testing_loss(output, one_hot_encode(target, 10)))
                    correct += int((torch.sqrt((output ** 2).sum(dim=2)).max(dim=1)[1] == target).sum())
                times.append(time.perf_counter() - t0)
        seconds = float(np.median(times))
        out = {'median_s': seconds, 'images_per_s': x_all.size(0) / seconds, 'accuracy': correct * 100 / x_all.size(0)}
    out.update({
        'name': f'{model_name}-{mode}',
        'threads': threads,
        'runs': runs,
        'runs_s': times,
        'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        'torch': torch.__version__,
    })
    print(json.dumps(out))


if __name__ == '__main__':
    main()
