"""Wrap an exported simsite encoder in the D4 average at the ONNX level (the graph that
training/model.py's Dihedral exports with PyTorch: the 8 turns by 90 degrees and flips of the
input, then the mean), for a machine without PyTorch; checks it against the plain model.

    python training/d4_onnx.py models/simsite-astro.onnx models/simsite-astro-d4.onnx simsite-astro-simclr-v3-d4

Needs onnx, onnxruntime and numpy."""
import sys, numpy as np, onnx
from onnx import helper, numpy_helper
import onnxruntime as ort
src, dst, name = sys.argv[1], sys.argv[2], sys.argv[3]
m = onnx.load(src)
g = m.graph
dim = int({p.key: p.value for p in m.metadata_props}["simsite.dim"])
old_in, old_out = g.input[0].name, g.output[0].name
for n in g.node:
    n.input[:] = ["d4_views" if i == old_in else i for i in n.input]
    n.output[:] = ["d4_y" if o == old_out else o for o in n.output]
inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
         {"d4_neg1": [-1], "d4_min": [np.iinfo(np.int64).min], "d4_ax2": [2], "d4_ax3": [3], "d4_shape": [8, -1, dim]}.items()]
def flip(x, ax, out):
    return helper.make_node("Slice", [x, "d4_neg1", "d4_min", ax, "d4_neg1"], [out])
pre = [
    helper.make_node("Transpose", [old_in], ["t"], perm=[0, 1, 3, 2]),
    flip(old_in, "d4_ax3", "x_f3"), flip(old_in, "d4_ax2", "x_f2"), flip("x_f2", "d4_ax3", "x_f23"),
    flip("t", "d4_ax3", "t_f3"), flip("t", "d4_ax2", "t_f2"), flip("t_f2", "d4_ax3", "t_f23"),
    helper.make_node("Concat", [old_in, "x_f3", "x_f2", "x_f23", "t", "t_f3", "t_f2", "t_f23"], ["d4_views"], axis=0),
]
post = [
    helper.make_node("Reshape", ["d4_y", "d4_shape"], ["d4_r"]),
    helper.make_node("ReduceMean", ["d4_r"], [old_out], axes=[0], keepdims=0),
]
nodes = pre + list(g.node) + post
g.ClearField("node"); g.node.extend(nodes)
g.initializer.extend(inits)  # the graph keeps its input and output names
for p in m.metadata_props:
    if p.key == "simsite.name":
        p.value = name
onnx.checker.check_model(m)
onnx.save(m, dst)
x = np.random.default_rng(0).random((5, 1, 64, 64), np.float32)
plain = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
d4 = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
xt = x.transpose(0, 1, 3, 2)
views = [x, x[..., ::-1], x[:, :, ::-1], x[:, :, ::-1, ::-1], xt, xt[..., ::-1], xt[:, :, ::-1], xt[:, :, ::-1, ::-1]]
want = np.mean([plain.run(None, {old_in: np.ascontiguousarray(v)})[0] for v in views], axis=0)
got = d4.run(None, {old_in: x})[0]
print("max diff", float(np.abs(want - got).max()), got.shape)
assert np.abs(want - got).max() < 1e-4
