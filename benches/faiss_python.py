#!/usr/bin/env python3
"""faiss-cpu from Python beside simsite's neighbour search (FAISS through Rust), same embeddings.

    python benches/faiss_python.py --embeddings api/embeddings.parquet [--k 50] [--threads 2] \
        [--recall-target 0.95] [--exact] [--json OUT.json]

Measured, wall clock, on --threads OpenMP threads:
  * exact: IndexFlatIP, add every row, search every row for k+1 and drop the row itself
    (add + search seconds). Skipped above 200,000 rows unless --exact, as it costs N^2 d.
  * IVF, as src/neighbours.rs does it: nlist = clamp(min(4 sqrt(N), N/39), 1, 65536);
    "IVF{nlist},Flat" with inner product, trained on min(64 nlist, N) evenly spaced rows; all
    rows added; exact ground truth for up to 1,000 evenly spaced query rows; nprobe doubled
    from 1 (capped at nlist) until recall@k on those queries (share of the true neighbours
    found, self excluded) reaches --recall-target, then bisected between the last two values
    for the smallest that does; then every row searched with that nprobe.
    Seconds for train, add, ground truth, tuning and the final search, and their total.
E.parquet is simsite's api/embeddings.parquet (`embedding` list<float32>, L2-normalised, so
inner product is cosine). Needs the venv that benches/setup_python.sh makes.
"""
import argparse
import json
import math
import os
import sys
import time

EXACT_MAX_ROWS = 200_000
# Queries per faiss search call: bounds the result buffers at any N, as simsite does.
BLOCK = 16_384


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--embeddings", required=True, help="simsite's api/embeddings.parquet")
    p.add_argument("--k", type=int, default=50, help="neighbours per row, self excluded (default 50)")
    p.add_argument("--threads", type=int, default=2, help="OpenMP threads for faiss (default 2)")
    p.add_argument("--recall-target", type=float, default=0.95, help="recall@k the IVF nprobe must reach")
    p.add_argument("--exact", action="store_true", help=f"run the exact all-rows search above {EXACT_MAX_ROWS:,} rows too")
    p.add_argument("--json", help="write the results here as JSON")
    return p.parse_args()


def search_rows(index, queries, own, k):
    """k neighbours (ids, -1 padded) of each query, searched for k+1 in blocks; the query's own
    row `own[q]` is dropped from its list (or the last hit, when it is not among them)."""
    import numpy as np

    out = np.empty((len(queries), k), np.int64)
    for b in range(0, len(queries), BLOCK):
        q = queries[b:b + BLOCK]
        _, ids = index.search(q, k + 1)
        is_self = ids == own[b:b + BLOCK, None]
        order = np.argsort(is_self, axis=1, kind="stable")  # self to the end, others in order
        out[b:b + BLOCK] = np.take_along_axis(ids, order, axis=1)[:, :k]
    return out


def recall_at_k(truth, got):
    """Share of the true neighbours (-1 padding ignored) that `got` also has, row by row."""
    import numpy as np

    hit = total = 0
    for b in range(0, len(truth), 4096):
        t, g = truth[b:b + 4096], got[b:b + 4096]
        valid = t >= 0
        hit += int(((t[:, :, None] == g[:, None, :]).any(axis=2) & valid).sum())
        total += int(valid.sum())
    return hit / total if total else 1.0


def main():
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before faiss and numpy load
    import numpy as np
    import faiss

    faiss.omp_set_num_threads(args.threads)
    t = time.perf_counter()
    from layout_python import read_embeddings  # one parquet reader for both scripts (same folder)
    _, x = read_embeddings(args.embeddings)
    n, d = x.shape
    k = min(args.k, n - 1)
    if k < 1:
        sys.exit(f"{args.embeddings}: {n} row(s); need at least 2")
    print(f"{n} rows of dimension {d} from {args.embeddings}, k={k}, {args.threads} thread(s), "
          f"faiss {faiss.__version__} [{time.perf_counter() - t:.1f} s to read]")
    rows = np.arange(n, dtype=np.int64)
    out = {"embeddings": args.embeddings, "n": n, "dim": d, "k": k, "threads": args.threads,
           "faiss": faiss.__version__, "recall_target": args.recall_target}

    # Exact search of every row.
    exact_ids = None
    if n <= EXACT_MAX_ROWS or args.exact:
        t = time.perf_counter()
        flat = faiss.IndexFlatIP(d)
        flat.add(x)
        t_add = time.perf_counter() - t
        exact_ids = search_rows(flat, x, rows, k)
        exact_s = time.perf_counter() - t
        del flat
        out["exact"] = {"seconds": exact_s, "add_seconds": t_add, "search_seconds": exact_s - t_add}
        print(f"exact: IndexFlatIP add {t_add:.2f} s + search {exact_s - t_add:.2f} s")
    else:
        out["exact"] = None
        print(f"exact: skipped ({n:,} rows > {EXACT_MAX_ROWS:,}; O(N^2) search; --exact runs it)")

    # IVF as simsite builds and tunes it.
    sample = (np.arange(min(n, 1000)) * n // min(n, 1000)).astype(np.int64)
    queries = np.ascontiguousarray(x[sample])
    t = time.perf_counter()
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    truth = search_rows(flat, queries, sample, k)
    del flat
    t_truth = time.perf_counter() - t

    nlist = min(max(min(int(4.0 * math.sqrt(n)), n // 39), 1), 65_536)
    desc = f"IVF{nlist},Flat"
    index = faiss.index_factory(d, desc, faiss.METRIC_INNER_PRODUCT)
    train_n = min(nlist * 64, n)
    train = np.ascontiguousarray(x[np.arange(train_n, dtype=np.int64) * n // train_n])
    t = time.perf_counter()
    index.train(train)
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    index.add(x)
    t_add = time.perf_counter() - t

    params = faiss.ParameterSpace()
    tuning = []
    t = time.perf_counter()

    def measure(nprobe):
        params.set_index_parameter(index, "nprobe", nprobe)
        recall = recall_at_k(truth, search_rows(index, queries, sample, k))
        tuning.append({"nprobe": nprobe, "recall": recall})
        return recall

    lo, hi = 0, 1
    recall = measure(hi)
    while recall < args.recall_target and hi < nlist:
        lo, hi = hi, min(hi * 2, nlist)
        recall = measure(hi)
    while recall >= args.recall_target and hi - lo > 1:
        mid = (lo + hi) // 2
        r = measure(mid)
        if r >= args.recall_target:
            hi, recall = mid, r
        else:
            lo = mid
    nprobe = hi
    params.set_index_parameter(index, "nprobe", nprobe)
    t_tune = time.perf_counter() - t
    t = time.perf_counter()
    ivf_ids = search_rows(index, x, rows, k)
    t_search = time.perf_counter() - t
    ivf_s = t_truth + t_train + t_add + t_tune + t_search
    full_recall = recall_at_k(exact_ids, ivf_ids) if exact_ids is not None else None
    out["ivf"] = {"index": desc, "nlist": nlist, "train_rows": train_n, "nprobe": nprobe,
                  "recall_sample": len(sample), "recall": recall, "recall_all_rows": full_recall,
                  "tuning": tuning, "seconds": ivf_s, "truth_seconds": t_truth, "train_seconds": t_train,
                  "add_seconds": t_add, "tune_seconds": t_tune, "search_seconds": t_search}
    print("IVF nprobe tuning: " + ", ".join(f"{s['nprobe']} -> {s['recall']:.4f}" for s in tuning))
    print(f"IVF: ground truth {t_truth:.2f} s, train {t_train:.2f} s ({train_n} rows), add {t_add:.2f} s, "
          f"tune {t_tune:.2f} s, search {t_search:.2f} s")

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    print()
    print(f"{'method':<18} {'nprobe':>6} {'seconds':>8} {'recall@' + str(k):>10} {'(all rows)':>10}")
    if out["exact"]:
        print(f"{'exact (FlatIP)':<18} {'-':>6} {out['exact']['seconds']:8.2f} {1.0:10.4f} {1.0:10.4f}")
    else:
        print(f"{'exact (FlatIP)':<18} {'-':>6} {'skipped':>8} {'-':>10} {'-':>10}")
    print(f"{desc:<18} {nprobe:>6} {ivf_s:8.2f} {recall:10.4f} {fmt(full_recall, '10.4f')}")
    print(f"recall@{k} on {len(sample)} evenly spaced query rows, self excluded; '(all rows)' is against "
          f"the exact search of every row; IVF seconds include ground truth, train, add, tune and search")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
