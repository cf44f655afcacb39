#!/usr/bin/env python3
"""umap-learn beside simsite's own UMAP layout, on the same embeddings: time and quality.

    python benches/layout_python.py --embeddings api/embeddings.parquet --labels labels.csv \
        [--ours OURS.npy] [--ours-seconds S] [--sample 5000] [--threads 2] [--json OUT.json]

Measured:
  * umap-learn's fit_transform wall-clock time (n_neighbors=15, min_dist=0.1, metric=cosine,
    no random_state, so its parallel code paths run on --threads threads). numba's JIT is
    triggered first by a fit on 300 rows and reported on its own line, not in that time.
  * trustworthiness@10 of each layout (sklearn, cosine distances on the embedding side) on a
    fixed random subsample of --sample rows (seed 0, the same rows for every layout), as the
    full computation needs O(N^2) memory;
  * leave-one-out 10-NN label accuracy in 2-D (Euclidean) over all labelled rows, and the
    same in the embedding space (cosine) as a reference. Votes are broken as `simsite eval`
    does: more votes, then the smaller summed distance, then the label name sorting first.
E.parquet is simsite's api/embeddings.parquet (`id`, `path`, `embedding` list<float32>, in
item order); OURS.npy is a float32 (N, 2) array in the same row order. The labels CSV has
`path,label[,twin_of]` with paths relative to the archive root (twin_of is not used);
unlabelled rows take part in the layouts but not in the label accuracy. Needs the venv that
benches/setup_python.sh makes.
"""
import argparse
import csv
import json
import os
import sys
import time

K_TRUST = 10
K_KNN = 10
UMAP_PARAMS = dict(n_neighbors=15, min_dist=0.1, metric="cosine", n_components=2)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--embeddings", required=True, help="simsite's api/embeddings.parquet")
    p.add_argument("--labels", required=True, help="CSV with path,label[,twin_of]")
    p.add_argument("--ours", help="simsite's layout: api/layout.f32 (little-endian float32 x, y per item) or a "
                   "float32 .npy of shape (N, 2), rows in item order")
    p.add_argument("--skip-umap", action="store_true", help="score --ours only (no umap-learn run)")
    p.add_argument("--ours-seconds", type=float, help="simsite's layout time, echoed into the table")
    p.add_argument("--sample", type=int, default=5000, help="rows for trustworthiness (default 5000)")
    p.add_argument("--threads", type=int, default=2, help="threads for umap-learn, numba and BLAS (default 2)")
    p.add_argument("--json", help="write the results here as JSON")
    return p.parse_args()


def normalise_path(p):
    """The path form simsite uses: trimmed, forward slashes, no leading ./ ."""
    p = p.strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def read_embeddings(path):
    """(paths, float32 matrix N x d) from simsite's embeddings parquet, rows in file order."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["path", "embedding"])
    emb = table.column("embedding").combine_chunks()
    lengths = pc.list_value_length(emb).to_numpy(zero_copy_only=False)
    if len(lengths) == 0:
        sys.exit(f"{path}: no rows")
    if (lengths != lengths[0]).any():
        sys.exit(f"{path}: embeddings of different lengths ({lengths.min()}..{lengths.max()})")
    x = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    x = x.reshape(len(lengths), int(lengths[0]))
    paths = [normalise_path(p) for p in table.column("path").to_pylist()]
    return paths, x


def read_labels(path, paths):
    """Label names per row (None where the CSV has none) and how many CSV paths matched no row."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in reader.fieldnames or []]
        if "path" not in cols or "label" not in cols:
            sys.exit(f"{path}: the header must name the columns path,label[,twin_of] (it has {cols})")
        reader.fieldnames = cols
        by_path = {}
        for row in reader:
            label = (row["label"] or "").strip()
            if label:
                by_path[normalise_path(row["path"] or "")] = label
    row_labels = [by_path.get(p) for p in paths]
    unmatched = len(set(by_path) - set(paths))
    return row_labels, unmatched


def knn_accuracy(points, labels, k, metric):
    """Leave-one-out k-NN majority vote over the rows of `points` (all labelled): the share whose
    vote is their own label. Ties: smaller summed distance, then the label name sorting first."""
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(points) - 1)
    if k < 1:
        return float("nan")
    algorithm = "brute" if metric == "cosine" else "auto"
    nn = NearestNeighbors(n_neighbors=k, metric=metric, algorithm=algorithm).fit(points)
    dist, idx = nn.kneighbors()  # no X: each row's own index is left out
    names, codes = np.unique(np.asarray(labels), return_inverse=True)  # codes in name order
    votes = codes[idx]
    count = np.zeros((len(points), len(names)), np.int64)
    dsum = np.zeros((len(points), len(names)), np.float64)
    rows = np.repeat(np.arange(len(points)), k)
    np.add.at(count, (rows, votes.ravel()), 1)
    np.add.at(dsum, (rows, votes.ravel()), dist.ravel())
    # Lexicographic best: most votes, then smallest summed distance, then smallest code.
    dsum[count == 0] = np.inf
    best_count = count.max(axis=1, keepdims=True)
    key = np.where(count == best_count, dsum, np.inf)
    predicted = key.argmin(axis=1)  # argmin takes the first (smallest code) among equals
    return float((predicted == codes).mean())


def trustworthiness_on(dist_hi, layout, rows):
    """sklearn's trustworthiness@K_TRUST of `layout[rows]` against precomputed cosine distances."""
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(dist_hi, layout[rows], n_neighbors=K_TRUST, metric="precomputed"))


def main():
    args = parse_args()
    # Before numpy and numba load, so their thread pools take the count.
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import numba
    import sklearn
    import umap

    t = time.perf_counter()
    paths, x = read_embeddings(args.embeddings)
    n, d = x.shape
    row_labels, unmatched = read_labels(args.labels, paths)
    labelled = np.array([lab is not None for lab in row_labels])
    print(f"{n} rows of dimension {d} from {args.embeddings}; {labelled.sum()} labelled "
          f"({len(set(l for l in row_labels if l))} labels)"
          + (f"; {unmatched} labelled path(s) not in the parquet" if unmatched else "")
          + f" [{time.perf_counter() - t:.1f} s to read]")
    ours = None
    if args.ours:
        ours = np.load(args.ours) if args.ours.endswith(".npy") else np.fromfile(args.ours, dtype="<f4").reshape(-1, 2)
        if ours.shape != (n, 2):
            sys.exit(f"{args.ours}: shape {ours.shape}, expected ({n}, 2)")
        if not np.isfinite(ours).all():
            sys.exit(f"{args.ours}: has NaN or infinite coordinates")
        ours = ours.astype(np.float32, copy=False)

    # umap-learn takes its exact-kNN path below 4096 rows and NN-descent above; the warm-up fit
    # takes the same path so that the code the timed fit runs is compiled.
    approx = n >= 4096
    theirs, umap_seconds = None, None
    warm = x[np.random.default_rng(1).choice(n, min(300, n), replace=False)]
    if not args.skip_umap:
        t = time.perf_counter()
        umap.UMAP(**UMAP_PARAMS, n_jobs=args.threads, force_approximation_algorithm=approx).fit(warm)
        jit_seconds = time.perf_counter() - t
        print(f"umap-learn {umap.__version__} (numba {numba.__version__}): JIT warm-up fit on {len(warm)} rows "
              f"{jit_seconds:.1f} s (not in the timing below); no random_state, so its parallel code paths run "
              f"with n_jobs={args.threads}; kNN "
              + ("NN-descent (pynndescent)" if approx else "exact: fewer than 4096 rows, so all pairwise cosine "
                 "distances through sklearn, one Python call per pair (slow; not the path large archives take)"))
        t = time.perf_counter()
        theirs = umap.UMAP(**UMAP_PARAMS, n_jobs=args.threads).fit_transform(x)
        umap_seconds = time.perf_counter() - t
        print(f"umap-learn fit_transform: {umap_seconds:.1f} s")

    # Trustworthiness on a fixed subsample; cosine distances computed once for every layout.
    m = min(args.sample, n)
    rows = np.sort(np.random.default_rng(0).choice(n, m, replace=False))
    xs = x[rows].astype(np.float64)
    xs /= np.maximum(np.linalg.norm(xs, axis=1, keepdims=True), 1e-12)
    dist_hi = np.clip(1.0 - xs @ xs.T, 0.0, 2.0)
    np.fill_diagonal(dist_hi, 0.0)

    lab_rows = np.flatnonzero(labelled)
    lab_names = [row_labels[i] for i in lab_rows]
    results = []
    for name, layout, seconds in (("umap-learn", theirs, umap_seconds), ("simsite", ours, args.ours_seconds)):
        if layout is None:
            continue
        results.append({
            "method": name,
            "seconds": seconds,
            "trustworthiness": trustworthiness_on(dist_hi, layout, rows),
            "knn_accuracy_2d": knn_accuracy(layout[lab_rows], lab_names, K_KNN, "euclidean") if len(lab_rows) else None,
        })
    reference = knn_accuracy(x[lab_rows], lab_names, K_KNN, "cosine") if len(lab_rows) else None

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    print()
    print(f"{'method':<28} {'seconds':>8} {'trust@10':>9} {'2-D kNN acc':>12}")
    for r in results:
        print(f"{r['method']:<28} {fmt(r['seconds'], '8.1f')} {r['trustworthiness']:>9.4f} "
              f"{fmt(r['knn_accuracy_2d'], '12.4f')}")
    print(f"{'embedding space (cosine)':<28} {'-':>8} {'-':>9} {fmt(reference, '12.4f')}")
    print(f"trust@10 on {m} of {n} rows (seed 0); kNN accuracy k={K_KNN}, leave-one-out, "
          f"over {len(lab_rows)} labelled rows; {args.threads} thread(s)")

    if args.json:
        out = {
            "embeddings": args.embeddings,
            "n": n,
            "dim": d,
            "labelled": int(len(lab_rows)),
            "labels": len(set(lab_names)),
            "threads": args.threads,
            "trust_sample": m,
            "trust_k": K_TRUST,
            "knn_k": K_KNN,
            "umap_params": {**UMAP_PARAMS, "n_jobs": args.threads, "random_state": None},
            "umap_jit_seconds": jit_seconds,
            "versions": {"umap-learn": umap.__version__, "numba": numba.__version__,
                         "scikit-learn": sklearn.__version__, "numpy": np.__version__},
            "results": results,
            "embedding_knn_accuracy": reference,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
