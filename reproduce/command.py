"""Any training command: its git state, its environment, running it, rebuilding its tree.

The command recipe records what is needed to run a script again exactly as it ran: the
argv, the working directory relative to the repository root, the commit, and the full
uncommitted change (the tracked diff against HEAD, binary-safe, plus the untracked files
git does not ignore). `worktree` rebuilds that tree in a fresh git worktree. `run_command`
runs the command with its output streamed to the terminal and to a log file, Ctrl-C and
SIGTERM forwarded to it. Standard library only; never imports `ledger`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Optional, Sequence

# The largest uncommitted change (diff plus untracked files) a row stores. Beyond it the
# change is refused: commit it, or ignore what should not travel with the run (data,
# checkpoints) in .gitignore.
MAX_CHANGE_BYTES = 2 << 20


class CommandError(Exception):
    """The command cannot be recorded or rebuilt; the message is one line and says why."""


@dataclass(frozen=True)
class GitState:
    root: str  # the repository's top folder, absolute, where the command was recorded
    commit: str
    branch: Optional[str]
    remote: Optional[str]
    dirty: bool
    diff: str = ""  # `git diff --binary HEAD`: staged and unstaged changes to tracked files
    untracked: dict[str, str] = field(default_factory=dict)  # path -> base64 content

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "GitState":
        return cls(**{k: data.get(k) for k in ("root", "commit", "branch", "remote")},
                   dirty=bool(data.get("dirty")), diff=data.get("diff") or "", untracked=dict(data.get("untracked") or {}))


def _git(root: Path, *args: str, text: bool = True, check: bool = True, input: Optional[bytes] = None) -> Any:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=text and input is None,
                             input=input, timeout=120)
    except FileNotFoundError:
        raise CommandError("git is not installed; the command recipe needs it") from None
    if check and out.returncode != 0:
        err = out.stderr if isinstance(out.stderr, str) else out.stderr.decode(errors="replace")
        raise CommandError(f"git {' '.join(args[:2])} failed in {root}: {err.strip().splitlines()[-1] if err.strip() else out.returncode}")
    return out


def repository_root(cwd: Path) -> Optional[Path]:
    """The top folder of the git repository holding `cwd`, or None outside one."""
    out = _git(cwd, "rev-parse", "--show-toplevel", check=False)
    return Path(out.stdout.strip()) if out.returncode == 0 else None


def git_state(cwd: Path, max_change_bytes: int = MAX_CHANGE_BYTES) -> Optional[GitState]:
    """The commit and the full uncommitted change of the repository holding `cwd`; None outside one.

    Raises:
        CommandError: the repository has no commit yet, or the change is over `max_change_bytes`.
    """
    root = repository_root(cwd)
    if root is None:
        return None
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD", check=False)
    if head.returncode != 0:
        raise CommandError(f"the repository {root} has no commit yet; commit the script first")
    branch = _git(root, "symbolic-ref", "-q", "--short", "HEAD", check=False).stdout.strip() or None
    remote = _git(root, "config", "--get", "remote.origin.url", check=False).stdout.strip() or None
    diff = _git(root, "diff", "--binary", "HEAD").stdout
    listed = _git(root, "ls-files", "--others", "--exclude-standard", "-z").stdout
    untracked: dict[str, str] = {}
    size = len(diff.encode())
    for rel in filter(None, listed.split("\0")):
        path = root / rel
        if path.is_symlink() or not path.is_file():
            continue
        size += path.stat().st_size
        if size > max_change_bytes:
            break
        untracked[rel] = base64.b64encode(path.read_bytes()).decode("ascii")
    if size > max_change_bytes:
        raise CommandError(f"the uncommitted change in {root} is over {max_change_bytes >> 20} MiB (diff plus untracked "
                           "files); commit it, or add what should not travel with the run to .gitignore")
    return GitState(root=str(root), commit=head.stdout.strip(), branch=branch, remote=remote,
                    dirty=bool(diff or untracked), diff=diff, untracked=untracked)


@contextmanager
def _repo_lock(repo: Path) -> Iterator[None]:
    """One worktree change at a time per repository: git's own locks make concurrent
    `worktree add`/`remove` (several workers on one machine) fail rather than wait."""
    common = _git(repo, "rev-parse", "--git-common-dir", check=False).stdout.strip()
    folder = (repo / common) if common and not Path(common).is_absolute() else Path(common or repo)
    try:
        handle = open(folder / "ledger-worktree.lock", "a+")
    except OSError:
        yield  # a read-only repository: nothing to serialise against
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def has_commit(repo: Path, commit: str) -> bool:
    """Whether the repository at `repo` is there and holds `commit`."""
    if not Path(repo).is_dir() or repository_root(Path(repo)) is None:
        return False
    return _git(Path(repo), "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


def worktree(state: GitState, into: Path, repo: Optional[Path] = None) -> Path:
    """A fresh worktree of `repo` (default: where the state was recorded) at the recorded
    commit with the recorded change applied; returns its folder, `into`.

    Raises:
        CommandError: the repository or the commit is not there, or the change does not apply.
    """
    source = Path(repo or state.root)
    if not source.is_dir() or repository_root(source) is None:
        raise CommandError(f"the repository {source} is not there; pass --repo PATH to a clone of it")
    if _git(source, "cat-file", "-e", f"{state.commit}^{{commit}}", check=False).returncode != 0:
        raise CommandError(f"commit {state.commit[:12]} is not in {source}; fetch it, or pass --repo PATH to a clone "
                           "that has it")
    with _repo_lock(source):
        _git(source, "worktree", "add", "--detach", "-q", str(into), state.commit)
    try:
        if state.diff:
            applied = _git(into, "apply", "--binary", "--whitespace=nowarn", "-", input=state.diff.encode(),
                           check=False)
            if applied.returncode != 0:
                reason = applied.stderr.decode(errors="replace").strip().splitlines()
                raise CommandError(f"the recorded change does not apply to {state.commit[:12]}: "
                                   f"{reason[0] if reason else 'git apply failed'}")
        for rel, content in state.untracked.items():
            target = into / rel
            if not target.resolve().is_relative_to(into.resolve()):
                raise CommandError(f"a recorded untracked file points outside the tree: {rel}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(content))
    except BaseException:
        remove_worktree(into, source)
        raise
    return into


def move_worktree(path: Path, to: Path, repo: Path) -> Path:
    """Move a worktree made by `worktree` to `to` (git keeps track of it); returns `to`."""
    with _repo_lock(Path(repo)):
        _git(Path(repo), "worktree", "move", str(path), str(to))
    return to


def remove_worktree(path: Path, repo: Path) -> None:
    """Remove a worktree made by `worktree`, and git's record of it."""
    if not Path(repo).is_dir():
        shutil.rmtree(path, ignore_errors=True)
        return
    with _repo_lock(Path(repo)):
        _git(Path(repo), "worktree", "remove", "--force", str(path), check=False)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        _git(Path(repo), "worktree", "prune", check=False)


def environment(env_keys: Sequence[str] = ()) -> dict[str, Any]:
    """Python, platform, every installed distribution and its version, the GPU where there
    is one (from nvidia-smi; nothing is imported), and the named environment variables."""
    distributions = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            distributions[name.lower()] = dist.version
    gpu: list[str] = []
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            gpu = [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
        except (OSError, subprocess.TimeoutExpired):
            gpu = []
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "gpu": gpu,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "distributions": dict(sorted(distributions.items())),
        "env": {key: os.environ.get(key) for key in env_keys},
    }


def environment_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One line per difference that can change a result: Python, platform, GPU, a package."""
    lines = []
    for key in ("python", "platform", "machine", "gpu"):
        if recorded.get(key) != current.get(key):
            lines.append(f"{key}: {recorded.get(key)} -> {current.get(key)}")
    before, after = recorded.get("distributions") or {}, current.get("distributions") or {}
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            lines.append(f"{name}: {before.get(name) or 'not installed'} -> {after.get(name) or 'not installed'}")
    return lines


@dataclass
class Outcome:
    exit_code: int
    interrupted: bool  # a Ctrl-C or SIGTERM reached the command


def _pump(stream: IO[bytes], out: IO[bytes], log: IO[bytes], lock: threading.Lock) -> None:
    for chunk in iter(lambda: stream.readline(), b""):
        with lock:
            log.write(chunk)
            log.flush()
        try:
            out.write(chunk)
            out.flush()
        except (OSError, ValueError):  # the terminal went away; the log file still has it
            pass


# On Linux the command is started through this stub: it asks the kernel to send it SIGTERM
# when the ledger process dies (PR_SET_PDEATHSIG survives exec), so a worker killed with
# SIGKILL leaves no orphan training on beside the worker that takes its job over.
_STUB = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None).prctl(1, 15)\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(143)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _dies_with_us(argv: Sequence[str]) -> list[str]:
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-S", "-c", _STUB, str(os.getpid()), *argv]


def run_command(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path,
                echo: bool = True) -> Outcome:
    """Run `argv` in `cwd` with `env` added to this environment; stdout and stderr go to the
    terminal (when `echo`) and to `log_path`. A SIGINT or SIGTERM this process receives
    is passed to the command, which is then waited for.

    Raises:
        CommandError: the program cannot be started.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path={**os.environ, **env}.get("PATH"))
    if program is None or not os.access(program, os.X_OK):
        raise CommandError(f"cannot start {argv[0]!r}: no such program")
    sink = open(os.devnull, "wb") if not echo else None
    try:
        proc = subprocess.Popen(_dies_with_us(argv), cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as exc:
        raise CommandError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    on_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)} if on_main else {}
    lock = threading.Lock()
    try:
        with open(log_path, "ab") as log:
            pumps = [threading.Thread(target=_pump, args=(proc.stdout, sink or sys.stdout.buffer, log, lock), daemon=True),
                     threading.Thread(target=_pump, args=(proc.stderr, sink or sys.stderr.buffer, log, lock), daemon=True)]
            for pump in pumps:
                pump.start()
            code = proc.wait()
            for pump in pumps:
                pump.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if sink is not None:
            sink.close()
    interrupted = bool(received) or code in (-signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT)
    return Outcome(exit_code=code, interrupted=interrupted)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a script wrote with `ledger.log`; a torn last line (a killed script) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
