"""Fit and predict time of simsearch.models against scikit-learn, 10k and 100k samples x 64 dims.

Rows: ``svc-linear`` (SVC(kernel="linear") vs LinearSVC), ``svc-rbf`` (SVC vs sklearn.svm.SVC; the
exact solver at 10k, the Nyström path above ``max_exact_samples``; sklearn's SVC runs in a child
process under ``--sk-timeout`` because at 100k it takes many minutes), ``svc-rbf-nystroem`` (the
approximate path forced at 10k, so its accuracy can be read next to the exact one), and
``gmm-full`` / ``gmm-diag`` (8 components; both libraries start EM from the same weights, means
and precisions, so they run the same iterations and the times compare like for like).

Every approximate result reports its quality: test accuracy for the SVCs (plus agreement with
sklearn's predictions), mean log-likelihood for the mixtures. Output: one JSON line per
(row, size, implementation) with device, versions and git commit, then a table of medians.

    python benchmarks/bench_models.py               # 10k and 100k, 3 repeats
    python benchmarks/bench_models.py --smoke       # tiny, for CI
    python benchmarks/bench_models.py --device cupy # ours on the GPU (timed after synchronising)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

D = 64
N_TEST = 10_000
SEED = 0
BLAS_THREADS = None


# -- data -----------------------------------------------------------------------------------


def classification_data(n: int, seed: int = SEED):
    """Binary problem, 32 informative of 64 standardised features, 2 clusters per class, 2% label noise."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n + N_TEST, n_features=D, n_informative=32, n_redundant=8, n_classes=2,
        n_clusters_per_class=2, class_sep=1.0, flip_y=0.02, random_state=seed,
    )
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X[:n], y[:n], X[n:], y[n:]


def mixture_data(n: int, k: int = 8, seed: int = SEED):
    """k overlapping Gaussians with random full covariances in 64 dims."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=0.2, size=(k, D))
    parts = []
    for j, count in enumerate(np.bincount(rng.integers(k, size=n + N_TEST), minlength=k)):
        A = rng.normal(size=(D, D)) / np.sqrt(D) * rng.uniform(0.5, 1.5)
        parts.append(centers[j] + rng.normal(size=(count, D)) @ A)
    X = np.concatenate(parts)[rng.permutation(n + N_TEST)]
    return X[:n], X[n:]


# -- timing ---------------------------------------------------------------------------------


class Device:
    """Moves inputs to the device under test and synchronises it before a clock is read."""

    def __init__(self, name: str):
        self.xp = np
        self.label = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        if name in ("cupy", "auto"):
            try:
                import cupy

                cupy.cuda.runtime.getDeviceCount()
                self.xp = cupy
                props = cupy.cuda.runtime.getDeviceProperties(0)
                self.label = f"cuda:0 ({props['name'].decode()})"
            except Exception as exc:
                if name == "cupy":
                    raise SystemExit(f"--device cupy needs CuPy and a GPU: {exc}")

    def put(self, a):
        return a if self.xp is np else self.xp.asarray(a)

    def sync(self) -> None:
        if self.xp is not np:
            self.xp.cuda.Device().synchronize()


def timed(fn, device: Device | None = None, cpu: list | None = None):
    """Wall seconds of ``fn()`` (after a device sync); its process CPU seconds go to ``cpu``.

    CPU time is reported next to wall time because a shared machine's load inflates wall time
    unevenly; with one BLAS thread both libraries run on one core, so CPU time ≈ quiet wall time.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    out = fn()
    if device is not None:
        device.sync()
    if cpu is not None:
        cpu.append(time.process_time() - cpu_start)
    return time.perf_counter() - start, out


def to_host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


# -- one row per estimator pair ---------------------------------------------------------------


def bench_svc(kind: str, n: int, repeats: int, device: Device, sk_timeout: float) -> list[dict]:
    from sklearn.svm import LinearSVC

    from simsearch.models import SVC

    Xtr, ytr, Xte, yte = classification_data(n)
    if kind == "svc-linear":
        ours_make, sk_make = (lambda: SVC(kernel="linear")), (lambda: LinearSVC())
    elif kind == "svc-rbf":
        ours_make, sk_make = (lambda: SVC(random_state=SEED)), None
    else:  # svc-rbf-nystroem: the approximate path at a size where the exact one is the reference
        ours_make, sk_make = (lambda: SVC(solver="nystroem", random_state=SEED)), None
    dX, dy, dXte = device.put(Xtr), device.put(ytr), device.put(Xte)
    ours = {"impl": "simsearch", "fit_s": [], "predict_s": [], "fit_cpu_s": [], "predict_cpu_s": []}
    theirs = {"impl": "sklearn", "fit_s": [], "predict_s": [], "fit_cpu_s": [], "predict_cpu_s": []}
    for _ in range(repeats):  # interleaved, so a change of machine load hits both alike
        model = ours_make()
        ours["fit_s"].append(timed(lambda: model.fit(dX, dy), device, ours["fit_cpu_s"])[0])
        t_pred, pred = timed(lambda: model.predict(dXte), device, ours["predict_cpu_s"])
        ours["predict_s"].append(t_pred)
        if kind == "svc-linear":
            sk = sk_make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs["fit_s"].append(timed(lambda: sk.fit(Xtr, ytr), None, theirs["fit_cpu_s"])[0])
            t_pred, sk_pred = timed(lambda: sk.predict(Xte), None, theirs["predict_cpu_s"])
            theirs["predict_s"].append(t_pred)
    pred = to_host(pred)
    ours.update(accuracy=float((pred == yte).mean()), solver=model.solver_, device=device.label)
    if kind == "svc-linear":
        theirs["accuracy"] = float((sk_pred == yte).mean())
    else:
        theirs = sklearn_svc_in_child(n, 1 if n > 20_000 else repeats, sk_timeout)
    if "predictions" in theirs:
        ours["agreement"] = float((np.asarray(theirs.pop("predictions")) == pred).mean())
    elif kind == "svc-linear":
        ours["agreement"] = float((sk_pred == pred).mean())
    theirs["device"] = "cpu"
    return [ours, theirs]


def sklearn_svc_in_child(n: int, repeats: int, timeout: float) -> dict:
    """sklearn.svm.SVC in a child process, so a run past ``timeout`` seconds can be stopped."""
    cmd = [sys.executable, __file__, "--_sk-svc-child", str(n), "--repeats", str(repeats), "--n-test", str(N_TEST)]
    if BLAS_THREADS is not None:
        cmd += ["--blas-threads", str(BLAS_THREADS)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"impl": "sklearn", "fit_s": None, "predict_s": None, "timed_out_after_s": timeout}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _sk_svc_child(n: int, repeats: int) -> None:
    from sklearn.svm import SVC

    Xtr, ytr, Xte, yte = classification_data(n)
    SVC().fit(Xtr[:500], ytr[:500])
    out = {"impl": "sklearn", "fit_s": [], "predict_s": [], "fit_cpu_s": [], "predict_cpu_s": []}
    for _ in range(repeats):
        sk = SVC()
        out["fit_s"].append(timed(lambda: sk.fit(Xtr, ytr), None, out["fit_cpu_s"])[0])
        t_pred, pred = timed(lambda: sk.predict(Xte), None, out["predict_cpu_s"])
        out["predict_s"].append(t_pred)
    print(json.dumps({**out, "accuracy": float((pred == yte).mean()), "predictions": pred.tolist()}))


def bench_gmm(cov_type: str, n: int, repeats: int, device: Device) -> list[dict]:
    from sklearn.mixture import GaussianMixture as SkGMM

    from simsearch.models import GaussianMixture

    k = 8
    Xtr, Xte = mixture_data(n, k)
    start = GaussianMixture(k, covariance_type=cov_type, max_iter=0, random_state=SEED).fit(Xtr)
    init = {"weights_init": start.weights_, "means_init": start.means_, "precisions_init": start.precisions_}
    common = {"covariance_type": cov_type, "max_iter": 100, "tol": 1e-3, "random_state": SEED}
    runs = [
        ("simsearch", lambda: GaussianMixture(k, **common, **{a: device.put(b) for a, b in init.items()}),
         device.put(Xtr), device.put(Xte), device),
        ("sklearn", lambda: SkGMM(k, **common, **init), Xtr, Xte, None),
    ]
    rows = {impl: {"impl": impl, "fit_s": [], "predict_s": [], "fit_cpu_s": [], "predict_cpu_s": []} for impl, *_ in runs}
    for _ in range(repeats):  # interleaved, so a change of machine load hits both alike
        for impl, make, X, Xt, dev in runs:
            row, model = rows[impl], make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row["fit_s"].append(timed(lambda: model.fit(X), dev, row["fit_cpu_s"])[0])
            row["predict_s"].append(timed(lambda: model.predict(Xt), dev, row["predict_cpu_s"])[0])
            row.update(n_iter=int(model.n_iter_), mean_loglik_test=float(model.score(Xt)),
                       device=device.label if dev else "cpu")
    return list(rows.values())


# -- reporting ------------------------------------------------------------------------------


def environment() -> dict:
    import numpy
    import sklearn

    import simsearch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)), check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    versions = {"python": platform.python_version(), "numpy": numpy.__version__, "sklearn": sklearn.__version__,
                "simsearch": simsearch.__version__}
    try:
        import cupy

        versions["cupy"] = cupy.__version__
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{i['internal_api']}:{i['num_threads']}" for i in threadpool_info() if i["user_api"] == "blas"]
    except ImportError:
        blas = []
    return {"commit": commit, "versions": versions, "blas_threads": blas, "host_cores": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def median(values):
    return statistics.median(values) if values else None


def fmt(seconds):
    return "-" if seconds is None else (f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s")


def ratio(theirs, ours):
    return "-" if theirs is None or ours is None else f"{theirs / ours:.2f}x"


def print_table(results: list[dict]) -> None:
    print()
    head = f"{'row':<18}{'n':>8}  {'solver':<9}{'fit ours':>11}{'fit sklearn':>13}{'speed-up':>10}{'(cpu)':>8}" \
           f"{'pred ours':>11}{'pred sklearn':>14}{'speed-up':>10}  quality (ours / sklearn)"
    print(head)
    print("-" * len(head))
    for r in results:
        o, t = r["simsearch"], r["sklearn"]
        fo, ft, po, pt = median(o["fit_s"]), median(t["fit_s"] or []), median(o["predict_s"]), median(t["predict_s"] or [])
        if "accuracy" in o:
            quality = f"acc {o['accuracy']:.4f} / " + (f"{t['accuracy']:.4f}" if "accuracy" in t else "-")
            if "agreement" in o:
                quality += f", agree {o['agreement']:.4f}"
        else:
            quality = f"test loglik {o['mean_loglik_test']:.3f} / {t['mean_loglik_test']:.3f}, iters {o['n_iter']}/{t['n_iter']}"
        if t.get("timed_out_after_s"):
            ft_s = f">{t['timed_out_after_s']:.0f} s"
        else:
            ft_s = fmt(ft)
        cpu = ratio(median(t.get("fit_cpu_s") or []), median(o.get("fit_cpu_s") or []))
        if o.get("device", "cpu") != "cpu" and not o["device"].startswith("cpu"):
            cpu = "-"  # process CPU time says nothing about GPU work
        print(f"{r['row']:<18}{r['n']:>8}  {o.get('solver', 'em'):<9}{fmt(fo):>11}{ft_s:>13}"
              f"{ratio(ft, fo) if not t.get('timed_out_after_s') else '>' + ratio(t['timed_out_after_s'], fo):>10}"
              f"{cpu:>8}{fmt(po):>11}{fmt(pt):>14}{ratio(pt, po):>10}  {quality}")
    print("\nspeed-up = sklearn time / simsearch time (higher is faster), medians of the repeats; "
          "(cpu) is the same ratio of process CPU time, which machine load distorts less.")


def main(argv=None) -> None:
    global N_TEST, BLAS_THREADS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="comma-separated training sizes")
    p.add_argument("--rows", default="svc-linear,svc-rbf,svc-rbf-nystroem,gmm-full,gmm-diag")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    p.add_argument("--device", default="numpy", choices=["numpy", "cupy", "auto"])
    p.add_argument("--sk-timeout", type=float, default=300.0, help="seconds allowed to sklearn's SVC per size")
    p.add_argument("--smoke", action="store_true", help="one tiny run of every row, for CI")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="cap BLAS threads for both libraries (needs threadpoolctl); default: leave as configured")
    p.add_argument("--n-test", type=int, default=N_TEST, help="held-out samples that predict is timed on")
    p.add_argument("--_sk-svc-child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    N_TEST = 500 if args.smoke else args.n_test
    BLAS_THREADS = args.blas_threads
    if args.blas_threads is not None:
        import scipy.linalg  # noqa: F401  (load every BLAS before limiting them)
        import sklearn.mixture  # noqa: F401
        import sklearn.svm  # noqa: F401
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads, user_api="blas")
    if args._sk_svc_child is not None:
        _sk_svc_child(args._sk_svc_child, args.repeats)
        return
    sizes = [2000] if args.smoke else [int(s) for s in args.sizes.split(",")]
    repeats = 1 if args.smoke else args.repeats
    device = Device(args.device)
    env = environment()
    env["argv"] = sys.argv[1:]

    # warm-up: imports, numba compilation of the SMO kernel, first BLAS calls
    bench_svc("svc-rbf", 300, 1, device, 60)
    bench_gmm("diag", 300, 1, device)

    results = []
    for n in sizes:
        for row in args.rows.split(","):
            if row == "svc-rbf-nystroem" and n > 20_000:
                continue  # above max_exact_samples svc-rbf already is the Nyström path
            if row.startswith("svc"):
                pair = bench_svc(row, n, repeats, device, args.sk_timeout)
            else:
                pair = bench_gmm(row.split("-", 1)[1], n, repeats, device)
            for rec in pair:
                line = {"bench": "models", "row": row, "n": n, "d": D, "n_test": N_TEST, **rec, **env,
                        "fit_median_s": median(rec["fit_s"] or []), "predict_median_s": median(rec["predict_s"] or []),
                        "load_avg_1m": round(os.getloadavg()[0], 2)}
                print(json.dumps(line), flush=True)
            results.append({"row": row, "n": n, **{rec["impl"]: rec for rec in pair}})
    print_table(results)
    print(f"device: {device.label}; commit {env['commit']}; {env['versions']}; blas {env['blas_threads']}")


if __name__ == "__main__":
    main()
