"""The seed blog's ``background`` cell, unchanged but for the import.

``import offload.background as bg`` instead of ``import background as bg``::

    python background_work.py
"""

import time

import offload.background as bg


def work():
    time.sleep(1)
    return 1


@bg.task
def bg_work():
    time.sleep(1)
    return 1


if __name__ == "__main__":
    bg.n = 110  # resizes the pool at once

    started = time.perf_counter()
    f_list = [bg_work() for _ in range(100)]

    while not all([f.done() for f in f_list]):
        pass

    took = time.perf_counter() - started
    print(f"100 calls of bg_work: {sum(f.result() for f in f_list)} in {took:.2f} s")
