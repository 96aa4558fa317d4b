"""Prints a process's CPU time in seconds (utime + stime, /proc/PID/stat) and its RSS in KB (/proc/PID/status)."""

import os
import sys

pid = int(sys.argv[1])
fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
rss = next((int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:")), 0)
print(f"{cpu:.3f} {rss}")
