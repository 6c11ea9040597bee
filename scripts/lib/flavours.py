"""The two build flavours of the package, shared by the scripts in scripts/.

Each flavour has its own scratch path so that the two builds never overwrite
each other (see README, "Choosing the backend"), and scripts/test uses the
same commands.
"""

import os
import re
import subprocess
import sys
from dataclasses import dataclass

# scripts/lib/ -> repository root
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class Flavour:
    name: str           # also the backend a plain Loop.make() gives in this build
    scratch: str        # scratch path, relative to the repository root
    swift_args: tuple   # arguments for every swift build / swift test of this flavour

    @property
    def harness(self) -> str:
        return os.path.join(ROOT, self.scratch, "debug", "loop-harness")

    def is_stale(self) -> bool:
        """Whether the flavour's loop-harness is missing or older than a source file: a
        script must not run a binary of other sources than the tree's."""
        if not os.path.exists(self.harness):
            return True
        built = os.path.getmtime(self.harness)
        newest = os.path.getmtime(os.path.join(ROOT, "Package.swift"))
        for directory, _, files in os.walk(os.path.join(ROOT, "Sources")):
            for name in files:
                newest = max(newest, os.path.getmtime(os.path.join(directory, name)))
        return newest > built

    def build(self, tests: bool = False) -> bool:
        """`swift build [--build-tests]` for this flavour; whether it succeeded.
        The compiler's output is shown only when the build fails."""
        cmd = ["swift", "build"] + (["--build-tests"] if tests else []) + list(self.swift_args)
        print(f"== {self.name}: {' '.join(cmd)}", flush=True)
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode == 0:
            return True
        output = done.stdout + done.stderr
        # The compiler repeats each error once per file it compiles: show each once.
        errors = list(dict.fromkeys(line for line in output.splitlines() if re.match(r"^(/\S+: )?error:", line)))
        shown = "\n".join(errors[:20]) or output[-3000:]
        print(f"{self.name}: build failed: {' '.join(cmd)}\n{shown}", flush=True)
        return False


# The suite of the tests whose outcome depends on the build flag (the default backend);
# every other test names its backend and runs on both in the default flavour's binary,
# so the legacy flavour runs this suite alone (scripts/test).
FLAG_SUITE = "BuildFlavour"

EPOLL = Flavour("epoll", ".build", ())
LEGACY = Flavour("legacy", ".build-legacy", ("--scratch-path", ".build-legacy", "-Xswiftc", "-DLEGACY_LOOP"))
FLAVOURS = (EPOLL, LEGACY)


def clean_environment() -> dict:
    """The environment for the package's executables: LOOP_BACKEND would
    override the build flavour, which is what the scripts want to observe."""
    env = dict(os.environ)
    env.pop("LOOP_BACKEND", None)
    return env
