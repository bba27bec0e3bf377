#!/usr/bin/env python3
"""Checkpoint interchange with the reference implementation (used by test/io-checkpoint.test.ts
when /usr/bin/python3 has torch and the reference is reachable):

  check-checkpoint.py REF_DIR load  FILE.pt IMAGES.f32 N   -> qcapsnets wrote FILE.pt: load it with
      torch.load(weights_only=True) into the reference's ShallowCapsNet (strict) and print the
      class-capsule lengths of N 28x28 images (raw float32 file, NCHW) as JSON
  check-checkpoint.py REF_DIR write FILE.pt IMAGES.f32 N   -> the reference writes a freshly
      initialised ShallowCapsNet with torch.save and prints its capsule lengths the same way
"""
import json
import sys

import numpy as np
import torch


def main():
    ref, mode, path, images, n = sys.argv[1:6]
    sys.path.insert(0, ref)
    import full_precision_models as FPM
    torch.manual_seed(123)
    model = FPM.ShallowCapsNet(28, 1, 10, 16)
    if mode == 'load':
        state = torch.load(path, weights_only=True)
        model.load_state_dict(state, strict=True)
    else:
        torch.save(model.state_dict(), path)
    model.eval()
    x = torch.from_numpy(np.fromfile(images, dtype=np.float32).reshape(int(n), 1, 28, 28))
    with torch.no_grad():
        lengths = model(x).norm(dim=2)
    print(json.dumps(lengths.tolist()))


if __name__ == '__main__':
    main()
