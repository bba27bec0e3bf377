#!/usr/bin/env python3
"""Fixtures for src/io (PyTorch checkpoint and safetensors readers/writers).

    /usr/bin/python3 tools/make-io-fixtures.py            # (re)write fixtures/io/*
    /usr/bin/python3 tools/make-io-fixtures.py --verify F # check a .pt our TypeScript writer made

Needs only torch (tested with 1.13). Fixtures written to fixtures/io/:

  tiny.pt                torch.save(TinyNet().state_dict()): conv, batchnorm (int64
                         num_batches_tracked), linear, a transposed (non-contiguous) parameter,
                         views with storage offsets sharing one storage, float64/float16/
                         bfloat16/int64 buffers
  tiny-legacy.pt         the same with the pre-1.6 (non-zip) format
  tiny.expected.json     every tensor of tiny.pt: dtype, shape, row-major values (integers as
                         strings, so int64 values survive JSON)
  checkpoint.pt          {'model': state_dict, 'optimizer': Adam state_dict, 'epoch', ...}
  tiny.safetensors       a few of the same tensors (F32, F16, BF16, F64, I64) plus metadata,
                         encoded by hand here (the safetensors package is not needed)
  malicious-global.pt    zip whose data.pkl calls os.system via GLOBAL + REDUCE
  malicious-stack-global.pt  the same idea with builtins.eval via STACK_GLOBAL (protocol 4)
  deflated.zip           a plain zip from Python's zipfile: 'hello.txt' ("hello, zip\n" x 50,
                         deflated), 'empty.txt' (deflated, empty), 'raw.bin' (bytes 0..255, stored)

Reruns rewrite identical bytes except tiny-legacy.pt (the legacy format keys storages by
memory address); its decoded contents stay the same.

--verify FILE loads FILE with torch.load(weights_only=True), checks each record of the zip
is 64-byte aligned, loads it into TinyNet with load_state_dict(strict=True) and compares
every tensor with tiny.pt. Exit status 0 and "OK ..." on success.
"""

import argparse
import json
import struct
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / 'fixtures' / 'io'


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(4, 3)
        # Non-contiguous parameter: a transposed view saved as-is (shape (4, 3), strides (1, 4)).
        base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8 - 0.5
        self.transposed = nn.Parameter(base.t())
        # Two views of one storage, with storage offsets (8 and 12) and strides (6, 1) / (1,).
        grid = torch.arange(30, dtype=torch.float32).reshape(5, 6) * 0.25
        self.register_buffer('window', grid[1:4, 2:5])
        self.register_buffer('row', grid[2])
        self.register_buffer('f64', torch.tensor([0.1, -2.5, 1e-3, 3.0], dtype=torch.float64))
        self.register_buffer('f16', torch.tensor([0.5, -1.25, 65504.0, 2.0**-24, 0.1], dtype=torch.float16))
        self.register_buffer('bf16', torch.tensor([1.0, -3.5, 0.1], dtype=torch.bfloat16))
        self.register_buffer('counts', torch.tensor([[1, -2], [2**53 + 1, 7]], dtype=torch.int64))


def make_model():
    torch.manual_seed(0)
    model = TinyNet()
    model.train()
    for _ in range(2):  # moves running_mean/var, num_batches_tracked = 2
        model.bn(torch.randn(4, 3, 2, 2))
    return model


def expected_json(state_dict):
    out = OrderedDict()
    for name, t in state_dict.items():
        flat = t.detach().contiguous().reshape(-1)
        if t.dtype == torch.int64:
            values = [str(v) for v in flat.tolist()]
        else:
            values = flat.double().tolist()
        out[name] = {'dtype': str(t.dtype).replace('torch.', ''), 'shape': list(t.shape), 'values': values}
    return out


def write_safetensors(path, tensors, metadata):
    assert sys.byteorder == 'little', 'safetensors data is little-endian'
    codes = {torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16', torch.float64: 'F64', torch.int64: 'I64'}
    header, blobs, offset = {'__metadata__': metadata}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        # bfloat16 has no numpy dtype: take its raw 16-bit patterns through int16.
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {'dtype': codes[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    path.write_bytes(struct.pack('<Q', len(text)) + text + b''.join(blobs))


def add_to_zip(z, name, data, compress_type=zipfile.ZIP_STORED):
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))  # fixed, so reruns are byte-identical
    info.compress_type = compress_type
    z.writestr(info, data)


def write_zip_pickle(path, pickle_bytes):
    stem = path.stem
    with zipfile.ZipFile(path, 'w') as z:
        add_to_zip(z, f'{stem}/data.pkl', pickle_bytes)
        add_to_zip(z, f'{stem}/version', '3\n')


def os_system_pickle():
    # PROTO 2; GLOBAL 'os system'; BINUNICODE 'echo pwned'; TUPLE1; REDUCE; STOP
    cmd = b'echo pwned'
    return b'\x80\x02cos\nsystem\n' + b'X' + struct.pack('<I', len(cmd)) + cmd + b'\x85R.'


def eval_stack_global_pickle():
    # PROTO 4; SHORT_BINUNICODE 'builtins' 'eval'; STACK_GLOBAL; SHORT_BINUNICODE '1+1'; TUPLE1; REDUCE; STOP
    def short(s):
        return b'\x8c' + bytes([len(s)]) + s.encode()
    return b'\x80\x04' + short('builtins') + short('eval') + b'\x93' + short('1+1') + b'\x85R.'


def make_fixtures():
    OUT.mkdir(parents=True, exist_ok=True)
    model = make_model()
    sd = model.state_dict()
    assert not sd['transposed'].is_contiguous() and sd['window'].storage_offset() == 8
    torch.save(sd, OUT / 'tiny.pt')
    torch.save(sd, OUT / 'tiny-legacy.pt', _use_new_zipfile_serialization=False)
    lines = [f' {json.dumps(name)}: {json.dumps(entry)}' for name, entry in expected_json(sd).items()]
    (OUT / 'tiny.expected.json').write_text('{\n' + ',\n'.join(lines) + '\n}\n')

    trained = make_model()  # a separate copy: stepping `model` would change sd's tensors in place
    optimizer = torch.optim.Adam(trained.parameters(), lr=0.01, betas=(0.9, 0.99))
    trained.fc(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    torch.save({'model': sd, 'optimizer': optimizer.state_dict(), 'epoch': 3, 'best_acc': 0.875, 'note': 'hello'},
               OUT / 'checkpoint.pt')

    picked = ['conv.weight', 'f16', 'bf16', 'f64', 'counts', 'bn.num_batches_tracked']
    write_safetensors(OUT / 'tiny.safetensors', {k: sd[k] for k in picked}, {'format': 'pt', 'source': 'make-io-fixtures'})

    write_zip_pickle(OUT / 'malicious-global.pt', os_system_pickle())
    write_zip_pickle(OUT / 'malicious-stack-global.pt', eval_stack_global_pickle())
    with zipfile.ZipFile(OUT / 'deflated.zip', 'w') as z:
        add_to_zip(z, 'hello.txt', 'hello, zip\n' * 50, zipfile.ZIP_DEFLATED)
        add_to_zip(z, 'empty.txt', '', zipfile.ZIP_DEFLATED)
        add_to_zip(z, 'raw.bin', bytes(range(256)))
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f'wrote {len(list(OUT.iterdir()))} files to {OUT} ({total} bytes)')


def verify(path):
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with open(path, 'rb') as f:
                f.seek(info.header_offset + 26)
                name_len, extra_len = struct.unpack('<HH', f.read(4))
            data_offset = info.header_offset + 30 + name_len + extra_len
            if data_offset % 64 != 0:
                sys.exit(f'FAIL {path}: record {info.filename} data at offset {data_offset}, not 64-byte aligned')
        if z.testzip() is not None:
            sys.exit(f'FAIL {path}: CRC error in {z.testzip()}')
    loaded = torch.load(path, weights_only=True)
    model = TinyNet()
    model.load_state_dict(loaded, strict=True)
    reference = torch.load(OUT / 'tiny.pt', weights_only=True)
    if loaded['bn.num_batches_tracked'].dtype != torch.int64 or loaded['counts'].dtype != torch.int64:
        sys.exit('FAIL: integer buffers were not written as int64')
    if loaded['f64'].dtype != torch.float64:
        sys.exit('FAIL: float64 buffer was not written as float64')
    got = model.state_dict()
    for name, want in reference.items():
        have = got[name]
        same = torch.equal(have, want) if want.dtype == torch.int64 else torch.equal(have.float(), want.float())
        if not same:
            sys.exit(f'FAIL: {name} differs: {have} vs {want}')
    print(f'OK {path}: {len(reference)} tensors load with weights_only=True and match tiny.pt')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--verify', metavar='FILE', help='verify a .pt written by writeStateDict')
    args = parser.parse_args()
    if args.verify:
        verify(args.verify)
    else:
        make_fixtures()


if __name__ == '__main__':
    main()
