"""The seed article's RQ example on offload: ``q.enqueue(count_words_in_url, url)``.

Start a worker, then run the program with a URL, both in this folder::

    offload worker rq_count_words:app         # RQ: rq worker
    python rq_count_words.py http://example.com/long-article

``count_words_in_url`` stays a plain function, as RQ has it: ``app.enqueue``
runs any function of a module the app includes (here, this file).
"""

import os
import sys
import urllib.request

import offload

# RQ's Queue(connection=Redis()): the broker is a URL, Redis by default here.
app = offload.App(
    os.environ.get("OFFLOAD_URL", "redis://localhost:6379/0"),
    include=["rq_count_words"],  # the modules whose plain functions workers may run
)


def count_words_in_url(url: str) -> int:
    print(f"Processing URL: {url}", flush=True)
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read().decode().split())


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "http://example.com/long-article"
    job = app.enqueue(count_words_in_url, url)  # RQ: job = q.enqueue(count_words_in_url, url)
    print(f"job {job.id}: {job.state}")
    print(f"{url} has {job.result(timeout=30)} words")  # RQ: job.return_value()
