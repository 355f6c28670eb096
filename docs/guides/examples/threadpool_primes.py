"""The standard library's executor example on offload: ``executor.map`` is ``task.map``.

The ``concurrent.futures`` documentation checks big numbers for primality
with a ``ProcessPoolExecutor``; here each check is a task on offload's
process pool, and the handles are ``concurrent.futures.Future`` objects::

    python threadpool_primes.py
"""

import math

import offload

PRIMES = [
    112272535095293,
    112582705942171,
    112272535095293,
    115280095190773,
    115797848077099,
    1099726899285419,
]


@offload.task(pool="process")  # ProcessPoolExecutor; the default pool is threads
def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n == 2:
        return True
    if n % 2 == 0:
        return False

    return all(n % i != 0 for i in range(3, math.isqrt(n) + 1, 2))


@offload.task  # ThreadPoolExecutor: a thread of the default pool
def digits(n: int) -> int:
    return len(str(n))


def main() -> None:
    # with ProcessPoolExecutor() as executor:
    #     for number, prime in zip(PRIMES, executor.map(is_prime, PRIMES)):
    handles = is_prime.map(PRIMES)
    for number, handle in zip(PRIMES, handles, strict=True):
        print(f"{number} is prime: {handle.result(timeout=120)}")

    # executor.submit(fn, x) and as_completed(futures):
    futures = {digits(n): n for n in set(PRIMES)}
    for future in offload.as_completed(futures, timeout=30):
        print(f"{futures[future]} has {future.result()} digits")


if __name__ == "__main__":
    main()
