"""Dramatiq's actors on offload: ``.send()`` is a call, results need no middleware.

Start a worker, then run the program, both in this folder::

    offload worker dramatiq_count_words:app   # Dramatiq: dramatiq dramatiq_count_words
    python dramatiq_count_words.py
"""

import os

import offload

# Dramatiq: dramatiq.set_broker(RedisBroker(host="localhost")), plus the
# Results middleware and a result backend; offload stores results itself.
app = offload.App(os.environ.get("OFFLOAD_URL", "redis://localhost:6379/0"))


# Dramatiq: @dramatiq.actor(max_retries=3, min_backoff=1_000, max_backoff=60_000)
@app.task(retries=3, backoff=offload.Backoff(base=1, cap=60))
def count_words(text: str) -> int:
    return len(text.split())


@app.task
def total(counts: list[int]) -> int:
    return sum(counts)


@app.task
def double(n: int) -> int:
    return 2 * n


TEXTS = ["the quick brown fox", "jumps over", "the lazy dog"]

if __name__ == "__main__":
    message = count_words.delay("hello dramatiq users")  # Dramatiq: count_words.send(...)
    print(message.result(timeout=30))  # Dramatiq: message.get_result(block=True)

    # Dramatiq: g = group(count_words.message(t) for t in TEXTS).run()
    #           g.get_results(block=True)
    g = offload.group(count_words.s(text) for text in TEXTS).delay()
    print(g.result(timeout=30))

    # Dramatiq: pipeline([count_words.message("a b c"), double.message()]).run()
    p = offload.chain(count_words.s("a b c"), double.s()).delay()
    print(p.result(timeout=30))

    # No Dramatiq equivalent built in: a callback once the whole group is done.
    c = offload.chord((count_words.s(text) for text in TEXTS), total.s()).delay()
    print(c.result(timeout=30))
