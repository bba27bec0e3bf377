#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures of the numeric core to fixtures/core/*.safetensors.

Run with Debian's python3-torch (1.13):  /usr/bin/python3 tools/make-fixtures.py
Each fixture holds inputs, weights, outputs and gradients of one op, in PyTorch's own
layouts (NCHW, OIHW); the tests convert to qcapsnets' channels-last layouts. Gradients
are of loss = sum(output * G) for a fixed random G, i.e. backward(G).
The routing functions below restate SPEC 2.1 in PyTorch (the reference implementation's
update_routing / update_routing_6D_DeepCaps semantics: no detach, softmax over dim 2 or
jointly over (co, ho, wo)).
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'core')


def save(name, tensors, meta=None, out=None):
    """Minimal safetensors writer (F32 only) into `out` (default fixtures/core)."""
    out = out or OUT
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        b = torch.as_tensor(t).detach().contiguous().to(torch.float32).numpy().tobytes()
        header[k] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta:
        header['__metadata__'] = {k: json.dumps(v) for k, v in meta.items()}
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name + '.safetensors'), 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def grads_of(out, *leaves):
    g = torch.randn_like(out)
    out.backward(g)
    return g, [l.grad.clone() for l in leaves]


def squash(x, dim):
    norm = torch.norm(x, dim=dim, keepdim=True)
    return x * norm / (1 + norm ** 2)


def routing(votes, iterations, bias):
    """SPEC 2.1, softmax over the output capsules (dim 2). votes [bs,ci,co,no(,ho,wo)]."""
    logits = torch.zeros(votes.shape[:3] + votes.shape[4:])
    for _ in range(iterations):
        route = F.softmax(logits, dim=2)
        preact = (route.unsqueeze(3) * votes).sum(dim=1) + bias
        act = squash(preact, dim=2)
        logits = logits + (votes * act.unsqueeze(1)).sum(dim=3)
    return act


def routing_3d(votes, iterations, bias):
    """DeepCaps 3-D routing: softmax jointly over (co, ho, wo). votes [bs,ci,co,no,ho,wo]."""
    bs, ci, co, no, ho, wo = votes.shape
    logits = torch.zeros(bs, ci, co, ho, wo)
    for _ in range(iterations):
        route = F.softmax(logits.view(bs, ci, -1), dim=2).view(bs, ci, co, ho, wo)
        preact = (route.unsqueeze(3) * votes).sum(1) + bias
        act = squash(preact, dim=2)
        logits = logits + (act.unsqueeze(1) * votes).sum(3)
    return act


def conv_fixtures():
    for name, (cin, cout, k, s, p, hw, relu) in {
        'conv2d_k3s1p1': (3, 4, 3, 1, 1, 7, False),
        'conv2d_k3s2p1_relu': (3, 5, 3, 2, 1, 9, True),
        'conv2d_k5s2p0': (2, 3, 5, 2, 0, 11, False),
        'conv2d_k1s1p0': (4, 6, 1, 1, 0, 5, False),
    }.items():
        x, w, b = leaf(2, cin, hw, hw), leaf(cout, cin, k, k, scale=0.3), leaf(cout)
        y = F.conv2d(x, w, b, stride=s, padding=p)
        if relu:
            y = F.relu(y)
        g, (dx, dw, db) = grads_of(y, x, w, b)
        save(name, dict(x=x, w=w, b=b, y=y, g=g, dx=dx, dw=dw, db=db),
             dict(stride=s, pad=p, relu=relu))
    for name, (cin, cout, k, s, p, op, hw) in {
        'conv_transpose2d_k3s2p1op1': (4, 3, 3, 2, 1, 1, 5),
        'conv_transpose2d_k4s2p1': (3, 2, 4, 2, 1, 0, 4),
        'conv_transpose2d_k3s1p1': (2, 5, 3, 1, 1, 0, 6),
    }.items():
        x, w, b = leaf(2, cin, hw, hw), leaf(cin, cout, k, k, scale=0.3), leaf(cout)
        y = F.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op)
        g, (dx, dw, db) = grads_of(y, x, w, b)
        save(name, dict(x=x, w=w, b=b, y=y, g=g, dx=dx, dw=dw, db=db),
             dict(stride=s, pad=p, outputPadding=op))


def misc_fixtures():
    x, w, b = leaf(5, 7), leaf(4, 7), leaf(4)
    y = F.linear(x, w, b)
    g, (dx, dw, db) = grads_of(y, x, w, b)
    save('linear', dict(x=x, w=w, b=b, y=y, g=g, dx=dx, dw=dw, db=db))

    # batch norm: two training steps (running statistics), then eval
    bn = torch.nn.BatchNorm2d(3, momentum=0.99, eps=1e-3)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(3))
        bn.bias.copy_(torch.randn(3))
    x1 = leaf(4, 3, 5, 5, scale=2.0)
    x2 = leaf(4, 3, 5, 5)
    bn.train()
    y1 = bn(x1)
    g1, (dx1, dgamma, dbeta) = grads_of(y1, x1, bn.weight, bn.bias)
    y2 = bn(x2).detach()
    bn.eval()
    x3 = torch.randn(2, 3, 5, 5)
    y3 = bn(x3).detach()
    save('batch_norm2d', dict(x1=x1, y1=y1, g1=g1, dx1=dx1, dgamma=dgamma, dbeta=dbeta, x2=x2, y2=y2, x3=x3, y3=y3,
                              gamma=bn.weight, beta=bn.bias, running_mean=bn.running_mean,
                              running_var=bn.running_var), dict(momentum=0.99, eps=1e-3))

    x = leaf(3, 4, 5)
    y = F.relu(x)
    g, (dx,) = grads_of(y, x)
    x2 = leaf(3, 4, 5)
    y2 = torch.sigmoid(x2)
    g2, (dx2,) = grads_of(y2, x2)
    save('activations', dict(x=x, relu=y, g=g, drelu=dx, x2=x2, sigmoid=y2, g2=g2, dsigmoid=dx2))

    x = leaf(2, 3, 4, 2, 3, scale=2.0)
    y = F.softmax(x, dim=2)
    g, (dx,) = grads_of(y, x)
    x2 = leaf(2, 3, 4, 2, 3, scale=2.0)
    y2 = F.softmax(x2.view(2, 3, -1), dim=2).view(2, 3, 4, 2, 3)
    g2, (dx2,) = grads_of(y2, x2)
    save('softmax', dict(x=x, y=y, g=g, dx=dx, x2=x2, y2=y2, g2=g2, dx2=dx2))

    x = leaf(3, 5, 8, 2)
    with torch.no_grad():
        x[0, 0, :, 0] = 0  # a zero capsule: gradient defined as PyTorch does
    y = squash(x, dim=2)
    g, (dx,) = grads_of(y, x)
    save('squash', dict(x=x, y=y, g=g, dx=dx))

    # capsule votes as the reference Capsules layer computes them
    x, w = leaf(3, 6, 8), leaf(6, 8, 3 * 4, scale=0.5)
    u = (x.unsqueeze(3) * w).sum(dim=2)
    g, (dx, dw) = grads_of(u, x, w)
    save('capsule_votes', dict(x=x, w=w, u=u, g=g, dx=dx, dw=dw))

    # margin + reconstruction losses
    v = leaf(4, 10, 16, scale=0.3)
    labels = torch.tensor([3, 0, 9, 3])
    onehot = F.one_hot(labels, 10).float()
    recon, image = leaf(4, 784), torch.rand(4, 784)
    for hard in (False, True):
        pred = torch.norm(v, dim=2)
        mp, mm, lam = (0.95, 0.05, 0.8) if hard else (0.9, 0.1, 0.5)
        m1 = F.relu(mp - pred) ** 2
        m0 = F.relu(pred - mm) ** 2
        mloss = (onehot * m1 + lam * (1 - onehot) * m0).sum(dim=1)
        rloss = ((image - recon) ** 2).sum(dim=1)
        tloss = (mloss + 0.0005 * rloss).mean()
        v.grad = None
        recon.grad = None
        tloss.backward()
        suffix = '_hard' if hard else ''
        save('losses' + suffix, dict(v=v, labels=labels.float(), recon=recon, image=image,
                                     total=tloss.detach().reshape(1), margin=mloss.mean().detach().reshape(1),
                                     recon_loss=rloss.mean().detach().reshape(1), dv=v.grad, drecon=recon.grad),
             dict(scale=0.0005, hard=hard))

    # Adam: 3 steps with given gradients
    p = torch.randn(20)
    opt = torch.optim.Adam([p.requires_grad_(True)], lr=0.01)
    p0 = p.detach().clone()
    gs = torch.randn(3, 20)
    for t in range(3):
        p.grad = gs[t].clone()
        opt.step()
    save('adam', dict(p0=p0, grads=gs, p3=p.detach()), dict(lr=0.01))


def routing_fixtures():
    # fully connected capsules: votes [bs, ci, co, no], 3 iterations
    u, bias = leaf(3, 6, 4, 5, scale=0.5), leaf(4, 5, scale=0.1)
    v = routing(u, 3, bias)
    g, (du, db) = grads_of(v, u, bias)
    save('routing_fc', dict(u=u, bias=bias, v=v, g=g, du=du, dbias=db), dict(iterations=3))
    # convolutional capsules, per-position softmax (ConvPixelToCapsules), 2 iterations
    u, bias = leaf(2, 3, 4, 5, 2, 3, scale=0.5), leaf(4, 5, 1, 1, scale=0.1)
    v = routing(u, 2, bias)
    g, (du, db) = grads_of(v, u, bias)
    save('routing_conv', dict(u=u, bias=bias, v=v, g=g, du=du, dbias=db), dict(iterations=2))
    # DeepCaps 3-D routing, 3 iterations
    u, bias = leaf(2, 3, 4, 5, 2, 3, scale=0.5), leaf(4, 5, 1, 1, scale=0.1)
    v = routing_3d(u, 3, bias)
    g, (du, db) = grads_of(v, u, bias)
    save('routing_3d', dict(u=u, bias=bias, v=v, g=g, du=du, dbias=db), dict(iterations=3))


def quant_fixtures():
    """The DAC 2020 code's quantizers (its ClassRoundToNearest, truncation, logarithmic)."""
    x = torch.cat([torch.randn(200) * 3, torch.rand(56) * 0.01, torch.tensor([0.0, -0.0, 1.0, -1.0, 0.5, 2.0 ** -7])])
    out = dict(x=x)
    for n in (1, 3, 7):
        out[f'trunc_{n}'] = (x * 2 ** n).floor() * 2 ** float(-n)
        out[f'rtn_compat_{n}'] = (x * 2 ** n + 2 ** float(-n - 1)).floor() * 2 ** float(-n)
        sign = torch.sign(x)
        e = x.abs().add(1e-8).log2().round()
        o = 2 ** e
        o[o < 2 ** float(-n)] = 0
        o[o > 2 ** 10] = 2 ** 10
        out[f'log_compat_{n}'] = o * sign
    save('quant_compat', out)


if __name__ == '__main__':
    torch.manual_seed(int(sys.argv[1]) if len(sys.argv) > 1 else 1234)
    conv_fixtures()
    misc_fixtures()
    routing_fixtures()
    quant_fixtures()
    print('fixtures written to', os.path.normpath(OUT))
