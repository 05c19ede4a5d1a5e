"""A run that commits as it goes (--commit_every), killed again and again: what does each
kill cost, and does the same command then finish with every image exactly once?

    python -m bench.chunk_kills [--images 20000] [--commit_every 2000] [--kills 20]
                                [--target launcher|worker] [--overhead_rounds 2] [--work DIR]

One collection of generated 80x64 PNGs (each different), one incremental root. Each kill
starts the same command (``--mode incremental --commit_every N --weights random
--image_size 32 --layers res2``, two local worker processes), waits until the command
commits its first part (start-up, listing and the join with earlier runs come first; a kill
there throws no embedding away), then a random time (seeded) up to twice the share of
``commit_every`` images in the uninterrupted chunked run (so that kills land at every
point of a chunk), and SIGKILLs the launcher (its workers die with it: PR_SET_PDEATHSIG) or
one worker process (the run then fails). Then the same command
runs to its end. A local run commits in parts inside one job (pipeline/job/commit_parts.py):
each of the two writers every commit_every / 2 images. Reported per kill: the seconds since
the last part committed, the parts committed, and the images embedded but not committed
(the work the kill threw away, from the workers' progress counts read just before the kill:
they are rewritten at every commit and every second, so this can lag by up to a second of
embedding); at the
end: images lost (not in the final read), uris read twice, images the committed chunks
embedded in all (equal to the images: none embedded twice), locks and unfinished partitions
left, beam-temp folders left. Before the kills, the overhead of chunking: the same input
into fresh roots, one run against a chunked run, interleaved ``--overhead_rounds`` times,
wall time ratio."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from bench import worker_kill  # noqa: E402
from pipeline.workers import worker_pids  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def make_images(folder: pathlib.Path, count: int) -> None:
    worker_kill.make_images(folder, count, digits=6)


def command(folder: pathlib.Path, root: pathlib.Path, commit_every: int | None) -> list[str]:
    chunks = ["--commit_every", str(commit_every)] if commit_every else []
    return [sys.executable, "-m", "pipeline.run", "--input", str(folder), "--output", str(root),
            "--mode", "incremental", "--weights", "random", "--image_size", "32", "--layers", "res2",
            "--direct_num_workers", "2", "--progress_seconds", "3600", *chunks]


def timed(cmd: list[str]) -> float:
    return timed_to_first_commit(cmd, None)[0]


def timed_to_first_commit(cmd: list[str], root: pathlib.Path | None) -> tuple[float, float | None]:
    """Seconds the command took, and (with ``root``, an empty root) seconds until its first
    index entry appeared (its first chunk committed), polled every 50 ms."""
    started = time.perf_counter()
    first = None
    with tempfile.TemporaryFile("w+") as said, subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=said, text=True, env=ENV) as process:
        while process.poll() is None:
            if first is None and root is not None and committed(root):
                first = time.perf_counter() - started
            time.sleep(0.05)
        said.seek(0)
        stderr = said.read()
    if process.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{stderr[-3000:]}")
    return time.perf_counter() - started, first


def kill_share(overhead: list[dict], chunks: int) -> float:
    """Seconds per ``commit_every`` images after the first commit, in the fastest round."""
    return min((r["chunked"] - (r["first_commit"] or r["chunked"])) for r in overhead) / max(chunks - 1, 1)


def committed(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted((root / "_runs").glob("*.json")) if (root / "_runs").exists() else []


def progress_counts(temporary: pathlib.Path) -> dict:
    """The worker processes' progress counts (pipeline/job/counting.py), added up."""
    total: dict = {}
    for path in temporary.glob("resnet50-progress-*/*.json"):
        try:
            for name, value in json.loads(path.read_text()).items():
                total[name] = total.get(name, 0) + value
        except (OSError, ValueError):
            continue
    return total


def kill_once(cmd: list[str], root: pathlib.Path, after: float, target: str) -> dict:
    """Start ``cmd``, wait until it commits its first part (start-up, the listing and the
    join with earlier runs come before; a kill there throws no embedding away), then
    ``after`` seconds more, and kill ``target``."""
    before = len(committed(root))
    temporary = pathlib.Path(tempfile.mkdtemp(prefix="chunk-kills-"))
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env={**ENV, "TMPDIR": str(temporary)})
    started = time.time()
    while process.poll() is None and len(committed(root)) == before:
        time.sleep(0.01)
    deadline = time.time() + after
    while time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    if process.poll() is not None:
        shutil.rmtree(temporary, ignore_errors=True)
        return {"finished_before_kill": True, "exit": process.returncode}
    if target == "launcher":
        os.kill(process.pid, signal.SIGKILL)
    else:
        workers = sorted(worker_pids(process.pid))
        while not workers and process.poll() is None:  # between jobs: the next job's first worker
            time.sleep(0.05)
            workers = sorted(worker_pids(process.pid))
        if workers:  # the newest: a worker of the job under way, not one of a job that is ending
            os.kill(workers[-1], signal.SIGKILL)
    killed_at = time.time()
    code = process.wait(timeout=300)
    deadline = time.time() + 60  # the launcher's workers die with it (PDEATHSIG)
    while worker_pids(process.pid) and time.time() < deadline:
        time.sleep(0.1)
    counts = progress_counts(temporary)  # as the workers last wrote them (every commit, every second)
    entries = committed(root)
    shutil.rmtree(temporary, ignore_errors=True)
    last_commit = max((p.stat().st_mtime for p in entries[before:]), default=None)
    since = killed_at - (last_commit if last_commit is not None else started)
    return {"after_s": round(after, 1), "exit": code, "chunks_committed": len(entries) - before,
            "images_committed": sum(json.loads(p.read_text())["counts"]["embedded"] for p in entries[before:]),
            "seconds_since_last_commit": round(since, 2) if last_commit is not None else None,
            # Embedded by this command and in no committed part (embedded again by the next),
            # as of the workers' last counts write: up to a second behind the kill.
            "embedded_not_committed": max(0, counts.get("embedded", 0) - counts.get("images_committed", 0))}


_PEAK = """
import resource, sys
from pipeline.run import run
code = run(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def launcher_peak_kb(folder: pathlib.Path, root: pathlib.Path, commit_every: int) -> int:
    """The launcher's own peak RSS (its workers are processes of their own) for one command."""
    shutil.rmtree(root, ignore_errors=True)
    done = subprocess.run([sys.executable, "-c", _PEAK, *command(folder, root, commit_every)[3:]],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PEAK_KB")]
    if done.returncode != 0 or not lines:
        raise SystemExit(done.stderr[-3000:])
    return int(lines[-1].split()[1])


def final_state(folder: pathlib.Path, root: pathlib.Path) -> dict:
    from pipeline.root.incremental import unfinished_partitions
    from pipeline.inspection.results import read_layer

    from pipeline.root.incremental import index_entries

    rows = read_layer(str(root), "res2")
    expected = {str(p) for p in folder.glob("*.png")}
    return {"images": len(expected), "rows": len(rows.uris), "lost": len(expected - set(rows.uris)),
            "uris_twice": len(rows.uris) - len(set(rows.uris)),
            "embedded_by_committed_chunks": sum(e["counts"]["embedded"] for e in index_entries(str(root))),
            "lock_left": (root / "_lock.json").exists(),
            "unfinished_partitions": len(unfinished_partitions(str(root))),
            "beam_temp_left": sum(1 for p in root.rglob("*beam-temp*"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/resnet50-embeddings-bench-chunk-kills")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--commit_every", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--target", choices=("launcher", "worker"), default="launcher")
    parser.add_argument("--overhead_rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=27)
    parser.add_argument("--kill_window", type=float, default=None,
                        help="kill at a random time up to this many seconds after a command's first commit "
                        "(default: twice the share of commit_every images in the chunked overhead run, at least 1)")
    parser.add_argument("--memory_images", type=int, default=2000,
                        help="the launcher's peak RSS on this many images in 1 chunk and in 10 (0: skip)")
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    folder = work / f"images-{args.images}"
    make_images(folder, args.images)
    report: dict = {"settings": vars(args), "overhead": []}
    if args.memory_images:
        small = work / f"images-{args.memory_images}"
        make_images(small, args.memory_images)
        peaks = {chunks: launcher_peak_kb(small, work / "memory-root", args.memory_images // chunks)
                 for chunks in (1, 10)}
        report["launcher_peak_kb"] = peaks
        print(f"launcher peak RSS, {args.memory_images} images: 1 chunk {peaks[1] / 1024:.0f} MB, "
              f"10 chunks {peaks[10] / 1024:.0f} MB", flush=True)
    for number in range(args.overhead_rounds):
        pair = {}
        for label, every in (("one run", None), ("chunked", args.commit_every)):
            root = work / f"overhead-{number}-{label.replace(' ', '-')}"
            shutil.rmtree(root, ignore_errors=True)
            pair[label], first = timed_to_first_commit(command(folder, root, every), root if every else None)
            if every:
                pair["first_commit"] = first
        pair["ratio"] = pair["chunked"] / pair["one run"]
        report["overhead"].append(pair)
        print(f"overhead round {number + 1}: one run {pair['one run']:.1f} s, chunked {pair['chunked']:.1f} s, "
              f"ratio {pair['ratio']:.2f}", flush=True)
    chunks = -(-args.images // args.commit_every)
    # After each command's first commit, a random time up to two parts' share more (at
    # least 1 s): the kills land while parts are being written, at every point of a part.
    share = kill_share(report["overhead"], chunks) if report["overhead"] else 1.0
    window = args.kill_window or max(1.0, 2 * share)
    report["kill_after_first_commit_s"] = [0.0, window]
    root = work / f"root-{args.target}"
    shutil.rmtree(root, ignore_errors=True)
    cmd = command(folder, root, args.commit_every)
    rng = random.Random(args.seed)
    report["kills"] = []
    for number in range(args.kills):
        result = kill_once(cmd, root, rng.uniform(0.0, window), args.target)
        report["kills"].append(result)
        print(f"kill {number + 1}: {json.dumps(result)}", flush=True)
    report["final_seconds"] = timed(cmd)
    report["final"] = final_state(folder, root)
    print("final:", json.dumps(report["final"]))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
