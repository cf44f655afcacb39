#!/usr/bin/env python3
"""Where a running simsite build waits: samples the state of each of its threads every few
milliseconds and, for a thread blocked in the kernel (state D), its kernel stack; prints
the stacks seen most often, by thread name. Linux, as root (kernel stacks).

    python3 benches/waits.py [--every 0.004] [--top 25] &   # waits for a process named simsite
    simsite build ...

The figures of BENCHMARKS.md's "Where a night waits" come from it.
"""
import argparse
import collections
import os
import time


def find(name):
    while True:
        for p in os.listdir('/proc'):
            if p.isdigit():
                try:
                    with open(f'/proc/{p}/comm') as f:
                        if f.read().strip() == name:
                            return p
                except OSError:
                    pass
        time.sleep(0.005)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--name', default='simsite', help='process name to wait for')
    ap.add_argument('--every', type=float, default=0.004, help='seconds between samples')
    ap.add_argument('--top', type=int, default=25)
    ap.add_argument('--depth', type=int, default=8, help='kernel frames shown per stack')
    a = ap.parse_args()
    pid = find(a.name)
    stacks, states, samples = collections.Counter(), collections.Counter(), 0
    while os.path.exists(f'/proc/{pid}'):
        try:
            tids = os.listdir(f'/proc/{pid}/task')
        except OSError:
            break
        for t in tids:
            try:
                with open(f'/proc/{pid}/task/{t}/stat') as f:
                    st = f.read()
                state = st[st.rindex(')') + 2]
                states[state] += 1
                if state == 'D':
                    with open(f'/proc/{pid}/task/{t}/comm') as f:
                        comm = f.read().strip()
                    with open(f'/proc/{pid}/task/{t}/stack') as f:
                        frames = [l.split('] ')[-1].split('+')[0] for l in f.read().splitlines() if l]
                    stacks[comm + ': ' + ' < '.join(frames[:a.depth])] += 1
            except OSError:
                pass
        samples += 1
        time.sleep(a.every)
    print(f'{samples} samples; thread states seen: {dict(states)} (D: waiting in the kernel)')
    for k, v in stacks.most_common(a.top):
        print(f'{v:6d} {k}')


if __name__ == '__main__':
    main()
