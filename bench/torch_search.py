#!/usr/bin/env python3
"""PyTorch side of `npm run bench:search`: the reference implementation's own Q-CapsNets
search (q_capsnets.qcapsnets from a checkout given by QCAPS_REFERENCE_DIR, never committed
here) on the same model file and the same first N Fashion-MNIST test images.

usage: torch_search.py REF_DIR MODEL_PT N_TEST TOLERANCE BUDGET_MB METHOD THREADS
prints the reference's log, then one JSON line: full-precision accuracy, search seconds and
every step's bits and accuracy as the reference printed them.
"""
import ast
import contextlib
import gzip
import io
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
import types

import numpy as np
import torch


def stub_torchvision():
    """The search needs nothing from torchvision; its modules import it at load time."""
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass
    tv = types.ModuleType('torchvision')
    for sub in ('transforms', 'datasets', 'utils'):
        m = types.ModuleType('torchvision.' + sub)
        setattr(tv, sub, m)
        sys.modules['torchvision.' + sub] = m
    sys.modules['torchvision'] = tv


def fashion_test(n):
    root = '/usr/share/datasets/fashion-mnist'
    with gzip.open(os.path.join(root, 't10k-images-idx3-ubyte.gz')) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    with gzip.open(os.path.join(root, 't10k-labels-idx1-ubyte.gz')) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    # ToTensor(): uint8 / 255 in float32
    return torch.from_numpy(x.astype(np.float32) / np.float32(255.0)), torch.from_numpy(y.astype(np.int64))


def parse_steps(log):
    steps = {}
    cur = None
    for line in log.splitlines():
        m = re.match(r'STEP (\w+) output', line)
        if m:
            cur = 'step' + m.group(1)
            steps[cur] = {}
            continue
        m = re.match(r'STEP (\w+) accuracy:\s*(\S+)', line)
        if m:
            steps['step' + m.group(1)]['accuracy'] = float(m.group(2))
            continue
        if cur:
            for key, name in (('Weight bits', 'weightBits'), ('Activation bits', 'actBits'),
                              ('Dynamic Routing bits', 'routingBits')):
                if key in line:
                    steps[cur][name] = [int(v) for v in ast.literal_eval(line.split(':', 1)[1].strip())]
    return steps


def main():
    ref, model_pt, n, tol, budget, method, threads = sys.argv[1:8]
    kind = sys.argv[8] if len(sys.argv) > 8 else 'ShallowCapsNet'
    model_args = [int(v) for v in sys.argv[9].split(',')] if len(sys.argv) > 9 else [28, 1, 10, 16]
    if kind not in ('ShallowCapsNet', 'DeepCaps'):
        raise SystemExit('torch_search.py: MODEL_KIND %s: expected ShallowCapsNet or DeepCaps' % kind)
    torch.set_num_threads(int(threads))
    stub_torchvision()
    sys.path.insert(0, ref)
    import full_precision_models as FPM
    from q_capsnets import qcapsnets
    x, y = fashion_test(int(n))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=100, shuffle=False)
    work = tempfile.mkdtemp(prefix='qcaps-bench-')
    try:
        model_file = os.path.join(work, 'model.pt')
        shutil.copy(model_pt, model_file)
        model = getattr(FPM, kind)(*model_args)
        model.load_state_dict(torch.load(model_file))
        model.eval()
        correct = 0
        with torch.no_grad():
            for data, target in loader:
                out = model(data)
                correct += int((out.norm(dim=2).argmax(dim=1) == target).sum())
        fp = float(correct) * 100.0 / float(len(loader.dataset))
        buf = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            qcapsnets(kind, model_args, model_file, 10, loader, fp, float(tol), float(budget), method)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log = buf.getvalue()
    sys.stdout.write(log)
    print(json.dumps({'fp_accuracy': fp, 'search_s': seconds, 'steps': parse_steps(log), 'threads': int(threads),
                      'model_kind': kind, 'model_args': model_args,
                      # ru_maxrss is in kB on Linux
                      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      'torch': torch.__version__}))


if __name__ == '__main__':
    main()
