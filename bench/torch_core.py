#!/usr/bin/env python3
"""PyTorch side of `npm run bench`: the same workloads as bench/workloads.ts, in the
reference implementation's formulation (its Conv2d layers, its Capsules votes
`(x.unsqueeze(3) * W).sum(dim=2)` and its update_routing restated from SPEC 2.1).

usage: torch_core.py WORKLOAD THREADS RUNS   -> prints one JSON line
Thread count and malloc settings come from the caller (MALLOC_* environment variables).
"""
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F


def squash(x, dim):
    norm = torch.norm(x, dim=dim, keepdim=True)
    return x * norm / (1 + norm ** 2)


def update_routing(votes, logits, iterations, bias):
    six = votes.dim() == 6
    votes_trans = votes.permute(3, 0, 1, 2, 4, 5) if six else votes.permute(3, 0, 1, 2)
    votes_trans = votes_trans.contiguous()
    for _ in range(iterations):
        route = F.softmax(logits, dim=2)
        pre = route * votes_trans
        pre = pre.permute(1, 2, 3, 0, 4, 5) if six else pre.permute(1, 2, 3, 0)
        pre = pre.contiguous().sum(dim=1) + bias
        act = squash(pre, dim=2)
        logits = logits + (votes * act.unsqueeze(1)).sum(dim=3)
    return act


def w1w2(B, backward):
    x = torch.rand(B, 1, 28, 28)
    w1 = (torch.randn(256, 1, 9, 9) / 9).requires_grad_(backward)
    b1 = (torch.randn(256) * 0.1).requires_grad_(backward)
    w2 = (torch.randn(256, 256, 9, 9) / 144).requires_grad_(backward)
    pbias = (torch.randn(32, 8, 1, 1) * 0.1).requires_grad_(backward)
    wd = (torch.randn(1152, 8, 160) * 0.05).requires_grad_(backward)
    dbias = (torch.randn(10, 16) * 0.1).requires_grad_(backward)
    G = torch.randn(B, 10, 16)
    params = [w1, b1, w2, pbias, wd, dbias]

    def run():
        for p in params:
            p.grad = None
        with torch.set_grad_enabled(backward):
            h = F.relu(F.conv2d(x, w1, b1))
            u = F.conv2d(h, w2, stride=2).view(B, 1, 32, 8, 6, 6)
            logits = torch.zeros(B, 1, 32, 6, 6)
            prim = update_routing(u, logits, 1, pbias)  # = squash(u/32 + bias)
            caps = prim.permute(0, 1, 3, 4, 2).contiguous().view(B, -1, 8)
            votes = (caps.unsqueeze(3) * wd).sum(dim=2).view(-1, 1152, 10, 16)
            v = update_routing(votes, torch.zeros(B, 1152, 10), 3, dbias)
            if backward:
                (v * G).sum().backward()
    return run


def w3(B):
    x = torch.rand(B, 1, 28, 28)
    specs = [(1, 1), (128, 2), (128, 1), (128, 1), (128, 1)]
    ws = [(torch.randn(128, cin, 3, 3) / 34).requires_grad_(True) for cin, _ in specs]
    bs = [(torch.randn(128) * 0.1).requires_grad_(True) for _ in specs]
    G = torch.randn(B, 128, 14, 14)

    def run():
        for p in ws + bs:
            p.grad = None
        y = x
        for (cin, s), w, b in zip(specs, ws, bs):
            y = F.conv2d(y, w, b, stride=s, padding=1)
        (y * G).sum().backward()
    return run


def main():
    name, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    run = {'W1': lambda: w1w2(batch, False), 'W2': lambda: w1w2(batch, True), 'W3': lambda: w3(batch)}[name]()
    run()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    print(json.dumps({'name': name, 'threads': threads, 'median_ms': median, 'runs_ms': times,
                      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      'torch': torch.__version__}))


if __name__ == '__main__':
    main()
