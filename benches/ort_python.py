#!/usr/bin/env python3
"""Raw ONNX Runtime throughput from Python on the same model, batch and thread count as
benches/embed.rs, for a side-by-side figure: python3 benches/ort_python.py MODEL [N]"""
import sys, time
import numpy as np
import onnxruntime as ort

model, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3000
so = ort.SessionOptions()
so.intra_op_num_threads = 2
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
inp = s.get_inputs()[0]
c, h = int(inp.shape[1]), int(inp.shape[2])
x = np.random.default_rng(0).random((n, c, h, h), dtype=np.float32)
for rnd in (1, 2):
    t = time.perf_counter()
    for i in range(0, n, 64):
        b = x[i:i + 64]
        if len(b) < 64:
            b = np.concatenate([b, np.zeros((64 - len(b), c, h, h), np.float32)])
        s.run(None, {inp.name: b})
    print(f"round {rnd}: onnxruntime-python {n / (time.perf_counter() - t):.0f} img/s (batch 64, 2 threads, ORT {ort.__version__})")
