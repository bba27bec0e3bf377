#!/usr/bin/env python3
"""Writes fixtures/quant/*.safetensors: the reference implementation's QUANTIZED models
(quantized_models.py with its round_to_nearest / truncation and their in-place weight
versions) on the hash-filled weights and images of tools/make-model-fixtures.py, at fixed
per-layer bits, in float32 as the reference runs. The test runs qcapsnets with
--rounding-compat dac2020 semantics on the same weights and compares.

Run with Debian's python3-torch: /usr/bin/python3 tools/make-quant-fixtures.py
"""
import os
import shutil
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import importlib.util

spec = importlib.util.spec_from_file_location('mmf', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                   'make-model-fixtures.py'))
mmf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mmf)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'quant')


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tmp = tempfile.mkdtemp(prefix='qcaps-ref-')
    try:
        archive = subprocess.run(['git', '-C', mmf.MIRROR, 'archive', 'HEAD'], check=True, capture_output=True).stdout
        subprocess.run(['tar', '-x', '-C', tmp], input=archive, check=True)
        sys.path.insert(0, tmp)
        import quantized_models as QM
        import quantization_methods as QF
        mmf.OUT = OUT
        cases = [
            ('shallow28', QM.ShallowCapsNet(28, 1, 10, 16), [4, 1, 28, 28], 301,
             dict(weights=[7, 6, 8], act=[6, 5, 7], routing=[5, 4])),
            ('deepcaps28', QM.DeepCaps(28, 1, 10, 32), [4, 1, 28, 28], 302,
             dict(weights=[8, 7, 7, 6, 7, 8], act=[8, 7, 7, 6, 6, 7], routing=[6, 5])),
            ('deepcaps28_fine', QM.DeepCaps(28, 1, 10, 32), [4, 1, 28, 28], 302,
             dict(weights=[14, 14, 14, 14, 14, 14], act=[14, 14, 14, 14, 14, 14], routing=[14, 14])),
        ]
        for name, model, x_shape, base, bits in cases:
            fill = mmf.fill_state(model, base, mmf.GAIN)
            x, xfill = mmf.images(x_shape)
            model.eval()
            out = {}
            for method in ('round_to_nearest', 'truncation'):
                m = type(model)(*([28, 1, 10, 16] if name.startswith('shallow') else [28, 1, 10, 32]))
                m.load_state_dict(model.state_dict())
                m.eval()
                weight_fn = getattr(QF, method + '_inplace')
                act_fn = getattr(QF, method)
                with torch.no_grad():
                    for i, c in enumerate(m.children()):
                        for p in c.parameters():
                            weight_fn(p, bits['weights'][i])
                    out[method] = m(x, act_fn, bits['act'], bits['routing'])
            mmf.save(name, out, dict(fill=fill, x_fill=xfill, x_shape=x_shape, bits=bits))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print('fixtures written to', os.path.normpath(OUT))


if __name__ == '__main__':
    main()
