#!/usr/bin/env python3
"""A loop-harness that misbehaves on purpose, for Tests/scripts/test-cluster: it runs
the real one ($STAND_IN_REAL) and spoils one thing, by $STAND_IN_MODE:
  failed-load   `load` reports 3 failed requests (and exits 1)
  never-alive   `stats` shows every other host dead
  node-exit-1   `serve` exits 1 after a clean save-and-exit
"""
import os
import re
import subprocess
import sys

real = os.environ["STAND_IN_REAL"]
mode = os.environ.get("STAND_IN_MODE", "")
args = sys.argv[1:]
command = args[0] if args else ""

if mode == "failed-load" and command == "load":
    done = subprocess.run([real] + args, stdout=subprocess.PIPE, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            line = line.replace('"ok":true', '"ok":false')
            line = re.sub(r'"failed":0', '"failed":3', line, count=1)
        print(line)
    sys.exit(1)
if mode == "never-alive" and command == "stats":
    done = subprocess.run([real] + args, stdout=subprocess.PIPE, text=True)
    print(re.sub(r'"alive":true,"rttMs":(?!null)', '"alive":false,"rttMs":', done.stdout), end="")
    sys.exit(done.returncode)
if mode == "node-exit-1" and command == "serve":
    code = subprocess.run([real] + args).returncode
    sys.exit(1 if code == 0 else code)
os.execv(real, [real] + args)
