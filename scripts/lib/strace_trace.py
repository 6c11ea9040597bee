"""What scripts/syscall-audit and scripts/syscall-profile share about strace: installing it,
finding a process's children, the families of wait calls, and reading `strace -f -o FILE`
output line by line.

A line of `strace -f` output is one of:
  PID name(arguments) = result [ERRNAME (text)]     a finished call
  PID name(arguments <unfinished ...>               a call another thread's line cut in two
  PID <... name resumed>arguments) = result ...     the rest of it
  PID --- SIGALRM {si_signo=SIGALRM, ...} ---       a signal delivered
  PID +++ exited with 0 +++ / +++ killed by SIG +++ the end of a thread or process
"""

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional

SELECT_CALLS = ("select", "_newselect", "pselect6")
EPOLL_WAIT_CALLS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")
# The results of a call a signal interrupted: EINTR to the program, or one of the kernel's
# restart codes strace shows when the call is restarted or the handler returns EINTR.
INTERRUPTED_ERRORS = ("EINTR", "ERESTARTSYS", "ERESTARTNOINTR", "ERESTARTNOHAND", "ERESTART_RESTARTBLOCK")

SYSCALL_LINE = re.compile(r"^(\d+)\s+([a-z_0-9]+)\((.*)$")
RESUMED_LINE = re.compile(r"^(\d+)\s+<\.\.\. ([a-z_0-9]+) resumed>(.*)$")
SIGNAL_LINE = re.compile(r"^(\d+)\s+--- (SIG\w+) ")
# "arguments) = result ERRNAME ..." of a finished call.
FINISHED = re.compile(r"^(.*)\)\s+=\s+(-?\d+|0x[0-9a-f]+|\?)(?:\s+(E[A-Z_0-9]+))?")
EXITED = re.compile(r"^(\d+)\s+\+\+\+ (exited with (\d+)|killed by (\w+)).*\+\+\+$")


@dataclass
class Line:
    """One line of a trace. kind: "call" (a call's first or only line), "resumed" (the rest of
    an unfinished call), "signal", "exit". result is None on an unfinished call's first half."""
    kind: str
    pid: int
    name: str = ""           # the call, the signal, or the exit text
    arguments: str = ""
    result: Optional[str] = None
    error: Optional[str] = None

    @property
    def interrupted(self) -> bool:
        """A call a signal interrupted. Not rt_sigreturn: it hands the interrupted call's result
        back (-1 EINTR), and counting it too would count each interruption twice."""
        return self.error in INTERRUPTED_ERRORS and self.name not in ("rt_sigreturn", "sigreturn")


def parse_line(line: str) -> Optional[Line]:
    """The line, read; None for anything else (strace's own messages)."""
    if exited := EXITED.match(line):
        return Line("exit", int(exited.group(1)), exited.group(2))
    if signal := SIGNAL_LINE.match(line):
        return Line("signal", int(signal.group(1)), signal.group(2))
    if resumed := RESUMED_LINE.match(line):
        finished = FINISHED.match(resumed.group(3))
        return Line("resumed", int(resumed.group(1)), resumed.group(2),
                    result=finished.group(2) if finished else None,
                    error=finished.group(3) if finished else None)
    if call := SYSCALL_LINE.match(line):
        pid, name, rest = int(call.group(1)), call.group(2), call.group(3)
        if finished := FINISHED.match(rest):
            return Line("call", pid, name, finished.group(1), finished.group(2), finished.group(3))
        # "arguments <unfinished ...>": the result comes on a "resumed" line
        return Line("call", pid, name, rest.split(" <unfinished", 1)[0])
    return None


def read_trace(path: str):
    """The parsed lines of an `strace -f -o` file, in order."""
    with open(path, errors="replace") as f:
        for text in f:
            parsed = parse_line(text.rstrip("\n"))
            if parsed is not None:
                yield parsed


class StraceMissing(Exception):
    pass


def ensure_strace() -> None:
    """strace on the PATH, installed with apt-get if it is not (StraceMissing if that fails)."""
    if shutil.which("strace"):
        return
    print("== strace is missing: apt-get install strace", flush=True)
    ok = subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace",
                        shell=True).returncode == 0
    if not ok or not shutil.which("strace"):
        raise StraceMissing("could not install strace")


def proc_stat_fields(pid: int) -> list:
    """/proc/PID/stat after the command name (which may hold spaces): [state, ppid, ...], so
    that field N of proc(5) is at index N - 3. Raises OSError when the process is gone."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def child_pids(parent: int) -> list:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(proc_stat_fields(int(entry))[1]) == parent:
                pids.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return sorted(pids)
