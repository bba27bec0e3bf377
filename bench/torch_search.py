#!/usr/bin/env python3
"""PyTorch side of `npm run bench:search`: the reference implementation's own Q-CapsNets
search (q_capsnets.qcapsnets from a checkout given by QCAPS_REFERENCE_DIR, never committed
here) on the same model file and the same first N Fashion-MNIST test images.

usage: torch_search.py REF_DIR MODEL_PT N_TEST TOLERANCE BUDGET_MB METHOD THREADS [KIND [ARGS]]
prints the reference's log, then one JSON line: full-precision accuracy, search seconds,
every step's bits and accuracy as the reference printed them, and every evaluation the search
made (its weight, activation and routing bits and its correct count).

usage: torch_search.py --recheck REF_DIR MODEL_PT N_TEST METHOD THREADS KIND ARGS CONFIG_JSON
reruns the reference's evaluation of one configuration ({"weightBits": [...], "actBits": [...],
"routingBits": [...]}) as its search does (weights rounded in place by METHOD_inplace,
quantized_test with METHOD), once in float32 and once in float64 (model.double(), the images in
float64, the same quantizers); prints one JSON line with both correct counts.
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


class EvaluationRecorder:
    """Wraps the reference's in-place weight quantizer and quantized_test (module globals of
    q_capsnets, looked up at each call) to record every evaluation of its search: the weight
    bits each layer's parameters were last rounded to, the activation and routing bits, and the
    correct count (quantized_test returns correct * 100 / N; N <= 10,000 keeps it exact)."""

    def __init__(self, q_capsnets, method, n):
        self.evaluations = []
        self.weight_bits = {}  # id(parameter) -> bits it was last rounded to
        quantize_weights = getattr(q_capsnets, method + '_inplace')
        test = q_capsnets.quantized_test

        def recording_quantize_weights(p, bits):
            self.weight_bits[id(p)] = int(bits)
            return quantize_weights(p, bits)

        def recording_test(model, num_classes, loader, function, act_bits, dr_bits):
            accuracy = test(model, num_classes, loader, function, act_bits, dr_bits)
            layers = [[self.weight_bits.get(id(p)) for p in c.parameters()] for c in model.children()]
            self.evaluations.append({
                'weightBits': [bits[0] if bits and all(b == bits[0] for b in bits) else None for bits in layers],
                'actBits': [int(b) for b in act_bits],
                'routingBits': [int(b) for b in dr_bits],
                'correct': int(round(accuracy * n / 100.0)),
                'total': n,
            })
            return accuracy

        setattr(q_capsnets, method + '_inplace', recording_quantize_weights)
        q_capsnets.quantized_test = recording_test


def recheck(argv):
    """The reference's evaluation of one configuration in float32 and in float64."""
    ref, model_pt, n, method, threads, kind, args, config = argv
    torch.set_num_threads(int(threads))
    stub_torchvision()
    sys.path.insert(0, ref)
    import q_capsnets
    import quantized_models as QM
    bits = json.loads(config)
    x, y = fashion_test(int(n))
    counts = {}
    for dtype in ('float32', 'float64'):
        model = getattr(QM, kind)(*[int(v) for v in args.split(',')])
        model.load_state_dict(torch.load(model_pt))
        quantize_weights = getattr(q_capsnets, method + '_inplace')
        for i, c in enumerate(model.children()):
            for p in c.parameters():
                with torch.no_grad():
                    quantize_weights(p, bits['weightBits'][i])
        images = x
        if dtype == 'float64':
            # the rounded weights are exact in float64 too; from here every sum is float64
            model.double()
            images = x.double()
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, y), batch_size=100, shuffle=False)
        with torch.no_grad():
            accuracy = q_capsnets.quantized_test(model, 10, loader, getattr(q_capsnets, method),
                                                 bits['actBits'], bits['routingBits'])
        counts[dtype] = int(round(accuracy * int(n) / 100.0))
    print(json.dumps({'correct_float32': counts['float32'], 'correct_float64': counts['float64'], 'total': int(n)}))


def main():
    if sys.argv[1] == '--recheck':
        recheck(sys.argv[2:])
        return
    ref, model_pt, n, tol, budget, method, threads = sys.argv[1:8]
    kind = sys.argv[8] if len(sys.argv) > 8 else 'ShallowCapsNet'
    model_args = [int(v) for v in sys.argv[9].split(',')] if len(sys.argv) > 9 else [28, 1, 10, 16]
    if kind not in ('ShallowCapsNet', 'DeepCaps'):
        raise SystemExit('torch_search.py: MODEL_KIND %s: expected ShallowCapsNet or DeepCaps' % kind)
    torch.set_num_threads(int(threads))
    stub_torchvision()
    sys.path.insert(0, ref)
    import full_precision_models as FPM
    import q_capsnets
    recorder = EvaluationRecorder(q_capsnets, method, int(n))
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
            q_capsnets.qcapsnets(kind, model_args, model_file, 10, loader, fp, float(tol), float(budget), method)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log = buf.getvalue()
    sys.stdout.write(log)
    print(json.dumps({'fp_accuracy': fp, 'search_s': seconds, 'steps': parse_steps(log), 'threads': int(threads),
                      'evaluations': recorder.evaluations,
                      'model_kind': kind, 'model_args': model_args,
                      # ru_maxrss is in kB on Linux
                      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      'torch': torch.__version__}))


if __name__ == '__main__':
    main()
