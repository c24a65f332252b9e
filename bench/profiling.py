"""Optional py-spy sampling of a server process, summarised into top frames (self, total, innermost pushwire)."""

from __future__ import annotations

import collections
import datetime as dt
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import BIN, RESULTS_DIR, ROOT

# -- py-spy ------------------------------------------------------------------------------------
_FRAME_RE = re.compile(r"^(?P<fn>.*) \((?P<file>.*?)(?::\d+)?\)$")


class Profiler:
    """`py-spy record --format raw` of a process for a window; `finish()` → top frames by self and total time."""

    def __init__(self, pid: int, seconds: float, out: Path, rate: int = 200) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        exe = BIN / "py-spy"
        if not exe.exists():
            found = shutil.which("py-spy")
            if found is None:
                print("  (py-spy not installed: `.venv/bin/pip install py-spy`; profiling skipped)")
                return
            exe = Path(found)
        cmd = [
            str(exe),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        """End the recording now (py-spy writes what it has on SIGINT)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def finish(self, top: int = 15) -> dict[str, Any]:
        if self.proc is None:
            return {}
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {"error": "py-spy did not finish"}
        if not self.out.exists():
            return {"error": err.decode(errors="replace")[-300:]}
        own: collections.Counter[str] = collections.Counter()
        total: collections.Counter[str] = collections.Counter()
        inner: collections.Counter[str] = collections.Counter()
        prefixes: dict[str, list[str]] = {}  # first frame → the chain every stack from it shares
        samples = 0
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = [f for f in (_short(f) for f in stack.split(";")) if f]
            if not frames:
                continue
            samples += n
            known = prefixes.get(frames[0])
            if known is None:
                prefixes[frames[0]] = frames[:-1]
            else:
                k = 0
                while k < len(known) and k < len(frames) - 1 and known[k] == frames[k]:
                    k += 1
                prefixes[frames[0]] = known[:k]
            own[frames[-1]] += n
            for f in set(frames):
                total[f] += n
            # The innermost frame of our own code: which pushwire function the time is spent under.
            mine = next((f for f in reversed(frames) if "(pushwire/" in f), "(outside pushwire code)")
            inner[mine] += n

        # Frames on a thread's root chain (<module>, click, uvicorn.run, Runner.run …; Thread.run …)
        # are ancestors of every sample of that thread: they say nothing, so leave them out of total%.
        for chain in prefixes.values():
            for f in chain:
                total.pop(f, None)

        def pct(c: collections.Counter[str]) -> list[list[Any]]:
            return [[f, round(100.0 * n / samples, 1)] for f, n in c.most_common(top)]

        return {
            "samples": samples,
            "raw_file": _rel(self.out),
            "self_pct": pct(own),
            "total_pct": pct(total),
            "innermost_pushwire_pct": pct(inner),
        }


def profile_path(scenario: str, tag: str, *parts: object) -> Path:
    """bench/results/<date>-<scenario>[-<tag>]-<parts…>.pyspy.txt (the directory is created)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = "-".join([dt.date.today().isoformat(), scenario, *([tag] if tag else []), *map(str, parts)])
    return RESULTS_DIR / f"{name}.pyspy.txt"


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _short(frame: str) -> str:
    if frame.startswith(("process ", "thread ")):
        return ""
    m = _FRAME_RE.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "/pushwire/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1] if marker != "/pushwire/" else "pushwire/" + file.split(marker, 1)[1]
            break
    return f"{m.group('fn')} ({file})"


def print_profile(title: str, prof: dict[str, Any], top: int = 12) -> None:
    if not prof or "self_pct" not in prof:
        if prof:
            print(f"  profile {title}: {prof.get('error')}")
        return
    print(f"\n  py-spy {title} ({prof['samples']} samples; raw stacks in {prof['raw_file']})")
    print("    self%  function (file)                         │ total%  function (file)")
    for (f1, p1), (f2, p2) in zip(prof["self_pct"][:top], prof["total_pct"][:top], strict=False):
        print(f"    {p1:5.1f}  {f1[:60]:<60} │ {p2:5.1f}  {f2[:60]}")
    print("    by innermost pushwire function:")
    for f, p in prof["innermost_pushwire_pct"][:top]:
        print(f"    {p:5.1f}  {f}")
