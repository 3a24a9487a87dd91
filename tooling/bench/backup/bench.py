"""Benchmark `hn vault backup create|restore` against `tar | zstd -3 | age` and restic.

Two generated vaults under /tmp (never in the repository): 20,000 small text-like files
(~150 MB) and 200 incompressible files of 1-8 MB (~800 MB); `--quick` uses a tenth.
Each tool runs on the same data in the same run, the tools taking turns run by run;
before every timed command the machine's dirty pages are flushed (untimed), so no tool
pays for another's writeback. Figures are medians of `--runs` runs: wall time, CPU (user
+ system, the process tree), peak RSS (largest process of the tree, from wait4) and
output size. Delta runs (each from the same base) follow a change of 1% of the files; hn's start-up
time (`hn --version`) is recorded beside it. hn is byte-compiled first, as an installed
package is (pip compiles at install; a source checkout under PYTHONDONTWRITEBYTECODE would
otherwise recompile changed modules on every run). Results go to
tooling/bench/results/backup.json.

    python tooling/bench/backup/bench.py [--quick] [--runs N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "tooling" / "bench" / "results" / "backup.json"
WORDS = [w.encode() for w in ("vault backup friend node merkle chunk key signed index presence relay "
                              "trust shard history rotate restore delta payload manifest archive").split()]


def ensure_tools() -> dict[str, bool]:
    need = [t for t in ("tar", "zstd", "age", "restic") if not shutil.which(t)]
    if need and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *need], check=False, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return {t: bool(shutil.which(t)) for t in ("tar", "zstd", "age", "age-keygen", "restic")}


def text_blob(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choice(WORDS) for _ in range(16)) + b" %d\n" % rng.getrandbits(32)
    return bytes(out[:size])


def make_vault(root: Path, kind: str, scale: float) -> Path:
    """A real vault (identity, event log) plus generated files under personal/."""
    from hn.vault import identities
    from hn.vault.home import Home

    home = Home(root / f"vault-{kind}")
    home.ensure()
    identities.create(home, "bench")
    rng = random.Random(7)
    folder = home.path("personal", "bench")
    if kind == "small":
        for i in range(int(20_000 * scale)):
            path = folder / f"{i % 100:02d}" / f"note-{i:05d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text_blob(rng, rng.randint(1_000, 14_000)))
    else:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(int(200 * scale)):
            with open(folder / f"media-{i:03d}.bin", "wb") as out:
                out.write(os.urandom(rng.randint(1 << 20, 8 << 20)))
    return home.root


def change_one_percent(home: Path) -> int:
    files = sorted((home / "personal" / "bench").rglob("*"))
    files = [f for f in files if f.is_file()]
    rng = random.Random(11)
    picked = rng.sample(files, max(1, len(files) // 100))
    for path in picked:
        size = path.stat().st_size
        path.write_bytes(os.urandom(size) if path.suffix == ".bin" else text_blob(rng, size))
    return len(picked)


def measure(cmd: str, env: dict[str, str] | None = None, capture: bool = False) -> dict[str, Any]:
    """Run one command; the page cache stays warm but earlier runs' dirty data is flushed first,
    so no tool pays for another's writeback."""
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(["/bin/sh", "-c", cmd], env=env, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    out = proc.stdout.read() if capture and proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{err[-2000:]}")
    result: dict[str, Any] = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                              "peak_rss_mb": usage.ru_maxrss / 1024}
    if capture:
        result["stdout"] = out
    return result


def median(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in ("wall_s", "cpu_s", "peak_rss_mb")}


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_dataset(work: Path, kind: str, scale: float, runs: int, tools: dict[str, bool]) -> dict[str, Any]:
    home = make_vault(work, kind, scale)
    data_bytes = size_of(home)
    files = sum(1 for p in home.rglob("*") if p.is_file())
    env = {k: v for k, v in os.environ.items() if not k.startswith("HN_")}
    env["HN_HOME"] = str(home)
    hn = f"{sys.executable} -m hn"
    out: dict[str, Any] = {"files": files, "bytes": data_bytes}
    hn_out = work / f"hn-{kind}"
    # Each tool's command lines for one create and one restore, on the same data.
    makers: dict[str, dict[str, Any]] = {}

    def hn_create() -> str:
        shutil.rmtree(hn_out, ignore_errors=True)
        return f"{hn} vault backup create --out {hn_out} --json"

    def hn_restore(target: Path) -> str:
        header = next(hn_out.glob("*.backup.json"))
        return f"{hn} vault backup restore --path {header} --into {target} --force --json"

    makers["hn"] = {"create": hn_create, "restore": hn_restore, "output": lambda: size_of(hn_out), "env": env}
    if tools["tar"] and tools["zstd"] and tools["age"] and tools["age-keygen"]:
        key = work / "age.key"
        if not key.exists():
            subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
        recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                                   text=True).stdout.strip()
        archive = work / f"pipeline-{kind}.tar.zst.age"

        def pipe_restore(target: Path) -> str:
            target.mkdir()
            return f"age -d -i {key} < {archive} | zstd -d -q | tar -x -C {target}"

        makers["tar_zstd_age"] = {
            "create": lambda: f"tar -C {home} -cf - . | zstd -3 -q | age -r {recipient} > {archive}",
            "restore": pipe_restore, "output": lambda: size_of(archive), "env": None}
    if tools["restic"]:
        repo = work / f"restic-{kind}"
        renv = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(repo)}

        def restic_create() -> str:
            shutil.rmtree(repo, ignore_errors=True)
            subprocess.run(["restic", "init", "-q"], env=renv, check=True, capture_output=True)
            return f"restic backup -q {home}"

        makers["restic"] = {"create": restic_create,
                            "restore": lambda target: f"restic restore -q latest --target {target}",
                            "output": lambda: size_of(repo), "env": renv}

    # Runs alternate between tools (hn, pipeline, restic, hn, ...), so a slow spell of the
    # machine or its disk falls on every tool alike.
    creates: dict[str, list[dict[str, Any]]] = {name: [] for name in makers}
    restores: dict[str, list[dict[str, Any]]] = {name: [] for name in makers}
    for _ in range(runs):
        for name, m in makers.items():
            creates[name].append(measure(m["create"](), m["env"]))
    # Every restore goes into a folder of its own, and none is deleted until all have run:
    # on some filesystems creating files right after deleting tens of thousands is many
    # times slower, which would charge one tool for another's clean-up.
    for run in range(runs):
        for name, m in makers.items():
            target = work / "restored" / f"{name}-{kind}-{run}"
            target.parent.mkdir(exist_ok=True)
            restores[name].append(measure(m["restore"](target), m["env"]))
    shutil.rmtree(work / "restored", ignore_errors=True)
    results: dict[str, Any] = {
        name: {"create": median(creates[name]), "restore": median(restores[name]), "output_bytes": m["output"]()}
        for name, m in makers.items()}

    # The fixed cost of any hn command (interpreter, imports, argument parsing).
    startup = median([measure(f"{hn} --version", env) for _ in range(3)])
    results["hn"]["startup"] = startup

    changed = change_one_percent(home)
    out["changed_files"] = changed
    # Every delta run does the same work: same base, and the change-detection cache put
    # back (untimed) as the full backup left it, so each one reads the changed files again.
    full_id = next(hn_out.glob("*.backup.json")).name.split(".")[0]
    cache = home / "sync" / "backup-cache.json"
    cache_bytes = cache.read_bytes()
    deltas = []
    for _ in range(runs):
        cache.write_bytes(cache_bytes)
        deltas.append(measure(f"{hn} vault backup create --scope delta --base {full_id} --out {hn_out} --json",
                              env, capture=True))
    summary = json.loads(deltas[-1].pop("stdout"))
    results["hn"]["delta"] = {**median(deltas), "files_read": summary["files_read"],
                              "stored_bytes": summary["stored_bytes"]}
    if "restic" in makers:
        results["restic"]["incremental"] = median([measure(f"restic backup -q {home}", makers["restic"]["env"])])
    out["results"] = results
    hn_r = results["hn"]
    checks: dict[str, Any] = {
        "peak_rss_under_200mb": max(hn_r["create"]["peak_rss_mb"], hn_r["restore"]["peak_rss_mb"],
                                    hn_r["delta"]["peak_rss_mb"]) < 200,
        "delta_under_tenth_of_full": hn_r["delta"]["wall_s"] < hn_r["create"]["wall_s"] / 10,
        "delta_vs_full": round(hn_r["delta"]["wall_s"] / hn_r["create"]["wall_s"], 3),
        # For context, not a target: the delta's time beyond the fixed start-up cost.
        "delta_past_startup_vs_full": round((hn_r["delta"]["wall_s"] - startup["wall_s"]) / hn_r["create"]["wall_s"], 3),
        "delta_read_only_changed_files": hn_r["delta"]["files_read"] == changed,
    }
    if "tar_zstd_age" in results:
        base = results["tar_zstd_age"]
        checks["create_vs_pipeline"] = round(hn_r["create"]["wall_s"] / base["create"]["wall_s"], 3)
        checks["restore_vs_pipeline"] = round(hn_r["restore"]["wall_s"] / base["restore"]["wall_s"], 3)
        checks["create_at_least_as_fast"] = checks["create_vs_pipeline"] <= 1.0
        checks["restore_at_least_as_fast"] = checks["restore_vs_pipeline"] <= 1.0
    out["checks"] = checks
    shutil.rmtree(home, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, one run")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    runs = args.runs or (1 if args.quick else 3)
    tools = ensure_tools()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "hn")], check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="hn-bench-backup-", dir="/tmp"))
    try:
        report = {
            "benchmark": "backup", "quick": args.quick, "runs": runs, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
            "tools": tools,
            "datasets": {kind: bench_dataset(work, kind, scale, runs, tools) for kind in ("small", "media")},
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
